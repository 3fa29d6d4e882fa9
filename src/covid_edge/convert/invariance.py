"""Training-time invariance augmentation: the ways an X-ray is re-encoded on its way to the
kiosk, drawn at random and applied to every class alike.

Release 0.2.0 learned "which source, which encoding": its normals and its COVID images came
from different hospitals that encoded them differently, and re-encoding an image flipped its
verdict (the shift suite, `covid-edge bench shift`: 7.6% at JPEG quality 50, 16.6% with
Gaussian noise of sigma 3). Applying the same random encodings to both classes makes the
encoding carry no label, so the model has nothing to gain from it.

With probability `p` an image (after the geometric and exposure augmentation of
covid_edge.convert.augment) goes through a random chain of 1 to `max_chain` distinct
transforms, in random order:

    jpeg      re-encoded as JPEG at a quality drawn from 10..95 (Pillow, in memory)
    resample  down to 0.4-0.9 of its size (or, one time in four, up to 1.3-2x, as an upscaled
              export) and back, each way with a random filter
    high_bit  exported as 12- or 16-bit data (a random part of the range, half the time
              with a burned-in marker at the top value) and read back through the device's
              own window (covid_edge.stretch, the spec's high_bit_window)
    noise     Gaussian noise, sigma drawn from 1..8 grey levels
    blur      Gaussian blur, radius drawn from 0.3..2 px
    gamma     gamma drawn from 0.7..1.4 (log-uniform)
    borders   letterbox bars (to a random aspect 1.05-1.5, either way) or a frame of 2-10%,
              dark grey, then squashed back to the model's size as the device resizes
    text      a side marker and/or a text line burned in at a random place, white or black
    camera    a mild camera capture: the shift suite's photograph of the film on a 4:3
              frame (perspective, defocus, vignetting, glare, colour cast, sensor noise),
              the camera's JPEG, read back by the device's reader and resized

The picture-level cores come from covid_edge.benchmarks.perturbations, but the settings do
NOT: the shift suite evaluates fixed settings (JPEG q90/75/50/30/10, a half-size bicubic/
bilinear chain, noise sigma 3 and 8, blur 1 and 2, gamma 0.8 and 1.25, 4:3 bars, an 8%
frame, markers in four fixed corners, a 2048-px export) on its own seeded streams; here
every setting is drawn from a continuous range from the training Generator, so the suite's
figures measure invariance to settings the model was not shown exactly. Two exceptions to
say plainly: the camera capture reuses the suite's photograph model (its keystone, vignetting
and colour cast ranges; the defocus and glare ranges here are milder), and the high-bit-depth
round trip goes through the same reader the suite's export meets, because matching the
device is the point. Their shift figures are therefore less "held out" than the others.

Everything is driven by the numpy Generator passed in, so a seeded run repeats. With p = 0
the augmenter is convert.augment.Augmenter itself (not even a draw more), so release 0.2.0's
training stays reproducible.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from ..benchmarks import perturbations as shift
from ..stretch import check_window, robust_window, stretcher
from .augment import Augmenter

TRANSFORMS = ("jpeg", "resample", "high_bit", "noise", "blur", "gamma", "borders", "text",
              "camera")
# How often each is drawn, relative to the others: the camera capture costs about ten times
# what the others do (scripts/augment_cost.py), so it is drawn less often.
WEIGHTS = {"camera": 0.4}

_DOWN_FILTERS = (Image.Resampling.BOX, Image.Resampling.BILINEAR, Image.Resampling.BICUBIC,
                 Image.Resampling.LANCZOS)
_UP_FILTERS = (Image.Resampling.NEAREST, Image.Resampling.BILINEAR, Image.Resampling.BICUBIC,
               Image.Resampling.LANCZOS)
# The device resizes a decoded picture to the model's size with the spec's filter (bilinear).
_DEVICE_RESIZE = Image.Resampling.BILINEAR
_TEXTS = ("PORTABLE", "AP", "PA", "SUPINE", "ERECT", "SEMI-ERECT", "ICU", "MOBILE", "CHEST",
          "L", "R", "INSP", "EXP")


@lru_cache(maxsize=64)
def _font(size: int):
    return shift.font(size)


def _jpeg(x: np.ndarray, rng: np.random.Generator, aug: "InvarianceAugmenter") -> np.ndarray:
    data = shift.encode(Image.fromarray(x), "JPEG", quality=int(rng.integers(10, 96)))
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("L"))


def _resample(x, rng, aug):
    height, width = x.shape
    # Mostly down and back; sometimes up and back, as an upscaled export read at model size.
    scale = rng.uniform(0.4, 0.9) if rng.uniform() < 0.75 else rng.uniform(1.3, 2.0)
    down = _DOWN_FILTERS[int(rng.integers(len(_DOWN_FILTERS)))]
    up = _UP_FILTERS[int(rng.integers(len(_UP_FILTERS)))]
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    there, back = (down, up) if scale < 1 else (up, down)
    return np.asarray(shift.resampled(Image.fromarray(x), size, there, back))


def _high_bit(x, rng, aug):
    top = (1 << int(rng.choice([12, 16]))) - 1
    # Where the data sits in the container: rarely the whole range.
    low = rng.uniform(0.0, 0.2) * top
    high = top - rng.uniform(0.0, 0.3) * top
    # 8-bit level -> deep value: strictly increasing (at least 1.9 deep levels per 8-bit one).
    table = np.rint(low + np.arange(256) * ((high - low) / 255.0)).astype(np.int64)
    marker = None
    if rng.uniform() < 0.5:  # a marker burned in at the top value (hot pixels)
        rows, cols = x.shape
        side = max(2, int(rng.uniform(0.02, 0.06) * rows))
        r, c = int(rng.integers(0, rows - side)), int(rng.integers(0, cols - side))
        marker = (slice(r, r + side), slice(c, c + side))
    return read_back_deep(x, table, top, marker, aug.high_bit_window)


def read_back_deep(x: np.ndarray, table: np.ndarray, top: int, marker, window: str
                   ) -> np.ndarray:
    """What the device reads from the deep picture table[x] with `marker` (a box) at `top`:
    stretch.stretch_to_8bit(deep, window), computed on the 256 levels rather than on every
    pixel (the device's window from the same level counts, then its stretch as a table)."""
    counts = np.bincount(x.ravel(), minlength=256)
    if marker is not None:
        counts -= np.bincount(x[marker].ravel(), minlength=256)
    occupied = np.flatnonzero(counts)
    levels, level_counts = table[occupied].astype(np.float64), counts[occupied]
    if marker is not None:
        levels = np.append(levels, float(top))
        level_counts = np.append(level_counts, x[marker].size)
    vmin, vmax = float(levels[0]), float(levels[-1])
    if not vmax > vmin:
        return np.zeros_like(x)
    lo, hi = (vmin, vmax) if window == "minmax" else robust_window(levels, level_counts)
    to_8bit = stretcher(lo, hi, integer=True, span=(vmin, vmax))
    # Levels outside the picture's span are never indexed; clip them into it for the table.
    out = to_8bit(np.clip(table, int(vmin), int(vmax)))[x]
    if marker is not None:
        out[marker] = to_8bit(np.array([top]))[0]
    return out


def _noise(x, rng, aug):
    return shift.add_noise(x, rng.uniform(1.0, 8.0), rng)


def _blur(x, rng, aug):
    radius = rng.uniform(0.3, 2.0)
    return np.asarray(Image.fromarray(x).filter(ImageFilter.GaussianBlur(radius)))


def _gamma(x, rng, aug):
    value = math.exp(rng.uniform(math.log(0.7), math.log(1.4)))
    return np.asarray(Image.fromarray(x).point(shift.gamma_table(value)))


def _borders(x, rng, aug):
    height, width = x.shape
    img = Image.fromarray(x)
    fill = int(rng.integers(0, 41)) if rng.uniform() < 0.5 else 0
    if rng.uniform() < 0.5:
        aspect = rng.uniform(1.05, 1.5)
        if rng.uniform() < 0.5:  # bars above and below instead of left and right
            img = shift.padded_to_aspect(img.transpose(Image.Transpose.TRANSPOSE), aspect,
                                         fill).transpose(Image.Transpose.TRANSPOSE)
        else:
            img = shift.padded_to_aspect(img, aspect, fill)
        img = img.resize((width, height), _DEVICE_RESIZE, reducing_gap=3.0)
    else:
        img = shift.framed(img, rng.uniform(0.02, 0.10), fill, _DEVICE_RESIZE)
    return np.asarray(img)


def _text(x, rng, aug):
    height, width = x.shape
    img = Image.fromarray(x)
    draw = ImageDraw.Draw(img)
    fill = 255 if rng.uniform() < 0.8 else 0
    what = int(rng.integers(3))  # 0: a marker, 1: a line of text, 2: both
    if what != 1:
        size = max(6, int(rng.uniform(0.04, 0.09) * height))
        corner = (rng.uniform(0, width - 1.6 * size), rng.uniform(0, height - 1.6 * size))
        shift.draw_marker(draw, corner, size, ("L", "R")[int(rng.integers(2))], fill)
    if what != 0:
        size = max(6, int(rng.uniform(0.03, 0.06) * height))
        words = [_TEXTS[i] for i in rng.integers(0, len(_TEXTS), int(rng.integers(1, 4)))]
        text = " ".join(words)
        if rng.uniform() < 0.5:
            text += f" {int(rng.integers(1, 29)):02d}/{int(rng.integers(1, 13)):02d}/20" \
                    f"{int(rng.integers(10, 26))}"
        xy = (rng.uniform(0, 0.6) * width, rng.uniform(0, 0.95) * height - 0.5 * size)
        draw.text(xy, text, fill=fill, font=_font(size))
    return np.asarray(img)


def _camera(x, rng, aug):
    height, width = x.shape
    # A 4:3 frame three quarters of the model's height: the film in it is smaller than the
    # model's input anyway, and the photograph's per-pixel work is the costliest here.
    frame = (round(width), round(0.75 * height))
    photo = shift.photograph(Image.fromarray(x), rng, frame=frame, defocus=(0.2, 0.6),
                             glare=(5, 40))
    data = shift.encode(photo, "JPEG", quality=int(rng.integers(75, 96)))
    # Imported here: image_io is the device's reader, the same code a photographed file meets.
    from ..image_io import read_image

    gray = read_image(io.BytesIO(data), target_size=(width, height)).gray
    return np.asarray(gray.resize((width, height), _DEVICE_RESIZE, reducing_gap=3.0))


_APPLY = {"jpeg": _jpeg, "resample": _resample, "high_bit": _high_bit, "noise": _noise,
          "blur": _blur, "gamma": _gamma, "borders": _borders, "text": _text, "camera": _camera}


@dataclass(frozen=True)
class InvarianceAugmenter:
    """Augmenter's augmentation, then (with probability p) a random chain of re-encodings.
    uint8 (n, h, w) -> float32 (n, h, w) of whole grey levels in [0, 255]."""

    base: Augmenter = field(default_factory=Augmenter)
    p: float = 0.5
    max_chain: int = 3
    high_bit_window: str = "percentile"  # the spec's: what the device does with deep data
    transforms: tuple[str, ...] = TRANSFORMS

    def __post_init__(self):
        if not 0.0 <= self.p <= 1.0:
            raise ValueError(f"invariance probability must be in 0..1, got {self.p}")
        check_window(self.high_bit_window)
        unknown = set(self.transforms) - set(_APPLY)
        if unknown or not self.transforms:
            raise ValueError(f"unknown invariance transforms {sorted(unknown)}; covid-edge "
                             f"knows {', '.join(TRANSFORMS)}")

    def __call__(self, pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return np.stack([self.one(image, rng) for image in pixels])

    def one(self, pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        x = self.base.one(pixels, rng)
        if self.p > 0 and rng.uniform() < self.p:
            x = self.chain(x.astype(np.uint8), rng).astype(np.float32)
        return x

    def chain(self, pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """uint8 (h, w) through 1..max_chain distinct transforms in random order."""
        count = int(rng.integers(1, min(self.max_chain, len(self.transforms)) + 1))
        weights = np.array([WEIGHTS.get(name, 1.0) for name in self.transforms])
        for index in rng.choice(len(self.transforms), count, replace=False,
                                p=weights / weights.sum()):
            pixels = self.apply(self.transforms[index], pixels, rng)
        return pixels

    def apply(self, name: str, pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One transform by name: uint8 (h, w) -> uint8 (h, w) of the same shape."""
        return np.ascontiguousarray(_APPLY[name](pixels, rng, self), dtype=np.uint8)


def augmenter(base: Augmenter, p: float, high_bit_window: str = "percentile"):
    """What training uses: `base` itself when p is 0 (release 0.2.0's training, draw for
    draw), else an InvarianceAugmenter around it."""
    if p <= 0:
        return base
    return InvarianceAugmenter(base=base, p=p, high_bit_window=high_bit_window)
