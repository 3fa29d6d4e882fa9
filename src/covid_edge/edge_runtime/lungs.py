"""The lung model on the device: where the lung fields are, and their geometry.

grey picture -> resize (covid_edge.preprocess, the spec in the lung model card) -> int8 U-Net
(LiteRT, interpreter.select_runtime) -> lung probability per pixel -> mask (card's threshold)
-> connected lung fields: count, areas, bounding box, left/right balance.

The guard (lung_guard.py), the crop mode (preprocess) and explain use the result. numpy and
Pillow only: nothing here imports TensorFlow.
"""

from __future__ import annotations

import json
import threading
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from ..model_card import ModelCardError, released_models_dir, sha256_file
from ..preprocess import PreprocessSpec, quantize, resize_gray, to_model_input
from .interpreter import RuntimeNotFound, select_runtime

LUNG_DIR = "lungs"  # models/lungs/ beside the classifier
LUNG_CARD_FILENAME = "lung_model_card.json"
# A connected patch smaller than this share of the picture is speckle, not a lung field.
MIN_FIELD_FRACTION = 0.005


class LungModelError(Exception):
    """The lung model cannot be found or loaded; the message says why and what to do."""


@dataclass(frozen=True)
class LungField:
    area: float                       # share of the picture
    centroid: tuple[float, float]     # (x, y), 0..1 of width and height
    bbox: tuple[float, float, float, float]  # (x0, y0, x1, y1), 0..1, x1/y1 exclusive

    @property
    def height(self) -> float:
        return self.bbox[3] - self.bbox[1]

    @property
    def width(self) -> float:
        return self.bbox[2] - self.bbox[0]


@dataclass
class LungGeometry:
    """The lung fields the mask holds, largest first. Image left is the patient's right on a
    frontal (PA/AP) film."""

    fields: list[LungField]
    lung_fraction: float                  # share of the picture marked lung
    bbox: tuple[float, float, float, float] | None  # around every field; None without one
    image_left_area: float                # of the largest field left of centre (patient right)
    image_right_area: float
    balance: float                        # smaller / larger of the two; 0 without a pair
    confidence: float                     # mean probability inside the mask (0 without one)

    @property
    def field_count(self) -> int:
        return len(self.fields)

    def to_dict(self) -> dict:
        described = asdict(self)
        described["field_count"] = self.field_count
        return described


@dataclass
class LungResult:
    probabilities: np.ndarray  # float32 (h, w) at the lung model's size
    mask: np.ndarray           # bool (h, w)
    geometry: LungGeometry
    latency_ms: float          # interpreter.invoke() only
    extra: dict = field(default_factory=dict)


class Runs:
    """A boolean mask as row runs: run i covers columns starts[i]..ends[i]-1 of row rows[i],
    and belongs to 8-connected component component[i] (0..count-1). A plain class: a
    dataclass costs a cold start about a millisecond to create."""

    __slots__ = ("rows", "starts", "ends", "component", "count")

    def __init__(self, rows: np.ndarray, starts: np.ndarray, ends: np.ndarray,
                 component: np.ndarray, count: int):
        self.rows, self.starts, self.ends = rows, starts, ends
        self.component, self.count = component, count


def mask_runs(mask: np.ndarray) -> Runs:
    """The row runs of a mask and their 8-connected components, in numpy: the runs that touch
    across consecutive rows are found by binary search, then joined by a union-find whose
    rounds each hook every tree to its smallest neighbour. A lung field is a stack of runs,
    one or two per row, so a few rounds suffice. The guard runs it on every image: on a Zen 4
    host a Python loop over the runs took 0.33-0.34 ms a frontal film, this 0.16 ms
    (scripts/lung_geometry_cost.py)."""
    mask = np.asarray(mask, dtype=bool)
    height, width = mask.shape
    # Each row between two zero columns: run edges never join across rows, and a position
    # in the flattened rows is a sort key (row, column).
    stride = width + 2
    padded = np.zeros((height, stride), dtype=np.int8)
    padded[:, 1:-1] = mask
    flat = padded.reshape(-1)
    steps = flat[1:] - flat[:-1]
    where = np.flatnonzero(steps)
    rising = steps[where] == 1
    start_keys, end_keys = where[rising], where[~rising]  # same order: each run ends in its row
    rows = start_keys // stride
    starts, ends = start_keys - rows * stride, end_keys - rows * stride
    parent = np.arange(len(starts))
    # The runs of the row above that touch a run (8-connectivity: overlap or meet at a
    # corner) are a contiguous range: those ending at or after its start and starting at or
    # before its end.
    first = np.searchsorted(end_keys, start_keys - stride, side="left")
    past = np.searchsorted(start_keys, end_keys - stride, side="right")
    touching = np.maximum(past - first, 0)
    pairs = int(touching.sum())
    if pairs:
        below = np.repeat(parent, touching)
        above = np.repeat(first - np.cumsum(touching) + touching, touching) + np.arange(pairs)
        while True:
            root_above, root_below = parent[above], parent[below]
            apart = root_above != root_below
            if not apart.any():
                break
            # A root only ever points to a smaller index, so the parents stay a forest.
            np.minimum.at(parent, np.maximum(root_above, root_below)[apart],
                          np.minimum(root_above, root_below)[apart])
            while True:  # every run straight to its root
                grand = parent[parent]
                if (grand == parent).all():
                    break
                parent = grand
    # Components numbered by their roots' order, as np.unique would, without its sort.
    is_root = parent == np.arange(len(parent))
    return Runs(rows, starts, ends, (np.cumsum(is_root) - 1)[parent], int(is_root.sum()))


def label_runs(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """8-connected components of a boolean mask (mask_runs).

    Returns (labels per pixel, int32 (h, w), 0 = background; number of components)."""
    mask = np.asarray(mask, dtype=bool)
    runs = mask_runs(mask)
    labels = np.zeros(mask.shape, dtype=np.int32)
    for row, start, end, component in zip(runs.rows.tolist(), runs.starts.tolist(),
                                          runs.ends.tolist(), runs.component.tolist()):
        labels[row, start:end] = component + 1
    return labels, runs.count


def geometry(mask: np.ndarray, probabilities: np.ndarray | None = None,
             min_field_fraction: float = MIN_FIELD_FRACTION) -> LungGeometry:
    """The lung fields of a mask. Each field's area, centroid and box are summed over its row
    runs, never over a label image: integer sums, so the same values as over its pixels."""
    mask = np.asarray(mask, dtype=bool)
    height, width = mask.shape
    runs = mask_runs(mask)
    fields = []
    if runs.count:
        lengths = runs.ends - runs.starts
        areas = np.bincount(runs.component, weights=lengths, minlength=runs.count)
        areas = areas.astype(np.int64)
        # Sum of the columns start..end-1 of a run, and of its row index per pixel.
        col_sums = np.bincount(runs.component, minlength=runs.count,
                               weights=(runs.starts + runs.ends - 1) * lengths // 2)
        row_sums = np.bincount(runs.component, weights=runs.rows * lengths,
                               minlength=runs.count)
        boxes = np.empty((4, runs.count), dtype=np.int64)
        boxes[0], boxes[1] = width, height
        boxes[2], boxes[3] = 0, 0
        np.minimum.at(boxes[0], runs.component, runs.starts)
        np.minimum.at(boxes[1], runs.component, runs.rows)
        np.maximum.at(boxes[2], runs.component, runs.ends)
        np.maximum.at(boxes[3], runs.component, runs.rows + 1)
        for index in np.argsort(-areas):
            area = areas[index] / mask.size
            if area < min_field_fraction:
                break
            count = areas[index]
            fields.append(LungField(
                area=float(area),
                centroid=(float((col_sums[index] / count + 0.5) / width),
                          float((row_sums[index] / count + 0.5) / height)),
                bbox=(float(boxes[0, index] / width), float(boxes[1, index] / height),
                      float(boxes[2, index] / width), float(boxes[3, index] / height))))
    left = [f.area for f in fields if f.centroid[0] < 0.5]
    right = [f.area for f in fields if f.centroid[0] >= 0.5]
    left_area, right_area = (max(left) if left else 0.0), (max(right) if right else 0.0)
    balance = (min(left_area, right_area) / max(left_area, right_area)
               if left_area and right_area else 0.0)
    bbox = None
    if fields:
        bbox = (min(f.bbox[0] for f in fields), min(f.bbox[1] for f in fields),
                max(f.bbox[2] for f in fields), max(f.bbox[3] for f in fields))
    confidence = 0.0
    if probabilities is not None and mask.any():
        confidence = float(np.asarray(probabilities)[mask].mean())
    return LungGeometry(fields, float(mask.mean()), bbox, float(left_area), float(right_area),
                        float(balance), confidence)


def default_model_path() -> Path:
    try:
        directory = released_models_dir() / LUNG_DIR
    except ModelCardError as exc:
        raise LungModelError(str(exc)) from None
    return directory


def load_lung_card(directory: Path) -> tuple[dict, Path]:
    card_path = directory / LUNG_CARD_FILENAME
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
        model_path = directory / card["file"]
        PreprocessSpec.from_dict(card["preprocessing"])
        float(card["mask_threshold"])
    except FileNotFoundError:
        raise LungModelError(f"{card_path}: no lung model card here (the lung model ships in "
                             "models/lungs/; `covid-edge convert-lungs` writes one)") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise LungModelError(f"{card_path}: not a readable lung model card ({exc})") from None
    return card, model_path


class LungSegmenter:
    """A loaded lung model. Build it with `LungSegmenter.load`; reuse it for many images."""

    def __init__(self, interpreter, runtime, card: dict, model_path: Path):
        self.interpreter = interpreter
        self.runtime = runtime
        self.card = card
        self.model_path = model_path
        self.spec = PreprocessSpec.from_dict(card["preprocessing"])
        self.threshold = float(card["mask_threshold"])
        # The classifier prepares images in several threads (pipeline.classify_paths); one
        # interpreter runs one image at a time.
        self._lock = threading.Lock()
        self.input_details = interpreter.get_input_details()[0]
        self.output_details = interpreter.get_output_details()[0]
        expected = [1, self.spec.height, self.spec.width, self.spec.channels]
        if list(self.input_details["shape"]) != expected:
            raise LungModelError(f"{model_path.name}: takes {list(self.input_details['shape'])}"
                                 f" but its card's preprocessing makes {expected}")

    @classmethod
    def load(cls, path: str | Path | None = None, runtime: str | None = None,
             num_threads: int | None = 1) -> "LungSegmenter":
        """`path`: a folder with lung_model_card.json, or the .tflite beside it; None: the
        released one (models/lungs/). One thread by default: the model is small, and the
        classifier's interpreter keeps the other cores."""
        path = default_model_path() if path is None else Path(path)
        if not path.exists():
            raise LungModelError(f"{path}: no such lung model folder or file")
        directory = path if path.is_dir() else path.parent
        card, model_path = load_lung_card(directory)
        if not path.is_dir():
            model_path = path
        if not model_path.is_file():
            raise LungModelError(f"{model_path}: no such lung model file")
        expected = card.get("sha256")
        if expected and sha256_file(model_path) != expected:
            warnings.warn(f"{model_path.name} differs from the file its lung model card "
                          "describes (sha256 mismatch)", stacklevel=2)
        try:
            chosen = select_runtime(runtime)
            interpreter = chosen.interpreter(str(model_path), num_threads=num_threads)
            interpreter.allocate_tensors()
        except RuntimeNotFound as exc:
            raise LungModelError(str(exc)) from None
        except (RuntimeError, ValueError) as exc:
            raise LungModelError(f"{model_path}: the TFLite interpreter cannot load the lung "
                                 f"model ({str(exc).strip().splitlines()[0] if str(exc) else exc})"
                                 ) from None
        return cls(interpreter, chosen, card, model_path)

    def pixels_for(self, picture: Image.Image | np.ndarray) -> np.ndarray:
        """Any grey picture (PIL or uint8 array) -> uint8 pixels at the lung model's size."""
        if isinstance(picture, np.ndarray):
            if picture.shape == (self.spec.height, self.spec.width):
                return picture.astype(np.uint8, copy=False)
            picture = Image.fromarray(np.asarray(picture, dtype=np.uint8))
        # convert() copies even an "L" picture: a full-size copy of a large X-ray for nothing.
        return resize_gray(picture if picture.mode == "L" else picture.convert("L"), self.spec)

    def input_tensor(self, pixels: np.ndarray) -> np.ndarray:
        """Model-size uint8 pixels -> the tensor the lung model's input takes."""
        x = to_model_input(pixels, self.spec)[np.newaxis]
        dtype = np.dtype(self.input_details["dtype"])
        if dtype != np.float32:
            scale, zero_point = self.input_details["quantization"]
            x = quantize(x, scale, zero_point, dtype)
        return x

    def probabilities(self, pixels: np.ndarray) -> tuple[np.ndarray, float]:
        """Model-size uint8 pixels -> (lung probability (h, w) float32, invoke ms)."""
        x = self.input_tensor(pixels)
        with self._lock:
            self.interpreter.set_tensor(self.input_details["index"], x)
            start = time.perf_counter()
            self.interpreter.invoke()
            latency_ms = (time.perf_counter() - start) * 1000.0
            raw = self.interpreter.get_tensor(self.output_details["index"])[0, ..., 0].copy()
        scale, zero_point = self.output_details["quantization"]
        if np.issubdtype(raw.dtype, np.integer) and scale:
            prob = (raw.astype(np.float32) - zero_point) * np.float32(scale)
        else:
            prob = raw.astype(np.float32)
        return prob, latency_ms

    def segment(self, picture: Image.Image | np.ndarray) -> LungResult:
        pixels = self.pixels_for(picture)
        prob, latency_ms = self.probabilities(pixels)
        mask = prob >= self.threshold
        return LungResult(prob, mask, geometry(mask, prob), latency_ms)

    def describe(self) -> dict:
        return {"name": self.card.get("name"), "version": self.card.get("version"),
                "file": str(self.model_path), "runtime": self.runtime.label,
                "input_shape": [int(v) for v in self.input_details["shape"]],
                "input_dtype": np.dtype(self.input_details["dtype"]).name,
                "mask_threshold": self.threshold}
