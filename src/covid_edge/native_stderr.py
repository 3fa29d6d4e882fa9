"""Native libraries (LiteRT, TensorFlow's C++ and XLA) write to file descriptor 2 directly,
past Python's sys.stderr: the only way to drop their noise is to catch the descriptor."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from typing import Callable


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
    with tempfile.TemporaryFile(mode="w+b") as captured:
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
