"""Augmentation that is valid for chest X-rays.

Small rotations, shifts, zoom and contrast/brightness changes mimic patient positioning and
exposure. No horizontal flip: it would put the heart on the right, which no real frontal
X-ray shows (and which would let the model learn from an impossible anatomy).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class Augmenter:
    max_rotation_deg: float = 7.0
    max_shift: float = 0.06        # fraction of the image side
    zoom_range: tuple[float, float] = (0.92, 1.10)
    max_contrast: float = 0.20     # contrast factor in [1 - c, 1 + c]
    max_brightness: float = 0.08   # shift as a fraction of 255

    def __call__(self, pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """uint8 (n, h, w) -> float32 (n, h, w) in [0, 255]."""
        return np.stack([self.one(image, rng) for image in pixels])

    def one(self, pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        height, width = pixels.shape
        angle = math.radians(rng.uniform(-self.max_rotation_deg, self.max_rotation_deg))
        zoom = rng.uniform(*self.zoom_range)
        shift_x = rng.uniform(-self.max_shift, self.max_shift) * width
        shift_y = rng.uniform(-self.max_shift, self.max_shift) * height
        # PIL's affine transform maps output pixels back to input pixels: rotate and scale
        # about the centre, then shift.
        cos, sin = math.cos(angle) / zoom, math.sin(angle) / zoom
        cx, cy = width / 2.0, height / 2.0
        matrix = (cos, sin, cx - cos * cx - sin * cy - shift_x,
                  -sin, cos, cy + sin * cx - cos * cy - shift_y)
        moved = Image.fromarray(pixels).transform(
            (width, height), Image.Transform.AFFINE, matrix, Image.Resampling.BILINEAR, fillcolor=0)
        x = np.asarray(moved, dtype=np.float32)
        contrast = rng.uniform(1 - self.max_contrast, 1 + self.max_contrast)
        brightness = rng.uniform(-self.max_brightness, self.max_brightness) * 255.0
        mean = x.mean()
        # Whole grey levels, as a decoded file has: the model never sees other values.
        return np.clip(np.rint((x - mean) * contrast + mean + brightness), 0.0, 255.0)
