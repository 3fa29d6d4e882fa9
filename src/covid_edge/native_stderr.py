"""Native libraries (LiteRT, TensorFlow's C++ and XLA) write to file descriptor 2 directly,
past Python's sys.stderr: the only way to drop their noise is to catch the descriptor."""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Callable


def _scratch_file():
    """An anonymous binary file: in memory where Linux offers memfd_create (tempfile's import
    alone costs a cold `classify` 5-10 ms), a temporary file elsewhere."""
    if hasattr(os, "memfd_create"):
        try:
            return os.fdopen(os.memfd_create("covid-edge-stderr"), "w+b")
        except OSError:
            pass
    import tempfile

    return tempfile.TemporaryFile(mode="w+b")


@contextlib.contextmanager
def filtered_native_stderr(is_noise: Callable[[str], bool]):
    """Run the block with fd 2 captured; afterwards write back every line that is not noise
    (real errors stay visible)."""
    try:
        stderr_fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # no real stderr (pytest capture, pythonw)
        yield
        return
    sys.stderr.flush()
    saved_fd = os.dup(stderr_fd)
    with _scratch_file() as captured:
        os.dup2(captured.fileno(), stderr_fd)
        try:
            yield
        finally:
            os.dup2(saved_fd, stderr_fd)
            os.close(saved_fd)
            captured.seek(0)
            text = captured.read().decode("utf-8", errors="replace")
            kept = [line for line in text.splitlines() if not is_noise(line)]
            if kept:
                sys.stderr.write("\n".join(kept) + "\n")
                sys.stderr.flush()
