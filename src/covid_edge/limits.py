"""How much memory and disk one input may cost, decided from its header before decoding.

A pixel count alone is no bound: the same 100 megapixels take 100 MB as 8-bit gray and 400 MB
as RGBA, and the conversion to 8-bit gray needs working room of its own. Every reader
(image_io for Pillow formats, dicom_io for DICOM) estimates the peak bytes of decoding plus
conversion from the mode and size it reads in the header, and refuses above the budget with a
message the user can act on. With the budget below, one image adds at most about 200 MB to the
process (measured by scripts/hostile_load.py, figures in docs/hardening.md): a 4 GB Raspberry
Pi can decode two at once while serving.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext

# Peak bytes one decode may take. A 4300x3500 radiograph costs 45 MB as 16-bit gray PNG, 105 MB
# as 16-bit DICOM and 75 MB as RGB; 192 MiB leaves room for film scans of about 38 MP in RGB,
# 64 MP in 16-bit gray, 27 MP as 16-bit DICOM, 21 MP in RGBA.
MAX_DECODE_BYTES = 192 * 1024 * 1024
# The largest file read at all, before looking inside: an uncompressed 16-bit 100 MP file is
# 200 MB, so nothing bigger can be an image the decode budget would accept.
MAX_FILE_BYTES = 256 * 1024 * 1024

# Bytes per pixel Pillow stores for a mode (multi-band modes are padded to 4 bytes).
_STORAGE_BYTES = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2}
# Bytes per pixel of the 8-bit gray result, which exists beside the decoded picture.
_OUTPUT_BYTES = 1


class SharedBudget:
    """The bytes being decoded right now, across the threads of one process (the folder
    pipeline's preparing threads, the server's requests): a decode waits until its cost fits
    beside the others', so two pictures at the edge of the per-image budget decode one after
    the other while small ones decode side by side. The first decode never waits: a cost the
    per-image check accepted always fits alone."""

    def __init__(self, total: int):
        self.total = total
        self.in_use = 0
        self._changed = threading.Condition()

    @contextmanager
    def reserve(self, cost: int) -> Iterator[None]:
        with self._changed:
            while self.in_use and self.in_use + cost > self.total:
                self._changed.wait()
            self.in_use += cost
        try:
            yield
        finally:
            with self._changed:
                self.in_use -= cost
                self._changed.notify_all()


# One per process: what the readers reserve while they decode.
DECODING = SharedBudget(MAX_DECODE_BYTES)


def reserved(cost: int, hold: ExitStack | None = None) -> AbstractContextManager:
    """A decode's share of DECODING: for the `with` block, or, given `hold`, until that
    ExitStack closes (the caller keeps the picture after the reader returns)."""
    if hold is None:
        return DECODING.reserve(cost)
    hold.enter_context(DECODING.reserve(cost))
    return nullcontext()


class BudgetExceeded(Exception):
    """Decoding the input would take more memory than the budget allows."""


def storage_bytes(mode: str) -> int:
    return _STORAGE_BYTES.get(mode, 4)


# Pillow resizes LA and RGBA pictures through a premultiplied full-size copy (La, RGBa): the
# colourfulness thumbnail of such a picture costs another 4 bytes per pixel.
_PREMULTIPLIED_COPY = {"LA": 4, "RGBA": 4}


def decode_cost(mode: str, width: int, height: int) -> int:
    """Peak bytes of decoding a Pillow image of `mode` and converting it to 8-bit gray, as
    image_io does it (conversions run in strips, so they add only the output picture)."""
    per_pixel = (storage_bytes(mode) + (0 if mode == "L" else _OUTPUT_BYTES)
                 + _PREMULTIPLIED_COPY.get(mode, 0))
    return width * height * per_pixel


def dicom_cost(rows: int, columns: int, bits_allocated: int, samples: int) -> int:
    """Peak bytes of reading a DICOM image: the Pixel Data as read, the decoded array and the
    copy pydicom makes on the way (measured: about three times the stored bytes at the peak),
    and the 8-bit result (the grayscale pipeline runs in strips)."""
    stored = rows * columns * samples * max(1, (bits_allocated + 7) // 8)
    return 3 * stored + rows * columns * max(1, samples) * _OUTPUT_BYTES


def check(cost: int, what: str, budget: int | None = None) -> None:
    """Raise BudgetExceeded naming `what` (e.g. '10000x10000 16-bit gray') when `cost` bytes
    exceed the budget."""
    budget = MAX_DECODE_BYTES if budget is None else budget
    if cost > budget:
        raise BudgetExceeded(
            f"{what} needs {cost / 2**20:.0f} MB to decode, over the {budget / 2**20:.0f} MB "
            "budget per image; downscale it or save it as 8-bit gray")


def check_file_size(size: int, limit: int | None = None) -> None:
    limit = MAX_FILE_BYTES if limit is None else limit
    if size > limit:
        raise BudgetExceeded(f"file of {size / 2**20:.0f} MB is over the "
                             f"{limit / 2**20:.0f} MB limit for one image")


def describe_mode(mode: str) -> str:
    return {"L": "8-bit gray", "1": "1-bit", "P": "palette", "LA": "gray+alpha",
            "RGB": "RGB", "RGBA": "RGBA", "CMYK": "CMYK", "YCbCr": "YCbCr",
            "I": "32-bit integer gray", "F": "32-bit float gray"}.get(
        mode, "16-bit gray" if mode.startswith("I;16") else mode)

