"""12- and 16-bit radiographs to 8 bit: a window of what the file holds, stretched to 0..255.

Two windows, named in the model card's preprocessing (PreprocessSpec.high_bit_depth):

- "minmax" (release 0.2.0): the darkest to the brightest value. One hot pixel (a marker
  burned in at 65535 into 12-bit data) squeezes the whole radiograph into a few grey levels.
- "percentile": a robust window. It starts at the 0.5th and 99.5th percentiles (inverted
  CDF: values the picture holds) and is widened outward over the occupied levels for as long
  as no empty gap wider than 1/8 of that window separates them. A continuous tail (the
  bright bones and skin line of a normal radiograph, the 16-bit export of an 8-bit picture,
  whose levels are 257 apart) is kept whole, so such pictures read exactly as under "minmax";
  a few values cut off from the rest (a burned-in marker, dead or hot pixels) fall outside
  and saturate, and the radiograph keeps its contrast. Values outside the window clip.

The stretch is round((v - lo) * 255 / (hi - lo)) in float64 for each pixel, clipped to
0..255. For integer images it is done once per grey level present, into a lookup table that
is then indexed by the pixels: the same float64 arithmetic on the same values, so the same
bytes, several times faster on a 2500x3000 image (millions of pixels, at most 65536 levels).
The percentile window of an integer picture comes from its histogram, so it is exact (float
pictures: a 65536-bin histogram over their range).
image_io applies it strip by strip (its memory budget); the table is made once for the whole
picture.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

# Larger ranges (32-bit integer data) fall back to the per-pixel path.
MAX_TABLE_LEVELS = 1 << 17

WINDOWS = ("minmax", "percentile")
PERCENTILES = (0.5, 99.5)
# An empty gap wider than this fraction of the percentile window ends the widening.
MAX_GAP = 1 / 8
# Float data (and integers over a wide range) are counted in this many bins for the window.
FLOAT_BINS = 1 << 16


def stretcher(lo: float, hi: float, integer: bool,
              span: tuple[float, float] | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """A function: grey levels (any part of the picture) -> uint8, for the window lo < hi.
    `span`: the picture's (min, max) when the window is narrower (the table must cover every
    level the picture holds); by default the window itself."""
    vmin, vmax = (lo, hi) if span is None else span
    if integer and all(float(v).is_integer() for v in (lo, hi, vmin, vmax)) \
            and vmax - vmin < MAX_TABLE_LEVELS:
        low = int(vmin)
        # = each v - lo, exactly (whole numbers in float64)
        levels = np.arange(int(vmin) - int(lo), int(vmax) - int(lo) + 1, dtype=np.float64)
        table = np.clip(np.rint(levels * (255.0 / (hi - lo))), 0, 255).astype(np.uint8)

        def by_table(values: np.ndarray) -> np.ndarray:
            values = np.asarray(values)
            offsets = values if low == 0 else np.subtract(values, low, dtype=values.dtype)
            return table[offsets]
        return by_table

    def by_arithmetic(values: np.ndarray) -> np.ndarray:
        scaled = np.rint((np.asarray(values, dtype=np.float64) - lo) * (255.0 / (hi - lo)))
        return np.clip(np.nan_to_num(scaled), 0, 255).astype(np.uint8)
    return by_arithmetic


def check_window(mode: str) -> str:
    if mode not in WINDOWS:
        raise ValueError(f"unknown high-bit-depth window {mode!r}; covid-edge knows "
                         f"{', '.join(WINDOWS)}")
    return mode


def level_counts(strips: Iterable[np.ndarray], span: tuple[float, float]
                 ) -> tuple[np.ndarray, np.ndarray, float]:
    """(sorted occupied levels, how many pixels hold each, the width of a level) of a
    picture given in strips, one pass, whose (min, max) is `span`. Integer data with a range
    under MAX_TABLE_LEVELS is counted exactly (width 0); anything else in FLOAT_BINS bins over
    the span, each represented by its centre (width: the bin's). Only one strip is held."""
    lo, hi = float(span[0]), float(span[1])
    counts, exact, bins = None, False, FLOAT_BINS
    for strip in strips:
        strip = np.asarray(strip)
        if counts is None:
            exact = (strip.dtype.kind in "ui" and lo.is_integer() and hi.is_integer()
                     and hi - lo < MAX_TABLE_LEVELS)
            bins = int(hi - lo) + 1 if exact else FLOAT_BINS
            counts = np.zeros(bins, dtype=np.int64)
        if exact and strip.dtype.kind == "u" and hi < MAX_TABLE_LEVELS:
            # Small unsigned values index the counts directly: no widened copy of the strip.
            counts += np.bincount(strip.ravel(), minlength=int(hi) + 1)[int(lo):]
        elif exact:
            counts += np.bincount((strip.astype(np.int64) - int(lo)).ravel(), minlength=bins)
        else:
            finite = strip[np.isfinite(strip)]
            counts += np.histogram(finite, bins, (lo, hi))[0]
    if counts is None:
        return np.zeros(0), np.zeros(0, dtype=np.int64), 0.0
    occupied = np.flatnonzero(counts)
    if exact:
        return (occupied + lo).astype(np.float64), counts[occupied], 0.0
    width = (hi - lo) / bins
    return lo + (occupied + 0.5) * width, counts[occupied], width


def robust_window(levels: np.ndarray, counts: np.ndarray,
                  percentiles: tuple[float, float] = PERCENTILES,
                  max_gap: float = MAX_GAP) -> tuple[float, float]:
    """The "percentile" window of a picture from its level_counts (see the module text)."""
    cdf = np.cumsum(counts)
    total = cdf[-1]
    # Inverted CDF: the first level whose cumulative count reaches q of the pixels.
    i_lo = int(np.searchsorted(cdf, percentiles[0] / 100.0 * total, side="left"))
    i_hi = int(np.searchsorted(cdf, percentiles[1] / 100.0 * total, side="left"))
    i_lo, i_hi = min(i_lo, len(levels) - 1), min(i_hi, len(levels) - 1)
    if i_hi <= i_lo:  # nearly all pixels at one level: the percentiles say nothing
        return float(levels[0]), float(levels[-1])
    gap_limit = max_gap * (levels[i_hi] - levels[i_lo])
    wide = np.diff(levels) > gap_limit  # wide[k]: a gap between levels k and k + 1
    above = np.flatnonzero(wide[i_hi:])
    hi = levels[i_hi + above[0]] if len(above) else levels[-1]
    below = np.flatnonzero(wide[:i_lo])
    lo = levels[below[-1] + 1] if len(below) else levels[0]
    return float(lo), float(hi)


def window_of(strips: Iterable[np.ndarray], mode: str,
              span: tuple[float, float] | None = None) -> tuple[float, float, float, float]:
    """(lo, hi, min, max) of a picture given in strips, for window `mode`. With its (min, max)
    known (`span`), the strips are read once, one at a time (image_io's memory budget)."""
    check_window(mode)
    if span is None:
        strips = list(strips)
        span = (min(float(np.min(s)) for s in strips), max(float(np.max(s)) for s in strips))
    vmin, vmax = float(span[0]), float(span[1])
    if mode == "minmax" or not vmax > vmin:
        return vmin, vmax, vmin, vmax
    levels, counts, width = level_counts(strips, (vmin, vmax))
    if len(levels) == 0:
        return vmin, vmax, vmin, vmax
    lo, hi = robust_window(levels, counts)
    # Binned (float) data: the window takes in the whole of its end bins.
    return max(vmin, lo - width / 2), min(vmax, hi + width / 2), vmin, vmax


def stretch_to_8bit(values: np.ndarray, mode: str = "minmax") -> np.ndarray:
    """uint8 array of `values` (any integer or float grey levels) windowed (`mode`) and
    stretched to 0..255."""
    values = np.asarray(values)
    lo, hi, vmin, vmax = window_of([values], mode)
    if not hi > lo:  # also NaN
        return np.zeros(values.shape, dtype=np.uint8)
    return stretcher(lo, hi, values.dtype.kind in "ui", (vmin, vmax))(values)
