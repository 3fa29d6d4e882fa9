"""Classifying many files: decoding overlapped with inference.

One image costs a few ms of decoding, resizing and guard image checks besides inference. Done
one after the other, the interpreter waits for all of it. Here a small thread pool prepares
the next images (Classifier.prepare_file: Pillow's decoders and resamplers and most of numpy
release the GIL) while the calling thread runs the interpreter (Classifier.finish), so the
interpreter is kept busy. Results come back in input order and are the same as
`classify_file` gives one by one; only the time differs.
"""

from __future__ import annotations

import os
import sys
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path

from .classifier import Classifier, Prediction, default_threads

# How many nice steps the preparing threads run below the interpreter's thread (Linux).
PREPARE_NICENESS = 10
# Images prepared ahead of the interpreter per worker: enough to ride out one slow file
# (a 16-bit PNG decodes in ~0.2 s) without holding many decoded images in memory.
AHEAD_PER_WORKER = 2


def default_workers() -> int:
    """Preparing threads: one per core, two at most. Where preparing is cheaper than
    inference (224-px JPEGs: ~7 ms against ~11 ms) the queue stays full and one thread at a
    time has work, so the others cost nothing; where it is dearer (a 16-bit 2500x3000 PNG
    decodes in ~0.2 s) both decode. Measured on the idle 2-core host: 16-bit PNGs
    8.3 images/s with two threads against 4.8 with one; JPEGs the same either way
    (scripts/folder_throughput.py). Their decodes share one memory budget
    (limits.DECODING), so a second thread costs no more memory at the peak than one. Two at
    most: no host here could show that more help."""
    return max(1, min(2, default_threads()))


def yield_to_the_interpreter() -> None:
    """Run the calling (preparing) thread at a lower priority than the interpreter's thread.

    With two preparing threads and a 1-thread interpreter on two cores, the scheduler shares
    the cores evenly between three busy threads, so the interpreter loses a third of its core,
    and a folder goes as fast as its interpreter. Ten nice steps down, the preparing threads
    still take every core the interpreter leaves free (a 16-bit PNG folder decodes on both).
    Linux only: there a thread has its own nice value, set through its thread id; elsewhere
    that id could name a process."""
    if not sys.platform.startswith("linux"):
        return
    thread = threading.get_native_id()
    try:
        niceness = os.getpriority(os.PRIO_PROCESS, thread)
        os.setpriority(os.PRIO_PROCESS, thread, min(19, niceness + PREPARE_NICENESS))
    except OSError:
        pass  # a sandbox that forbids it: the pipeline works, only a little slower


def interpreter_leaves_a_core(classifier: Classifier) -> bool:
    """Whether the interpreter's threads leave a core to the preparing threads. Only then do
    those yield to it: measured with scripts/folder_throughput.py on a 2-core Zen 4 host,
    224-px JPEGs at 1 interpreter thread went at 72-92% (median 82%) of inference-only speed
    with them yielding against 68-78% (median 69%) without, in seven alternated runs; at 2
    threads, where the interpreter fills both cores, yielding starved the preparing threads
    (39-41% against 43-46%; docs/speed.md)."""
    threads = getattr(classifier, "num_threads", None)
    return threads is not None and 0 < threads < default_threads()


def classify_paths(classifier: Classifier, paths: Iterable[str | Path],
                   workers: int | None = None) -> Iterator[Prediction]:
    """Predictions for `paths`, in order. workers=0 runs everything in the calling thread."""
    workers = default_workers() if workers is None else workers
    if isinstance(paths, (list, tuple)) and len(paths) < 2:
        workers = 0  # nothing to overlap: no thread pool to start (cold start of one image)
    if workers <= 0:
        for path in paths:
            yield classifier.classify_file(path)
        return
    from concurrent.futures import ThreadPoolExecutor

    pending_paths = iter(paths)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="covid-edge-prepare",
                            initializer=(yield_to_the_interpreter
                                         if interpreter_leaves_a_core(classifier) else None)
                            ) as pool:
        queue = deque(pool.submit(classifier.prepare_file, path)
                      for path in islice(pending_paths, workers * AHEAD_PER_WORKER))
        try:
            while queue:
                prepared = queue.popleft().result()
                for path in islice(pending_paths, 1):
                    queue.append(pool.submit(classifier.prepare_file, path))
                yield classifier.finish(prepared)
        finally:
            for future in queue:  # the caller stopped early: drop what was not started
                future.cancel()
