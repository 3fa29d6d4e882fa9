"""`covid-edge classify -`: the image piped to standard input, as one more input.

`curl -s URL | covid-edge classify -` or `ssh kiosk cat frame.png | covid-edge classify -`
need no temporary file. The bytes are read whole, up to the size limit of any image file, and then take
the path of a file (read_image reads a file object as it reads a path), so a piped image gets
the answer the same file would get. Its name in the output is "-".
"""

from __future__ import annotations

import io
from typing import BinaryIO

from ..limits import MAX_FILE_BYTES

STDIN_ARGUMENT = "-"


class StdinImage(io.BytesIO):
    """The bytes read from standard input; named "-" wherever a path is shown."""

    def __str__(self) -> str:
        return STDIN_ARGUMENT


def read_stdin_image(stream: BinaryIO, is_terminal: bool,
                     limit: int = MAX_FILE_BYTES) -> tuple[StdinImage | None, str | None]:
    """(the image, None), or (None, why there is none)."""
    if is_terminal:
        return None, ("standard input is the terminal: pipe an image in, e.g. "
                      "covid-edge classify - < chest.png")
    data = stream.read(limit + 1)
    if len(data) > limit:
        return None, (f"more than {limit / 2**20:.0f} MB on standard input, over the limit for "
                      "one image")
    return StdinImage(data), None
