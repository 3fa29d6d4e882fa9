"""How close folder scoring comes to the interpreter's own speed, measured in one run.

    python scripts/folder_throughput.py [--model DIR] [--images 200] [--rounds 3]
                                        [--threads 1,2] [--sixteen-bit 12]

Three ways through the same images, alternated round by round so that a busy machine slows
all of them alike:
  inference only   prepared inputs fed to the interpreter (+ the feature test): the ceiling
  one by one       Classifier.classify_file per image (decode, checks, inference in turn)
  pipelined        pipeline.classify_paths: the next files prepared in threads meanwhile,
                   as `covid-edge classify` does
on a folder of 224-px JPEGs written from ../shared/data/cxr (the goal: pipelined >= 85% of
inference only, at 1 and 2 threads), and on 16-bit PNGs at 2500x3000: pipelined against the
code before issue 16 (one by one, the 12/16-bit stretch in float64 arithmetic per pixel,
which gives the same bytes as today's lookup table), goal >= 1.5x.

Each way also reports its CPU time per image (the process's, all threads) and the cores it
kept busy (CPU time / wall time): pipelining can only come near the ceiling where a second
core is free, and on a machine busy with other work it is not. The lung model, which the
guard runs on every image (release 0.3.0), is timed alone on the same pictures: its share is
work the ceiling (classifier inference only) does not count. Prints images/s and ratios;
measures, asserts nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "src"))
SHARED_CXR = REPO_ROOT.parent / "shared" / "data" / "cxr"

from covid_edge.benchmarks.cpu_features import cpu_features, summary  # noqa: E402
from covid_edge.benchmarks.device_info import cpu_model, usable_cores  # noqa: E402
from covid_edge.edge_runtime.classifier import Classifier  # noqa: E402
from covid_edge.edge_runtime.pipeline import classify_paths, default_workers  # noqa: E402
from covid_edge.image_io import read_image  # noqa: E402


def sources(count: int) -> list[Path]:
    files = sorted((SHARED_CXR / "covid").glob("*")) + sorted((SHARED_CXR / "normal").glob("*"))
    step = max(1, len(files) // count)
    return files[::step][:count]


def write_copies(folder: Path, count: int, suffix: str, save) -> list[Path]:
    """`count` source X-rays, each grayscale and written by save(gray image, path)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for index, source in enumerate(sources(count)):
        path = folder / f"{index:05d}{suffix}"
        with Image.open(source) as img:
            save(img.convert("L"), path)
        out.append(path)
    return out


def write_jpegs(folder: Path, count: int) -> list[Path]:
    return write_copies(folder, count, ".jpg", lambda gray, path: gray.resize(
        (224, 224), Image.Resampling.BILINEAR).save(path, quality=90))


def write_sixteen_bit(folder: Path, count: int) -> list[Path]:
    """2500x3000 16-bit PNGs holding 12 bits of data, as digital radiographs come."""
    def save(gray, path):
        values = np.asarray(gray.resize((2500, 3000), Image.Resampling.BILINEAR))
        Image.fromarray(values.astype(np.uint16) * 16 + np.uint16(300)).save(path)
    return write_copies(folder, count, ".png", save)


class Timed:
    """Images/s and CPU ms per image (this process, all threads) of one pass."""

    def __init__(self, count: int):
        self.count = count

    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        wall = time.perf_counter() - self.wall
        cpu = time.process_time() - self.cpu
        self.per_second = self.count / wall if wall > 0 else float("nan")
        self.cpu_ms = cpu * 1000.0 / self.count
        self.cores = cpu / wall if wall > 0 else float("nan")


def run_inference_only(classifier: Classifier, inputs: list[np.ndarray]) -> Timed:
    with Timed(len(inputs)) as timed:
        for tensor in inputs:
            features = classifier.run(tensor).features
            if classifier.guard is not None:
                classifier.guard.feature_reason(features)
    return timed


def run_lungs_only(classifier: Classifier, pictures: list) -> Timed | None:
    """The lung model alone (resize, invoke, geometry) on decoded pictures."""
    if classifier.lungs is None:
        return None
    with Timed(len(pictures)) as timed:
        for picture in pictures:
            classifier.lungs.segment(picture)
    return timed


def run_one_by_one(classifier: Classifier, files: list[Path]) -> Timed:
    with Timed(len(files)) as timed:
        for path in files:
            classifier.classify_file(path)
    return timed


def run_pipelined(classifier: Classifier, files: list[Path]) -> Timed:
    with Timed(len(files)) as timed:
        for _ in classify_paths(classifier, files):
            pass
    return timed


@contextlib.contextmanager
def stretch_per_pixel():
    """12/16-bit images stretched as before issue 16: float64 arithmetic on every pixel
    (stretch.py's by_arithmetic: the same bytes as the lookup table)."""
    import covid_edge.stretch as stretch

    original = stretch.stretcher
    stretch.stretcher = lambda lo, hi, integer, span=None: original(lo, hi, False, span)
    try:
        yield
    finally:
        stretch.stretcher = original


def run_before(classifier: Classifier, files: list[Path]) -> Timed:
    with stretch_per_pixel():
        return run_one_by_one(classifier, files)


def median(passes: list[Timed], field: str) -> float:
    return statistics.median(getattr(p, field) for p in passes)


def line(label: str, passes: list[Timed], ceiling: list[Timed] | None = None,
         goal: float | None = None) -> str:
    text = (f"  {label:<15} {median(passes, 'per_second'):7.2f} images/s, CPU "
            f"{median(passes, 'cpu_ms'):6.1f} ms per image, {median(passes, 'cores'):.2f} "
            "cores busy")
    if ceiling:
        ratio = statistics.median(p.per_second / c.per_second for p, c in zip(passes, ceiling))
        text += f"  ({ratio:.0%} of inference only"
        if goal is not None:
            text += f"; goal >= {goal:.0%}: {'met' if ratio >= goal else 'MISSED'}"
        text += ")"
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="model folder or file (default: released)")
    parser.add_argument("--images", type=int, default=200, help="224-px JPEGs in the folder")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--sixteen-bit", type=int, default=12,
                        help="16-bit PNGs to time (0: skip)")
    args = parser.parse_args()

    print(f"host: {cpu_model()}, {usable_cores()} usable cores; {summary(cpu_features())}")
    print(f"load average {' '.join(f'{v:.1f}' for v in os.getloadavg())} at the start; "
          f"preparing threads: {default_workers()}; {args.rounds} rounds, the ways alternated "
          "within each; medians of the rounds, ratios per round")
    with tempfile.TemporaryDirectory(prefix="covid-edge-throughput-") as scratch:
        jpegs = write_jpegs(Path(scratch) / "jpeg", args.images)
        sixteen = (write_sixteen_bit(Path(scratch) / "png16", args.sixteen_bit)
                   if args.sixteen_bit else [])
        for threads in [int(t) for t in args.threads.split(",")]:
            classifier = Classifier.load(args.model, num_threads=threads)
            prepared = [classifier.prepare_file(path) for path in jpegs]
            inputs = [p.input_tensor for p in prepared if hasattr(p, "input_tensor")]
            pictures = [read_image(path, target_size=(classifier.spec.width,
                                                      classifier.spec.height)).gray
                        for path in jpegs]
            run_inference_only(classifier, inputs[:10])  # warm-up (XNNPACK packs weights)
            ceiling, lungs, serial, piped = [], [], [], []
            for _ in range(args.rounds):
                ceiling.append(run_inference_only(classifier, inputs))
                lungs.append(run_lungs_only(classifier, pictures))
                serial.append(run_one_by_one(classifier, jpegs))
                piped.append(run_pipelined(classifier, jpegs))
            print(f"\n{threads} interpreter thread(s), {len(jpegs)} 224-px JPEGs "
                  f"({len(inputs)} reach the interpreter):")
            print(line("inference only", ceiling))
            print(line("one by one", serial, ceiling))
            print(line("pipelined", piped, ceiling, goal=0.85))
            if lungs[0] is not None:
                share = median(lungs, "cpu_ms") / median(serial, "cpu_ms")
                print(f"  lung model alone (guard, every image): CPU "
                      f"{median(lungs, 'cpu_ms'):.1f} ms per image, {share:.0%} of one by "
                      "one's CPU per image (not in the ceiling)")
            if sixteen:
                before, piped16 = [], []
                for _ in range(args.rounds):
                    before.append(run_before(classifier, sixteen))
                    piped16.append(run_pipelined(classifier, sixteen))
                gain = statistics.median(p.per_second / b.per_second
                                         for p, b in zip(piped16, before))
                print(f"  16-bit 2500x3000 PNGs ({len(sixteen)}):")
                print(line("before issue 16", before))
                print(line("pipelined", piped16))
                print(f"  pipelined / before: {gain:.2f}x (goal >= 1.5x: "
                      f"{'met' if gain >= 1.5 else 'MISSED'})")
    print(f"\nload average {' '.join(f'{v:.1f}' for v in os.getloadavg())} at the end")


if __name__ == "__main__":
    main()
