"""Where in the X-ray the deployed model looks: occlusion sensitivity with the TFLite model itself.

Method (Zeiler & Fergus 2014, "Visualizing and Understanding Convolutional Networks"): hide one
square patch of the model's input at a time, run the model, and record how much its evidence
for COVID-19 drops. Each pixel's score is the mean drop over the patches that covered it:

    score > 0  hiding the region lowers the evidence: the region pushed the model toward covid
    score < 0  hiding the region raises it: the region pushed the model toward normal

Which class: covid for a two-class model (the map for normal is the same with the signs
swapped), the verdict's class for a model of more than two classes, or the class `target`
names ("verdict" or a label; `resolve_target`). With a softmax head the evidence for class k
is its log-odds against all the others, log(p_k / (1 - p_k)) = z_k - logsumexp(z_j, j != k),
from the logits z of the last layer's N rows.

The evidence is the model's log-odds (logit) of covid, not its probability. The int8 model's
probability output has 256 levels and sits at its ends (0.000 or 0.996) for most X-rays, so
hiding one patch of a confident image changes it by nothing at all: for 17 of 24 test X-rays
tried, no patch moved the released model's probability by more than 0.02. The log-odds come from
the same inference, with no extra cost: the model's second output is its pooled 1280 features,
and its last layer (features -> logit) is read from the .tflite file itself; the sigmoid of
that logit is checked against the model's probability output before it is used. Models
without a feature output, or whose last layer cannot be read (an Edge TPU build), fall back to
the probability, and the figure says which was used. docs/explain.md shows what the maps of
the released model reveal (a shortcut: a corner marker).

Why occlusion and not gradients (Grad-CAM, saliency): it needs nothing but forward passes, so it
runs on exactly the model that makes the decision, the int8 TFLite file on the device, with no
TensorFlow and no gradients (an int8 model has none to offer).

The occluder (what replaces a hidden patch) matters in a chest X-ray. A patch of the image mean
(the classic grey square) is much brighter than the dark lung field around it: inside a lung it
*adds* a bright opacity, which is what COVID pneumonia looks like, so it can raise P(covid) for
reasons that have nothing to do with what was there. The default occluder is therefore the
image blurred (Gaussian, sigma = half the patch): the patch keeps the local brightness but loses
its detail, so a score measures what the model reads from structure at that place. `mean` is
kept as an option for comparison; on 40 normal test X-rays, hiding an inner patch with it raised
the covid log-odds by 0.50 on average, against 0.19 with blur.

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
from . import explain_lungs
from .classifier import Classifier

OCCLUDERS = ("blur", "mean")
# Default grid: patches of 1/7 of the input side, half-overlapping.
PATCH_FRACTION = 7
LOG_ODDS, PROBABILITY = "log-odds", "probability"
# The smallest colour scale for each kind of score, so that noise is not stretched into colour:
# an int8 probability moves in steps of 1/256; a log-odds change under 1 (odds times 2.7)
# is small next to the released model's usual +-5..15.
MIN_COLOUR_SCALE = {LOG_ODDS: 1.0, PROBABILITY: 0.05}
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
    probability: float  # P(covid) of the unhidden image as people are shown it (calibrated)
    raw_probability: float  # the model's own output
    verdict: str
    threshold: float  # on the scale of `probability`
    positive_label: str
    negative_label: str
    score: str  # LOG_ODDS or PROBABILITY: what heatmap and occluded measure
    base_score: float  # the unhidden image's score
    heatmap: np.ndarray  # float32 (height, width) at the model's input size: mean drop in score
    occluded: np.ndarray  # float32 (rows, columns): the score with each patch hidden
    patch: int
    stride: int
    occluder: str
    inferences: int
    elapsed_ms: float  # input assembly + every invoke, the whole map
    invoke_ms: float  # the interpreter's invokes alone
    pixels: np.ndarray = field(repr=False)  # uint8 (height, width): what the model saw
    # bool (height, width): the lung fields on `pixels` (explain_lungs.attach_lungs), or None
    lung_mask: np.ndarray | None = field(default=None, repr=False)
    cropped: bool = False  # the model saw a crop to the lungs (preprocess crop mode)
    # The class the map shows evidence for (red: toward it) and what blue is toward; for a
    # two-class model by default the positive label and the other one.
    target: str | None = None
    against: str | None = None
    probabilities: dict | None = None  # every class's calibrated probability (unhidden image)

    def __post_init__(self):
        if self.target is None:
            self.target, self.against = self.positive_label, self.negative_label

    @property
    def grid(self) -> tuple[int, int]:
        return tuple(int(n) for n in self.occluded.shape)

    @property
    def colour_scale(self) -> float:
        return max(float(np.abs(self.heatmap).max()), MIN_COLOUR_SCALE[self.score])

    def figures(self) -> dict:
        """Numbers for --json, logs and web pages."""
        peak = np.unravel_index(int(np.argmax(self.heatmap)), self.heatmap.shape)
        return {
            "probability": self.probability,
            "raw_probability": self.raw_probability,
            "verdict": self.verdict,
            "threshold": self.threshold,
            "method": "occlusion sensitivity",
            "score": self.score,
            "base_score": self.base_score,
            "patch": self.patch,
            "stride": self.stride,
            "occluder": self.occluder,
            "grid": list(self.grid),
            "inferences": self.inferences,
            "elapsed_ms": round(self.elapsed_ms, 2),
            "ms_per_inference": round(self.elapsed_ms / self.inferences, 3),
            "invoke_ms": round(self.invoke_ms, 2),
            "target": self.target,
            "probabilities": self.probabilities,
            "max_drop": max(float(self.heatmap.max()), 0.0),  # strongest evidence for target
            "max_rise": max(float(-self.heatmap.min()), 0.0),  # strongest evidence against
            "peak_xy": [int(peak[1]), int(peak[0])],  # in model-input pixels
            "colour_scale": self.colour_scale,
            **explain_lungs.figures(self),
        }


@dataclass(frozen=True)
class FinalLayer:
    """The model's last dense layer, features -> logits: one row for a sigmoid head (the
    log-odds of the positive label), one per class for a softmax head."""
    weights: np.ndarray  # float64 (features,) for one unit, (units, features) for several
    bias: float | np.ndarray  # a float for one unit, (units,) for several
    # The step of the model's own (integer) logit; 0 for a float model. Our float logit skips
    # that rounding, so it may differ from the model's by half a step.
    logit_step: float = 0.0

    def log_odds(self, features: np.ndarray) -> float:
        """The one-unit head's logit: the log-odds of the positive label."""
        return float(np.dot(features, self.weights) + self.bias)

    def logits(self, features: np.ndarray) -> np.ndarray:
        """Every unit's logit, (units,)."""
        weights = np.atleast_2d(self.weights)
        return weights @ np.asarray(features, dtype=np.float64) + np.atleast_1d(self.bias)

    def class_log_odds(self, features: np.ndarray, index: int) -> float:
        """log(p_k / (1 - p_k)) of class k under the softmax of the logits: z_k - logsumexp of
        the others (for a softmax head; a sigmoid head's is `log_odds`)."""
        z = self.logits(features)
        rest = np.delete(z, index)
        top = rest.max()
        return float(z[index] - (top + np.log(np.exp(rest - top).sum())))


def final_layer(classifier: Classifier) -> FinalLayer | None:
    """Read the dense layer that turns the model's feature output into its logit from the
    loaded .tflite file; None when there is none to read (see the module doc).

    Uses the interpreter's op list (`_get_ops_details`, present in ai_edge_litert,
    tflite_runtime and tf.lite alike); any surprise means None, never a wrong map."""
    features = getattr(classifier, "feature_details", None)
    if features is None:
        return None
    interpreter = classifier.interpreter
    try:
        ops = interpreter._get_ops_details()
        tensors = {int(d["index"]): d for d in interpreter.get_tensor_details()}
        producers = {int(out): op for op in ops for out in op["outputs"]}

        def constant(index: int) -> np.ndarray:
            # A float16 model stores weights as float16 constants behind a DEQUANTIZE op.
            producer = producers.get(index)
            if producer is not None and producer["op_name"] == "DEQUANTIZE":
                index = int(producer["inputs"][0])
            return _dequantize(interpreter.get_tensor(index), tensors[index])

        for op in ops:
            inputs = [int(i) for i in op["inputs"]]
            if op["op_name"] != "FULLY_CONNECTED" or not inputs or inputs[0] != features["index"]:
                continue
            units = classifier.scheme.output_size
            weights = constant(inputs[1])
            bias = (constant(inputs[2]) if len(inputs) > 2 and inputs[2] >= 0
                    else np.zeros(units))
            if weights.size != units * int(np.prod(features["shape"])) or bias.size != units:
                return None
            logit = tensors[int(op["outputs"][0])]
            step = (float(logit["quantization"][0])
                    if np.issubdtype(np.dtype(logit["dtype"]), np.integer) else 0.0)
            if units == 1:
                return FinalLayer(weights.reshape(-1), float(bias.reshape(-1)[0]), step)
            # TFLite stores a dense layer's weights as (outputs, inputs).
            return FinalLayer(weights.reshape(units, -1), bias.reshape(-1), step)
    except (AttributeError, KeyError, IndexError, RuntimeError, ValueError, TypeError):
        return None
    return None


def _dequantize(values: np.ndarray, detail: dict) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    if not np.issubdtype(np.dtype(detail["dtype"]), np.integer):
        return values
    params = detail.get("quantization_parameters") or {}
    scales = np.asarray(params.get("scales", []), dtype=np.float64)
    zero_points = np.asarray(params.get("zero_points", []), dtype=np.float64)
    if scales.size == 0:
        scale, zero_point = detail["quantization"]
        return (values - zero_point) * scale
    if scales.size == 1:
        return (values - zero_points.reshape(-1)[0]) * scales[0]
    axis = int(params.get("quantized_dimension", 0))  # per-channel: one scale per output
    shape = [1] * values.ndim
    shape[axis] = scales.size
    return (values - zero_points.reshape(shape)) * scales.reshape(shape)


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

@dataclass
class OcclusionStart:
    """What every occlusion map begins with: the grid, the unhidden image's score and the
    occluder's input, computed once (the full and the coarse-to-fine maps share it)."""

    patch: int
    stride: int
    rows: list
    columns: list
    pixels: np.ndarray
    base: np.ndarray
    replacement: np.ndarray
    head: object
    raw_probability: float
    features: np.ndarray | None
    invoke_ms: float
    kind: str
    base_score: float
    started: float
    probabilities: np.ndarray  # every class's probability for the unhidden image
    target: str = ""  # the class whose evidence the map shows
    score: Callable = None  # Inference -> the target's score (kind: log-odds or probability)


# What `target` may name besides a label: the verdict's class.
VERDICT = "verdict"


def resolve_target(classifier, target: str | None, probabilities) -> str:
    """The class a map shows evidence for. target: a label, "verdict" (the verdict's class),
    or None: the verdict's class for a model of more than two classes, the positive class for
    a two-class one (as always: there evidence for one class is evidence against the other,
    the same map with the colours swapped)."""
    if target is None:
        target = VERDICT if classifier.scheme.count > 2 else classifier.positive_label
    if target == VERDICT:
        return classifier.verdict(probabilities)
    if target not in classifier.labels:
        raise ValueError(f"no class {target!r}: choose {VERDICT} or one of "
                         f"{', '.join(classifier.labels)}")
    return target


def target_scorer(classifier, head: FinalLayer | None, target: str) -> Callable:
    """Inference -> the evidence for `target`: its log-odds from the last layer when there is
    one, else the model's probability of it."""
    index = classifier.labels.index(target)
    if head is None:
        return lambda inference: float(inference.probabilities[index])
    if classifier.scheme.output_size == 1:  # sigmoid: the logit is the positive class's
        sign = 1.0 if target == classifier.positive_label else -1.0
        return lambda inference: sign * head.log_odds(inference.features)
    return lambda inference: head.class_log_odds(inference.features, index)


def start_occlusion(classifier, pixels: np.ndarray, patch: int | None, stride: int | None,
                    occluder: str, target: str | None = None) -> OcclusionStart:
    height, width = classifier.spec.height, classifier.spec.width
    patch = patch or default_patch(min(height, width))
    stride = stride or default_stride(patch)
    rows, columns = patch_starts(height, patch, stride), patch_starts(width, patch, stride)
    pixels = np.asarray(pixels, dtype=np.uint8)
    hidden = occluder_pixels(pixels, occluder, patch)

    start = time.perf_counter()
    base = classifier.prepare_input(pixels)
    replacement = classifier.prepare_input(hidden)
    head = final_layer(classifier)
    first = classifier.run(base)
    raw_probability, features, invoke_ms = first.positive, first.features, first.latency_ms
    label = resolve_target(classifier, target, first.probabilities)
    if head is not None and not _agrees(head, first, classifier):
        head = None
    kind = PROBABILITY if head is None else LOG_ODDS
    score = target_scorer(classifier, head, label)
    return OcclusionStart(patch, stride, rows, columns, pixels, base, replacement, head,
                          raw_probability, features, invoke_ms, kind, score(first), start,
                          first.probabilities, label, score)


def explain_pixels(classifier: Classifier, pixels: np.ndarray, patch: int | None = None,
                   stride: int | None = None, occluder: str = "blur",
                   progress: Callable[[int], None] | None = None,
                   target: str | None = None) -> Explanation:
    """Occlusion sensitivity of `pixels`, uint8 (height, width) at the model's input size,
    for the class `target` names (resolve_target; ValueError for an unknown label).

    No out-of-distribution check happens here: callers decide first whether the picture is a
    chest X-ray at all (`Classifier.classify_pixels`). `progress(n)` is called after every n
    inferences (for a progress bar)."""
    o = start_occlusion(classifier, pixels, patch, stride, occluder, target)
    patch, rows, columns = o.patch, o.rows, o.columns
    base, replacement, invoke_ms = o.base, o.replacement, o.invoke_ms

    occluded = np.empty((len(rows), len(columns)), dtype=np.float64)
    for i, top in enumerate(rows):
        for j, left in enumerate(columns):
            window = (slice(None), slice(top, top + patch), slice(left, left + patch))
            trial = base.copy()
            trial[window] = replacement[window]
            inference = classifier.run(trial)
            occluded[i, j] = o.score(inference)
            invoke_ms += inference.latency_ms
        if progress is not None:
            progress(len(columns))
    return occlusion_explanation(classifier, o, occluded, occluder, 1 + occluded.size,
                                 invoke_ms)


def occlusion_explanation(classifier: Classifier, o: OcclusionStart, occluded: np.ndarray,
                          occluder: str, inferences: int, invoke_ms: float) -> Explanation:
    """A finished grid of occluded scores -> the Explanation: each position's drop from the
    unhidden score spread over its patch, averaged where patches overlap (the full and the
    coarse-to-fine maps end here)."""
    height, width = classifier.spec.height, classifier.spec.width
    total = np.zeros((height, width), dtype=np.float64)
    covered = np.zeros((height, width), dtype=np.float64)
    for i, top in enumerate(o.rows):
        for j, left in enumerate(o.columns):
            total[top:top + o.patch, left:left + o.patch] += o.base_score - occluded[i, j]
            covered[top:top + o.patch, left:left + o.patch] += 1.0
    elapsed_ms = (time.perf_counter() - o.started) * 1000.0
    raw = o.raw_probability
    shown = classifier.scheme.as_dict(classifier.calibrated(o.probabilities))
    return Explanation(
        probability=classifier.calibrated_positive(raw), raw_probability=raw,
        verdict=classifier.verdict(o.probabilities), threshold=classifier.threshold,
        positive_label=classifier.positive_label, negative_label=classifier.negative_label,
        score=o.kind, base_score=o.base_score, heatmap=(total / covered).astype(np.float32),
        occluded=occluded.astype(np.float32), patch=o.patch, stride=o.stride,
        occluder=occluder, inferences=inferences, elapsed_ms=elapsed_ms, invoke_ms=invoke_ms,
        pixels=o.pixels, target=o.target, against=against(classifier, o.target),
        probabilities=shown)


def against(classifier, target: str) -> str:
    """What evidence against `target` is evidence for, in one or two words: the other class of
    a two-class model, else "not <target>"."""
    others = [label for label in classifier.labels if label != target]
    return others[0] if len(others) == 1 else f"not {target}"


def _agrees(head: FinalLayer, inference, classifier: Classifier) -> bool:
    """Does the sigmoid (softmax) of our logit(s) give the model's own probability output? Up
    to the model's rounding: two output steps, and one step of its integer logit (the
    sigmoid's slope is at most 1/4; a softmax probability moves at most 1/2 when its logits
    each move by one step). A wrong layer would be far off."""
    if classifier.scheme.output_size == 1:
        found = np.array([sigmoid(head.log_odds(inference.features))])
        expected = np.array([inference.positive])
        slope = 0.25
    else:
        z = head.logits(inference.features)
        found = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
        expected = np.asarray(inference.probabilities, dtype=np.float64)
        slope = 0.5
    tolerance = agreement_tolerance(head, classifier) + (slope - 0.25) * head.logit_step
    return bool(np.max(np.abs(found - expected)) <= tolerance)


def agreement_tolerance(head: FinalLayer, classifier: Classifier) -> float:
    detail = classifier.output_details
    output_step = (detail["quantization"][0]
                   if np.issubdtype(np.dtype(detail["dtype"]), np.integer) else 0.0)
    return 2.0 * output_step + 0.25 * head.logit_step + 1e-3


def sigmoid(log_odds: float) -> float:
    return float(1.0 / (1.0 + np.exp(-np.clip(log_odds, -60.0, 60.0))))


def explain_gray(classifier: Classifier, gray: Image.Image, **options) -> Explanation:
    # options: those of explain_pixels (patch, stride, occluder, progress, target).
    """An 8-bit grayscale picture of any size (as read_grayscale returns), resized exactly as
    `classify` resizes it. Like explain_pixels, no out-of-distribution check."""
    explanation = explain_pixels(classifier, classifier.pixels_from_gray(gray)[0], **options)
    return explain_lungs.attach_lungs(classifier, explanation)


def explain_to_png(classifier: Classifier, gray: Image.Image, name: str = "",
                   display: int = DEFAULT_DISPLAY, **options) -> tuple[Explanation, bytes]:
    """The whole job for a web page or kiosk: the map and the rendered overlay as PNG bytes.

    The interpreter is not thread-safe: call this under the lock that guards the classifier."""
    explanation = explain_gray(classifier, gray, **options)
    return explanation, png_bytes(render(explanation, gray, name, display))


def explain_file(classifier: Classifier, path: str | Path, display: int = DEFAULT_DISPLAY,
                 **options) -> tuple[Explanation, Image.Image]:
    """Read an image file (raises ImageReadError), explain it and render the overlay; no
    out-of-distribution check (the command line runs the guard first)."""
    gray = read_grayscale(path, high_bit_depth=classifier.spec.high_bit_window)
    explanation = explain_gray(classifier, gray, **options)
    return explanation, render(explanation, gray, Path(path).name, display)


# -- rendering -----------------------------------------------------------------------------

def colourize(heatmap: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Scores -> (RGB uint8 from the colour map, opacity 0..1 growing with |score|)."""
    normalized = np.clip(heatmap / scale, -1.0, 1.0)
    index = np.rint((normalized + 1.0) * 127.5).astype(np.intp)
    return COLOUR_MAP[index], np.abs(normalized) * MAX_OVERLAY_ALPHA


def overlay(gray: Image.Image, heatmap: np.ndarray, scale: float, display: int,
            lung_mask: np.ndarray | None = None) -> Image.Image:
    """The X-ray at display x display (squeezed as the model squeezes it) under the heatmap,
    with the lung fields' contour when a mask is given."""
    xray = np.asarray(gray.resize((display, display), Image.Resampling.BILINEAR),
                      dtype=np.float64)
    # Bilinear upsampling of the scores keeps the map as coarse as the patches really are,
    # without blocky edges that would suggest a precision it does not have.
    scores = np.asarray(Image.fromarray(heatmap.astype(np.float32)).resize(
        (display, display), Image.Resampling.BILINEAR))
    colour, alpha = colourize(scores, scale)
    blended = xray[..., None] * (1.0 - alpha[..., None]) + colour * alpha[..., None]
    picture = Image.fromarray(np.rint(blended).astype(np.uint8))
    return picture if lung_mask is None else explain_lungs.draw_contour(picture, lung_mask)


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


def _label_font(draw: ImageDraw.ImageDraw, text: str, font, width: int):
    """`font`, or a smaller one when a class name is too long beside the colour bar."""
    for size in (11, 9):
        if draw.textlength(text, font=font) <= width:
            break
        font = _font(size)
    return font


def _wrap(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> list[str]:
    for columns in range(len(text), 10, -2):
        lines = textwrap.wrap(text, columns)
        if all(draw.textlength(line, font=font) <= width for line in lines):
            return lines
    return textwrap.wrap(text, 40)


def render(explanation: Explanation, gray: Image.Image, name: str = "",
           display: int = DEFAULT_DISPLAY, title: str | None = None) -> Image.Image:
    """The figure: title (verdict, probability; or `title`), overlay, colour bar, legend and
    disclaimer."""
    layout = _Layout(display)
    canvas = Image.new("RGB", layout.size, "white")
    draw = ImageDraw.Draw(canvas)
    big, small = _font(18), _font(13)
    m = layout.margin
    text_width = layout.size[0] - 2 * m
    scale = explanation.colour_scale

    target = explanation.target
    if title is None:
        title = (f"{explanation.verdict.upper()}: P({explanation.positive_label}) = "
                 f"{explanation.probability:.3f}   (threshold {explanation.threshold:.3f})")
        if target != explanation.positive_label and explanation.probabilities:
            title = (f"{explanation.verdict.upper()}: P({target}) "
                     f"{explanation.probabilities[target]:.2f} · P({explanation.positive_label}) "
                     f"{explanation.probability:.2f}, threshold {explanation.threshold:.2f}")
    draw.text((m, m), _fit(draw, title, big, text_width), fill="black", font=big)
    subtitle = (f"Occlusion sensitivity ({explanation.score}"
                + ("" if target == explanation.positive_label else f" of {target}")
                + f"), {explanation.inferences} "
                f"inferences, {explanation.patch}px patches every {explanation.stride}px, "
                f"{explanation.occluder} occluder")
    draw.text((m, m + 26), _fit(draw, subtitle, small, text_width), fill="#333333", font=small)
    if name:
        draw.text((m, m + 43), _fit(draw, name, small, text_width), fill="#555555", font=small)

    top = m + layout.title_height
    if explanation.cropped:  # crop mode: show the crop the model saw, not the whole film
        gray = Image.fromarray(explanation.pixels)
    canvas.paste(overlay(gray, explanation.heatmap, scale, display, explanation.lung_mask),
                 (m, top))

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
        label = "0" if fraction == 0 else (
            f"{value:+.1f}" if explanation.score == LOG_ODDS else f"{value:+.2f}")
        draw.text((label_left, min(max(y - 7, top), top + display - 14)), label,
                  fill="black", font=small)
    room = layout.label_width - 5
    draw.text((label_left, top + 18), target, fill="#b2182b",
              font=_label_font(draw, target, small, room))
    # "not pneumonia" does not fit beside the bar on one line: "not" goes above.
    words = explanation.against.split(" ", 1)
    lines = ([explanation.against] if len(words) == 1 or draw.textlength(
        explanation.against, font=small) <= room else words)
    for k, line in enumerate(reversed(lines)):
        draw.text((label_left, top + display - 32 - 14 * k), line, fill="#2166ac",
                  font=_label_font(draw, line, small, room))

    positive = target
    measure = (f"the log-odds of {positive} (+1: odds divided by 2.7)"
               if explanation.score == LOG_ODDS else f"P({positive})")
    lungs = explain_lungs.figures(explanation).get("positive_evidence_in_lungs")
    lung_note = ("" if explanation.lung_mask is None else
                 " Gold: lung fields" + ("." if lungs is None else
                                         f" ({lungs:.0%} of the red inside)."))
    blue = (f"away from {positive}" if explanation.against.startswith("not ")
            else f"toward {explanation.against}")
    legend = (f"Colour = drop in {measure} when a region is hidden. Red: the region pushed "
              f"the model toward {positive}; blue: {blue}."
              f"{lung_note} It shows what the model used, not that it is medically "
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
