"""12- and 16-bit radiographs to 8 bit: a min-max stretch of what the file holds.

The stretch is round((v - lo) * 255 / (hi - lo)) in float64 for each pixel. For integer
images it is done once per grey level present, into a lookup table that is then indexed by
the pixels: the same float64 arithmetic on the same values, so the same bytes, several times
faster on a 2500x3000 image (millions of pixels, at most 65536 levels). image_io applies it
strip by strip (its memory budget); the table is made once for the whole picture.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

# Larger ranges (32-bit integer data) fall back to the per-pixel path.
MAX_TABLE_LEVELS = 1 << 17


def stretcher(lo: float, hi: float, integer: bool) -> Callable[[np.ndarray], np.ndarray]:
    """A function: grey levels (any part of the picture) -> uint8, for the picture's lo < hi."""
    if integer and float(lo).is_integer() and float(hi).is_integer() \
            and hi - lo < MAX_TABLE_LEVELS:
        low = int(lo)
        levels = np.arange(int(hi) - low + 1, dtype=np.float64)  # = each v - lo, exactly
        table = np.rint(levels * (255.0 / (hi - lo))).astype(np.uint8)

        def by_table(values: np.ndarray) -> np.ndarray:
            values = np.asarray(values)
            offsets = values if low == 0 else np.subtract(values, low, dtype=values.dtype)
            return table[offsets]
        return by_table

    def by_arithmetic(values: np.ndarray) -> np.ndarray:
        scaled = np.rint((np.asarray(values, dtype=np.float64) - lo) * (255.0 / (hi - lo)))
        return np.clip(np.nan_to_num(scaled), 0, 255).astype(np.uint8)
    return by_arithmetic


def stretch_to_8bit(values: np.ndarray) -> np.ndarray:
    """uint8 array of `values` (any integer or float grey levels) stretched to 0..255."""
    values = np.asarray(values)
    lo, hi = values.min(), values.max()
    if not hi > lo:  # also NaN
        return np.zeros(values.shape, dtype=np.uint8)
    return stretcher(float(lo), float(hi), values.dtype.kind in "ui")(values)
