"""The one preprocessing implementation: training, int8 calibration and the device all call it.

file -> upright 8-bit grayscale (image_io) -> resize to the model's size -> float32
x * scale + offset -> the gray channel replicated to the model's channel count.

The spec travels with the model in its model card, so the runtime never guesses.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .image_io import read_grayscale

_FILTERS = {
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "nearest": Image.Resampling.NEAREST,
}


@dataclass(frozen=True)
class PreprocessSpec:
    height: int = 224
    width: int = 224
    channels: int = 3
    resize_filter: str = "bilinear"
    # Pillow resizes in two steps (an integer box reduction, then the filter) when the image
    # is larger than reducing_gap times the target; this makes large X-rays fast.
    reducing_gap: float = 3.0
    # MobileNetV2's ImageNet input range is [-1, 1]: x / 127.5 - 1.
    scale: float = 1.0 / 127.5
    offset: float = -1.0

    def to_dict(self) -> dict:
        described = asdict(self)
        described["color"] = "8-bit grayscale, replicated to every channel"
        described["aspect_ratio"] = "not kept: the whole image is resized to height x width"
        described["high_bit_depth"] = "12/16-bit images are min-max stretched to 8 bit"
        described["normalization"] = "float32(pixel) * scale + offset"
        described["library"] = "Pillow (covid_edge.preprocess)"
        return described

    @classmethod
    def from_dict(cls, data: dict) -> "PreprocessSpec":
        known = {name: data[name] for name in cls.__dataclass_fields__ if name in data}
        spec = cls(**known)
        if spec.resize_filter not in _FILTERS:
            raise ValueError(f"unknown resize filter {spec.resize_filter!r}")
        return spec

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.height, self.width, self.channels)


def load_pixels(path: str | Path, spec: PreprocessSpec) -> np.ndarray:
    """Read a file into a uint8 (height, width) array at the model's size."""
    gray = read_grayscale(path, target_size=(spec.width, spec.height))
    return resize_gray(gray, spec)


def resize_gray(gray: Image.Image, spec: PreprocessSpec) -> np.ndarray:
    if gray.size != (spec.width, spec.height):
        gray = gray.resize((spec.width, spec.height), _FILTERS[spec.resize_filter],
                           reducing_gap=spec.reducing_gap)
    return np.asarray(gray, dtype=np.uint8)


def to_model_input(pixels: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """uint8 (..., height, width) -> float32 (..., height, width, channels)."""
    x = pixels.astype(np.float32) * np.float32(spec.scale) + np.float32(spec.offset)
    return np.repeat(x[..., np.newaxis], spec.channels, axis=-1)


def preprocess_file(path: str | Path, spec: PreprocessSpec) -> np.ndarray:
    """A file as the float model sees it: float32 (height, width, channels)."""
    return to_model_input(load_pixels(path, spec), spec)


def quantize(x: np.ndarray, scale: float, zero_point: int, dtype) -> np.ndarray:
    """float32 model input -> the integer input of an int8/uint8 model.

    Same arithmetic as TFLite's reference Quantize kernel (float32 x / scale, std::round, i.e.
    half away from zero, then + zero_point, clamped), because an integer-input model is the
    float graph with that kernel removed from its front. With the [-1, 1] scaling, x / scale
    lands on or near .5 for many pixels, so the rounding rule matters.
    """
    scaled = np.asarray(x, dtype=np.float32) / np.float32(scale)
    magnitude = np.abs(scaled)
    whole = np.floor(magnitude)
    rounded = np.sign(scaled) * (whole + (magnitude - whole >= 0.5))
    limits = np.iinfo(dtype)
    return np.clip(rounded + zero_point, limits.min, limits.max).astype(dtype)
