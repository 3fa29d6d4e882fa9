"""Why a JPEG that Pillow refuses cannot be read, from its frame header.

Pillow's JPEG decoder (libjpeg) reads 8-bit baseline and progressive JPEG. Hospital exports
sometimes hold what it cannot: 12- and 16-bit JPEG (DICOM's extended and lossless processes),
and lossless JPEG where Pillow's libjpeg predates libjpeg-turbo 3. Pillow calls them no image
at all or a broken data stream; a user told "use JPEG" or "corrupt" about a valid JPEG cannot
act on that, so the refusal names the kind and the fix instead. No heavy imports (Pillow
only after a failure): the device imports it.
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

from .formats import read_head

# Start-of-frame markers (SOF0..SOF15 without DHT, JPG and DAC, which share the range).
_START_OF_FRAME = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_LOSSLESS = frozenset({0xC3, 0xC7, 0xCB, 0xCF})
_START_OF_SCAN = 0xDA
# Markers without a length: SOI, TEM and the restart markers.
_STANDALONE = frozenset({0xD8, 0x01, *range(0xD0, 0xD8)})
# APP segments (EXIF, ICC profiles) come before the frame header; 64 KB each at most.
_SEARCHED_BYTES = 512 * 1024


def unreadable_jpeg_reason(source: Path | BinaryIO) -> str | None:
    """The refusal for a lossless or 12/16-bit JPEG; None for any other file (or one whose
    first bytes cannot be read), whose refusal stays what it was."""
    data = _first_bytes(source)
    if not data.startswith(b"\xff\xd8"):
        return None
    at = 2
    while at + 4 <= len(data):
        if data[at] != 0xFF:
            return None  # not a marker where one must be: a damaged file, said elsewhere
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker in _STANDALONE:
            at += 2
            continue
        if marker == _START_OF_SCAN:
            return None
        if marker in _START_OF_FRAME:
            lossless = "lossless " if marker in _LOSSLESS else ""
            precision = data[at + 4] if at + 4 < len(data) else 8
            if precision != 8:
                return (f"a {precision}-bit {lossless}JPEG, which covid-edge's JPEG decoder "
                        "cannot read (8-bit only): save it as a 16-bit PNG or TIFF")
            if lossless and not _reads_8_bit_lossless():
                return ("a lossless JPEG, which this Pillow's JPEG decoder cannot read: "
                        "convert it to PNG or TIFF")
            return None  # a frame it reads: the file is damaged, and said so elsewhere
        at += 2 + int.from_bytes(data[at + 2:at + 4], "big")
    return None


def _reads_8_bit_lossless() -> bool:
    """libjpeg-turbo 3 decodes 8-bit lossless JPEG; the libjpeg of older Pillow builds does
    not. Asked only after a failure."""
    from PIL import features

    version = features.version("libjpeg_turbo") or "0"
    try:
        return int(version.split(".")[0]) >= 3
    except ValueError:
        return False


def _first_bytes(source: Path | BinaryIO) -> bytes:
    if hasattr(source, "read"):
        return read_head(source, _SEARCHED_BYTES)
    try:
        with open(source, "rb") as handle:
            return handle.read(_SEARCHED_BYTES)
    except OSError:
        return b""
