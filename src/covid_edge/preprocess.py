"""The one preprocessing implementation: training, int8 calibration and the device all call it.

file -> upright 8-bit grayscale (image_io) -> [crop to the lung fields plus a margin, when the
spec says crop="lungs"] -> resize to the model's size -> float32 x * scale + offset -> the gray
channel replicated to the model's channel count.

The spec travels with the model in its model card, so the runtime never guesses.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image

from .image_io import read_grayscale

_FILTERS = {
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "nearest": Image.Resampling.NEAREST,
}


CROP_MODES = (None, "lungs")


@dataclass(frozen=True)
class PreprocessSpec:
    height: int = 224
    width: int = 224
    channels: int = 3
    resize_filter: str = "bilinear"
    # Pillow resizes in two steps (an integer box reduction, then the filter) when the image
    # is larger than reducing_gap times the target; this makes large X-rays fast.
    reducing_gap: float = 3.0
    # MobileNetV2's ImageNet input range, about [-1, 1]. The offset is -128/127.5 rather
    # than -1 so that an int8 input calibrates to scale 1/127.5 and zero point 0: then the
    # quantized input is exactly pixel - 128, with no rounding. With -1 every pixel would land
    # half-way between two int8 values and pairs of grey levels would merge.
    scale: float = 1.0 / 127.5
    offset: float = -128.0 / 127.5
    # Crop mode: "lungs" crops the grey picture to the lung model's bounding box around the
    # lung fields, widened by crop_margin of the box's width and height on every side, before
    # the resize (pictures without lung fields are used whole). None: the whole picture.
    crop: str | None = None
    crop_margin: float = 0.1
    # The lung model the crop was trained with (its sha256): another one moves the crop.
    crop_model_sha256: str | None = None
    # How 12/16-bit data (PNG/TIFF, DICOM without a VOI) becomes 8 bit: "minmax" (release
    # 0.2.0, and any card that does not say) or "percentile" (a robust window that hot pixels
    # and burned-in markers cannot squeeze; covid_edge.stretch). The card's "high_bit_depth"
    # key is the sentence saying so, for people.
    high_bit_window: str = "minmax"

    def to_dict(self) -> dict:
        described = asdict(self)
        described["color"] = "8-bit grayscale, replicated to every channel"
        described["aspect_ratio"] = "not kept: the whole image is resized to height x width"
        if self.high_bit_window == "percentile":
            from .stretch import MAX_GAP, PERCENTILES

            described["high_bit_window_percentiles"] = list(PERCENTILES)
            described["high_bit_window_max_gap"] = MAX_GAP
            described["high_bit_depth"] = (
                "12/16-bit images are windowed from the 0.5th to the 99.5th percentile, "
                "widened over occupied levels while no empty gap is wider than 1/8 of that "
                "window, then stretched to 8 bit (a DICOM VOI is used when the file has one)")
        else:
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
        from .stretch import check_window

        check_window(spec.high_bit_window)
        if spec.crop not in CROP_MODES:
            raise ValueError(f"unknown crop mode {spec.crop!r}; covid-edge knows "
                             f"{', '.join(str(m) for m in CROP_MODES)}")
        return spec

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.height, self.width, self.channels)


def load_pixels(path: str | Path | BinaryIO, spec: PreprocessSpec, lungs=None) -> np.ndarray:
    """Read a file (a path or a binary file object) into a uint8 (height, width) array at the
    model's size. A crop-mode spec runs the lung model (`lungs`, a LungSegmenter; default the
    released one) on the decoded picture, as the device does."""
    gray = read_grayscale(path, target_size=(spec.width, spec.height),
                          high_bit_depth=spec.high_bit_window)
    lung = None
    if spec.crop == "lungs":
        lung = (lungs or default_lung_segmenter()).segment(gray)
    return prepare_gray(gray, spec, lung)


def prepare_gray(gray: Image.Image, spec: PreprocessSpec, lung=None) -> np.ndarray:
    """The decoded grey picture -> uint8 pixels at the model's size: the crop (when the spec
    asks for one; `lung` is the lung model's result on this picture) and the resize."""
    if spec.crop == "lungs":
        if lung is None:
            raise ValueError("this preprocessing crops to the lungs: give the lung model's result")
        gray = crop_to_box(gray, lung.geometry.bbox, spec.crop_margin)
    return resize_gray(gray, spec)


def crop_box(bbox: tuple[float, float, float, float] | None, size: tuple[int, int],
             margin: float) -> tuple[int, int, int, int] | None:
    """A (x0, y0, x1, y1) box in 0..1 of the picture -> pixel box (left, top, right, bottom)
    widened by `margin` of its width and height on each side and kept inside the picture;
    None for no box."""
    if bbox is None:
        return None
    width, height = size
    x0, y0, x1, y1 = bbox
    dx, dy = (x1 - x0) * margin, (y1 - y0) * margin
    # Rounded first, so that float error (0.86 * 100 = 86.00000000000001) moves no edge.
    left = max(0, int(np.floor(round((x0 - dx) * width, 6))))
    top = max(0, int(np.floor(round((y0 - dy) * height, 6))))
    right = min(width, int(np.ceil(round((x1 + dx) * width, 6))))
    bottom = min(height, int(np.ceil(round((y1 + dy) * height, 6))))
    if right - left < 2 or bottom - top < 2:
        return None
    return left, top, right, bottom


def crop_to_box(gray: Image.Image, bbox, margin: float) -> Image.Image:
    box = crop_box(bbox, gray.size, margin)
    return gray if box is None else gray.crop(box)


_default_lungs = None


def default_lung_segmenter():
    """The released lung model, loaded once (training and calibration of a crop-mode model)."""
    global _default_lungs
    if _default_lungs is None:
        from .edge_runtime.lungs import LungSegmenter

        _default_lungs = LungSegmenter.load()
    return _default_lungs


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

    An integer-input model is the float-input graph with its first QUANTIZE kernel removed, so
    this does what that kernel does on the device: float32 x / scale, rounded half to even, plus
    the zero point, clamped. (The optimized and XNNPACK kernels round half to even; only the
    reference kernel rounds half away from zero. With the [-1, 1] scaling, scale 2/255 and zero
    point -1, every pixel value falls halfway between two integers, so the rule decides every
    input value; tests/data/quantize_probe.tflite checks it against the kernel.)
    """
    scaled = np.asarray(x, dtype=np.float32) / np.float32(scale)
    limits = np.iinfo(dtype)
    return np.clip(np.rint(scaled) + zero_point, limits.min, limits.max).astype(dtype)
