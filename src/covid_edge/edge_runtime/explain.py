"""Where in the X-ray the deployed model looks: occlusion sensitivity with the TFLite model itself.

Method (Zeiler & Fergus 2014, "Visualizing and Understanding Convolutional Networks"): hide one
square patch of the model's input at a time, run the model, and record how much the probability
of COVID-19 drops. Each pixel's score is the mean drop over the patches that covered it:

    score > 0  hiding the region lowers P(covid): the region pushed the model toward covid
    score < 0  hiding the region raises P(covid): the region pushed the model toward normal

Why occlusion and not gradients (Grad-CAM, saliency): it needs nothing but forward passes, so it
runs on exactly the model that makes the decision, the int8 TFLite file on the device, with no
TensorFlow and no gradients (an int8 model has none to offer).

The occluder (what replaces a hidden patch) matters in a chest X-ray. A patch of the image mean
(the classic grey square) is much brighter than the dark lung field around it: inside a lung it
*adds* a bright opacity, which is what COVID pneumonia looks like, so it can raise P(covid) for
reasons that have nothing to do with what was there. The default occluder is therefore the
image blurred (Gaussian, sigma = half the patch): the patch keeps the local brightness but loses
its detail, so a score measures what the model reads from structure at that place. `mean` is
kept as an option for comparison.

Cost: one inference for the unhidden image plus one per patch position. The default grid is
patch = side/7 and stride = patch/2: 13 x 13 positions at 224 (32 px patches every 16 px),
170 inferences; 15 x 15 at 96. Inputs are assembled in the model's integer domain (the
per-pixel quantization commutes with pasting a patch), so each step costs one copy and one
invoke.

Rendering uses Pillow and numpy only (matplotlib is not installed on the device): the heatmap is
drawn over the X-ray with a diverging colour map and a colour bar, under a title with the
verdict and above the disclaimer. The colour map is ColorBrewer's RdBu (Cynthia A. Brewer,
colorbrewer2.org, Apache License 2.0), reversed so that red means "toward covid", linearly
interpolated from its 11 published colours into 256 entries, as matplotlib builds its "RdBu_r".
"""

from __future__ import annotations

import io
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from .. import DISCLAIMER
from ..image_io import read_grayscale
from ..preprocess import resize_gray
from .classifier import Classifier

OCCLUDERS = ("blur", "mean")
# Default grid: patches of 1/7 of the input side, half-overlapping.
PATCH_FRACTION = 7
# A heatmap is drawn on a colour scale of at least +-0.05: an int8 output moves in steps of
# 1/256, so smaller changes are quantization noise and must not be stretched into colour.
MIN_COLOUR_SCALE = 0.05
# At full scale the overlay covers the X-ray with this opacity; small scores stay transparent.
MAX_OVERLAY_ALPHA = 0.75
DEFAULT_DISPLAY = 448

# ColorBrewer 11-class RdBu, from dark red to dark blue.
_RDBU_11 = ("67001f", "b2182b", "d6604d", "f4a582", "fddbc7", "f7f7f7",
            "d1e5f0", "92c5de", "4393c3", "2166ac", "053061")


def _diverging_lut() -> np.ndarray:
    """256 x 3 uint8 RGB, index 0 = most negative score (blue), 255 = most positive (red)."""
    anchors = np.array([[int(code[i:i + 2], 16) for i in (0, 2, 4)]
                        for code in reversed(_RDBU_11)], dtype=np.float64)
    positions = np.linspace(0.0, 1.0, len(anchors))
    samples = np.linspace(0.0, 1.0, 256)
    table = np.stack([np.interp(samples, positions, anchors[:, c]) for c in range(3)], axis=1)
    return np.rint(table).astype(np.uint8)


COLOUR_MAP = _diverging_lut()


@dataclass
class Explanation:
    """An occlusion-sensitivity map of one image and what it cost."""
    probability: float  # P(covid) of the unhidden image
    verdict: str
    threshold: float
    positive_label: str
    heatmap: np.ndarray  # float32 (height, width) at the model's input size; see module doc
    occluded: np.ndarray  # float32 (rows, columns): P(covid) with each patch hidden
    patch: int
    stride: int
    occluder: str
    inferences: int
    elapsed_ms: float  # input assembly + every invoke, the whole map
    invoke_ms: float  # the interpreter's invokes alone
    pixels: np.ndarray = field(repr=False)  # uint8 (height, width): what the model saw

    @property
    def grid(self) -> tuple[int, int]:
        return tuple(int(n) for n in self.occluded.shape)

    @property
    def colour_scale(self) -> float:
        return max(float(np.abs(self.heatmap).max()), MIN_COLOUR_SCALE)

    def figures(self) -> dict:
        """Numbers for --json, logs and web pages."""
        peak = np.unravel_index(int(np.argmax(self.heatmap)), self.heatmap.shape)
        return {
            "probability": self.probability,
            "verdict": self.verdict,
            "threshold": self.threshold,
            "method": "occlusion sensitivity",
            "patch": self.patch,
            "stride": self.stride,
            "occluder": self.occluder,
            "grid": list(self.grid),
            "inferences": self.inferences,
            "elapsed_ms": round(self.elapsed_ms, 2),
            "ms_per_inference": round(self.elapsed_ms / self.inferences, 3),
            "invoke_ms": round(self.invoke_ms, 2),
            "max_drop": float(self.heatmap.max()),  # strongest evidence toward covid
            "max_rise": float(-self.heatmap.min()),  # strongest evidence toward normal
            "peak_xy": [int(peak[1]), int(peak[0])],  # in model-input pixels
            "colour_scale": self.colour_scale,
        }


# -- the occlusion grid --------------------------------------------------------------------

def default_patch(side: int) -> int:
    return max(2, side // PATCH_FRACTION)


def default_stride(patch: int) -> int:
    return max(1, patch // 2)


def patch_starts(side: int, patch: int, stride: int) -> list[int]:
    """Top (or left) edges of the patches along one side; the last patch always reaches the
    far edge, so every pixel is covered at least once."""
    if not 1 <= patch <= side:
        raise ValueError(f"patch must be 1..{side} pixels (the model's input side), got {patch}")
    if not 1 <= stride <= patch:
        raise ValueError(f"stride must be 1..patch ({patch}) pixels so that the patches leave "
                         f"no gaps, got {stride}")
    starts = list(range(0, side - patch + 1, stride))
    if starts[-1] != side - patch:
        starts.append(side - patch)
    return starts


def count_inferences(height: int, width: int, patch: int, stride: int) -> int:
    """One for the unhidden image plus one per patch position."""
    return 1 + len(patch_starts(height, patch, stride)) * len(patch_starts(width, patch, stride))


def occluder_pixels(pixels: np.ndarray, kind: str, patch: int) -> np.ndarray:
    """What a hidden patch shows instead of the image (see the module doc for the choice)."""
    if kind == "blur":
        blurred = Image.fromarray(pixels).filter(ImageFilter.GaussianBlur(radius=patch / 2))
        return np.asarray(blurred, dtype=np.uint8)
    if kind == "mean":
        return np.full_like(pixels, int(round(float(pixels.mean()))))
    raise ValueError(f"occluder must be one of {', '.join(OCCLUDERS)}, got {kind!r}")


# -- computing a map -----------------------------------------------------------------------

def explain_pixels(classifier: Classifier, pixels: np.ndarray, patch: int | None = None,
                   stride: int | None = None, occluder: str = "blur",
                   progress: Callable[[int], None] | None = None) -> Explanation:
    """Occlusion sensitivity of `pixels`, uint8 (height, width) at the model's input size.

    `progress(n)` is called after every n inferences (for a progress bar)."""
    height, width = classifier.spec.height, classifier.spec.width
    patch = patch or default_patch(min(height, width))
    stride = stride or default_stride(patch)
    rows, columns = patch_starts(height, patch, stride), patch_starts(width, patch, stride)
    hidden = occluder_pixels(np.asarray(pixels, dtype=np.uint8), occluder, patch)

    start = time.perf_counter()
    base = classifier.prepare_input(pixels)
    replacement = classifier.prepare_input(hidden)
    _, probability, invoke_ms = classifier.infer(base)
    occluded = np.empty((len(rows), len(columns)), dtype=np.float32)
    total = np.zeros((height, width), dtype=np.float64)
    covered = np.zeros((height, width), dtype=np.float64)
    for i, top in enumerate(rows):
        for j, left in enumerate(columns):
            window = (slice(None), slice(top, top + patch), slice(left, left + patch))
            trial = base.copy()
            trial[window] = replacement[window]
            _, occluded[i, j], latency_ms = classifier.infer(trial)
            invoke_ms += latency_ms
            total[top:top + patch, left:left + patch] += probability - occluded[i, j]
            covered[top:top + patch, left:left + patch] += 1.0
        if progress is not None:
            progress(len(columns))
    elapsed_ms = (time.perf_counter() - start) * 1000.0

    return Explanation(
        probability=probability, verdict=classifier.verdict(probability),
        threshold=classifier.threshold, positive_label=classifier.positive_label,
        heatmap=(total / covered).astype(np.float32), occluded=occluded, patch=patch,
        stride=stride, occluder=occluder, inferences=1 + occluded.size, elapsed_ms=elapsed_ms,
        invoke_ms=invoke_ms, pixels=np.asarray(pixels, dtype=np.uint8))


def explain_gray(classifier: Classifier, gray: Image.Image, **options) -> Explanation:
    """An 8-bit grayscale picture of any size (as read_grayscale returns), resized exactly as
    `classify` resizes it."""
    return explain_pixels(classifier, resize_gray(gray, classifier.spec), **options)


def explain_to_png(classifier: Classifier, gray: Image.Image, name: str = "",
                   display: int = DEFAULT_DISPLAY, **options) -> tuple[Explanation, bytes]:
    """The whole job for a web page or kiosk: the map and the rendered overlay as PNG bytes.

    The interpreter is not thread-safe: call this under the lock that guards the classifier."""
    explanation = explain_gray(classifier, gray, **options)
    return explanation, png_bytes(render(explanation, gray, name, display))


def explain_file(classifier: Classifier, path: str | Path, display: int = DEFAULT_DISPLAY,
                 **options) -> tuple[Explanation, Image.Image]:
    """Read an image file (raises ImageReadError), explain it and render the overlay."""
    gray = read_grayscale(path)
    explanation = explain_gray(classifier, gray, **options)
    return explanation, render(explanation, gray, Path(path).name, display)


# -- rendering -----------------------------------------------------------------------------

def colourize(heatmap: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Scores -> (RGB uint8 from the colour map, opacity 0..1 growing with |score|)."""
    normalized = np.clip(heatmap / scale, -1.0, 1.0)
    index = np.rint((normalized + 1.0) * 127.5).astype(np.intp)
    return COLOUR_MAP[index], np.abs(normalized) * MAX_OVERLAY_ALPHA


def overlay(gray: Image.Image, heatmap: np.ndarray, scale: float, display: int) -> Image.Image:
    """The X-ray at display x display (squeezed as the model squeezes it) under the heatmap."""
    xray = np.asarray(gray.resize((display, display), Image.Resampling.BILINEAR),
                      dtype=np.float64)
    # Bilinear upsampling of the scores keeps the map as coarse as the patches really are,
    # without blocky edges that would suggest a precision it does not have.
    scores = np.asarray(Image.fromarray(heatmap.astype(np.float32)).resize(
        (display, display), Image.Resampling.BILINEAR))
    colour, alpha = colourize(scores, scale)
    blended = xray[..., None] * (1.0 - alpha[..., None]) + colour * alpha[..., None]
    return Image.fromarray(np.rint(blended).astype(np.uint8))


@dataclass(frozen=True)
class _Layout:
    display: int
    margin: int = 16
    title_height: int = 62
    bar_gap: int = 14
    bar_width: int = 18
    label_width: int = 64
    footer_lines: int = 5
    line_height: int = 16

    @property
    def size(self) -> tuple[int, int]:
        width = (2 * self.margin + self.display + self.bar_gap + self.bar_width
                 + self.label_width)
        height = (2 * self.margin + self.title_height + self.display + 10
                  + self.footer_lines * self.line_height)
        return width, height


def canvas_size(display: int = DEFAULT_DISPLAY) -> tuple[int, int]:
    """(width, height) of every rendered explanation for a given display size."""
    return _Layout(display).size


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)  # Pillow's bundled FreeType font
    except (AttributeError, OSError, TypeError, ImportError):  # Pillow without FreeType
        return ImageFont.load_default()


def _fit(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> str:
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "...", font=font) > width:
        text = text[:-1]
    return text + "..."


def _wrap(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> list[str]:
    for columns in range(len(text), 10, -2):
        lines = textwrap.wrap(text, columns)
        if all(draw.textlength(line, font=font) <= width for line in lines):
            return lines
    return textwrap.wrap(text, 40)


def render(explanation: Explanation, gray: Image.Image, name: str = "",
           display: int = DEFAULT_DISPLAY) -> Image.Image:
    """The figure: title (verdict, probability), overlay, colour bar, legend and disclaimer."""
    layout = _Layout(display)
    canvas = Image.new("RGB", layout.size, "white")
    draw = ImageDraw.Draw(canvas)
    big, small = _font(18), _font(13)
    m = layout.margin
    text_width = layout.size[0] - 2 * m
    scale = explanation.colour_scale

    verdict = explanation.verdict.upper()
    title = (f"{verdict}: P({explanation.positive_label}) = {explanation.probability:.3f}"
             f"   (threshold {explanation.threshold:.3f})")
    draw.text((m, m), _fit(draw, title, big, text_width), fill="black", font=big)
    subtitle = (f"Occlusion sensitivity, {explanation.inferences} inferences, "
                f"{explanation.patch}px patches every {explanation.stride}px, "
                f"{explanation.occluder} occluder")
    draw.text((m, m + 26), _fit(draw, subtitle, small, text_width), fill="#333333", font=small)
    if name:
        draw.text((m, m + 43), _fit(draw, name, small, text_width), fill="#555555", font=small)

    top = m + layout.title_height
    canvas.paste(overlay(gray, explanation.heatmap, scale, display), (m, top))

    # Colour bar: +scale (toward covid, red) at the top, -scale (toward normal, blue) below.
    bar_left = m + display + layout.bar_gap
    ramp = COLOUR_MAP[np.linspace(255, 0, display).round().astype(np.intp)]
    bar = np.repeat(ramp[:, None, :], layout.bar_width, axis=1)
    canvas.paste(Image.fromarray(bar), (bar_left, top))
    draw.rectangle((bar_left, top, bar_left + layout.bar_width - 1, top + display - 1),
                   outline="#666666")
    label_left = bar_left + layout.bar_width + 5
    for fraction in (1.0, 0.5, 0.0, -0.5, -1.0):
        y = top + round((1.0 - fraction) / 2.0 * (display - 1))
        draw.line((bar_left + layout.bar_width, y, bar_left + layout.bar_width + 3, y),
                  fill="#666666")
        value = fraction * scale
        label = "0" if fraction == 0 else f"{value:+.2f}"
        draw.text((label_left, min(max(y - 7, top), top + display - 14)), label,
                  fill="black", font=small)
    draw.text((label_left, top + 18), explanation.positive_label, fill="#b2182b", font=small)
    draw.text((label_left, top + display - 32), "normal" if explanation.positive_label ==
              "covid" else "other", fill="#2166ac", font=small)

    legend = (f"Colour = drop in P({explanation.positive_label}) when a region is hidden. "
              f"Red: the region pushed the model toward {explanation.positive_label}; "
              "blue: toward normal. It shows what the model used, not that it is medically "
              "meaningful.")
    disclaimer = _wrap(draw, DISCLAIMER, small, text_width)
    # The disclaimer is never cut; the legend gives way if a font runs wide.
    lines = _wrap(draw, legend, small, text_width)[:layout.footer_lines - len(disclaimer)]
    y = top + display + 10
    for line in lines + disclaimer:
        draw.text((m, y), line, fill="black", font=small)
        y += layout.line_height
    return canvas


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()
