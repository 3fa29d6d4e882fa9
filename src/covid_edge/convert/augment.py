"""Augmentation that is valid for chest X-rays.

Small rotations, shifts, zoom and contrast/brightness changes mimic patient positioning and
exposure. No horizontal flip: it would put the heart on the right, which no real frontal
X-ray shows (and which would let the model learn from an impossible anatomy).

Corner erasing: the occlusion maps of the first release (docs/explain.md) showed normal
verdicts leaning on the radiographer's side marker in the top-right corner, a trait of the
normal images' source hospital rather than of healthy lungs. Painting random corner
rectangles a random flat grey, on both classes alike, takes that evidence away during
training so the model has to find its answer elsewhere. The corners hold shoulders, neck and
air, not lung fields, so no disease evidence is lost.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image



def random_affine(rng: np.random.Generator, width: int, height: int, max_rotation_deg: float,
                  zoom_range: tuple[float, float], max_shift: float) -> tuple:
    """A small random rotation, zoom and shift as PIL's AFFINE data (which maps output pixels
    back to input pixels: rotate and scale about the centre, then shift). The draws come in
    one order (angle, zoom, x, y), so seeded runs repeat; the lung model's training uses it too."""
    angle = math.radians(rng.uniform(-max_rotation_deg, max_rotation_deg))
    zoom = rng.uniform(*zoom_range)
    shift_x = rng.uniform(-max_shift, max_shift) * width
    shift_y = rng.uniform(-max_shift, max_shift) * height
    cos, sin = math.cos(angle) / zoom, math.sin(angle) / zoom
    cx, cy = width / 2.0, height / 2.0
    return (cos, sin, cx - cos * cx - sin * cy - shift_x,
            -sin, cos, cy + sin * cx - cos * cy - shift_y)

@dataclass(frozen=True)
class Augmenter:
    max_rotation_deg: float = 7.0
    max_shift: float = 0.06        # fraction of the image side
    zoom_range: tuple[float, float] = (0.92, 1.10)
    max_contrast: float = 0.20     # contrast factor in [1 - c, 1 + c]
    max_brightness: float = 0.08   # shift as a fraction of 255
    corner_erase_p: float = 0.5    # chance that an image gets its corners erased
    corner_erase_size: tuple[float, float] = (0.12, 0.35)  # rectangle side, fraction of image

    def __call__(self, pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """uint8 (n, h, w) -> float32 (n, h, w) in [0, 255]."""
        return np.stack([self.one(image, rng) for image in pixels])

    def one(self, pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        height, width = pixels.shape
        matrix = random_affine(rng, width, height, self.max_rotation_deg, self.zoom_range,
                               self.max_shift)
        moved = Image.fromarray(pixels).transform(
            (width, height), Image.Transform.AFFINE, matrix, Image.Resampling.BILINEAR, fillcolor=0)
        x = np.asarray(moved, dtype=np.float32)
        contrast = rng.uniform(1 - self.max_contrast, 1 + self.max_contrast)
        brightness = rng.uniform(-self.max_brightness, self.max_brightness) * 255.0
        mean = x.mean()
        # Whole grey levels, as a decoded file has: the model never sees other values.
        x = np.clip(np.rint((x - mean) * contrast + mean + brightness), 0.0, 255.0)
        if rng.uniform() < self.corner_erase_p:
            self.erase_corners(x, rng)
        return x

    def erase_corners(self, x: np.ndarray, rng: np.random.Generator) -> None:
        """Paint 1 to 4 randomly chosen corners, each a random rectangle of flat grey."""
        height, width = x.shape
        corners = rng.permutation(4)[:rng.integers(1, 5)]
        for corner in corners:
            rect_h = int(round(rng.uniform(*self.corner_erase_size) * height))
            rect_w = int(round(rng.uniform(*self.corner_erase_size) * width))
            rows = slice(0, rect_h) if corner < 2 else slice(height - rect_h, height)
            cols = slice(0, rect_w) if corner % 2 == 0 else slice(width - rect_w, width)
            x[rows, cols] = float(rng.integers(0, 256))
