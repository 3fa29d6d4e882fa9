"""`covid-edge classify -`: the image piped to standard input, as one more input.

`curl -s URL | covid-edge classify -` or `ssh kiosk cat frame.png | covid-edge classify -`
need no temporary file. The bytes are read whole, up to the size limit of any image file, and
then take the path of a file (read_image reads a file object as it reads a path), so a piped
image gets the answer the same file would get. They are held for the whole run, as one
image's file: the decode budget counts decoding, not files. Its name in the output is "-".
"""

from __future__ import annotations

import io
import sys
from typing import BinaryIO

from ..limits import MAX_FILE_BYTES

STDIN_ARGUMENT = "-"


class StdinImage(io.BytesIO):
    """The bytes read from standard input; named "-" wherever a path is shown."""

    def __str__(self) -> str:
        return STDIN_ARGUMENT


def read_stdin_image(stream: BinaryIO | None = None, is_terminal: bool | None = None,
                     limit: int = MAX_FILE_BYTES) -> tuple[StdinImage | None, str | None]:
    """(the image, None), or (None, why there is none). Without arguments: the process's
    standard input."""
    if stream is None:
        stream = getattr(sys.stdin, "buffer", None)  # None when the shell closed it (<&-)
        if stream is None:
            return None, "standard input is closed: pipe an image in"
    if is_terminal is None:
        try:
            is_terminal = stream.isatty()
        except (OSError, ValueError):
            return None, "standard input is closed: pipe an image in"
    if is_terminal:
        return None, ("standard input is the terminal: pipe an image in, e.g. "
                      "covid-edge classify - < chest.png")
    try:
        data = stream.read(limit + 1)
    except (OSError, ValueError) as exc:
        return None, f"cannot read standard input ({getattr(exc, 'strerror', None) or exc})"
    if len(data) > limit:
        return None, (f"more than {limit / 2**20:.0f} MB on standard input, over the limit for "
                      "one image")
    return StdinImage(data), None
