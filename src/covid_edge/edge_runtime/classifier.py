"""One image file in, one verdict out, with the TFLite model and its model card.

The path is short and linear on purpose (pycoral's classify_image.py is the model):
model card -> interpreter -> read + resize the file (covid_edge.preprocess, the same code training
used) -> out-of-distribution image checks (guard.py) -> quantize to the model's input type ->
invoke -> dequantize -> feature-distance check -> the verdict by the card's threshold and
classes (covid_edge.classes: covid when P(covid) >= it, else the likeliest other class) ->
calibrated probabilities (calibration.py) for display.
Nothing here imports TensorFlow.
"""

from __future__ import annotations

import os
import time
import warnings
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..classes import ClassScheme, ClassSchemeError
from ..image_io import ImageReadError, read_image
from ..model_card import (CARD_FILENAME, ModelCardError, card_for_model, load_card,
                          preprocess_spec, released_models_dir, sha256_file, variant_entry)
from ..native_stderr import filtered_native_stderr
from ..preprocess import prepare_gray, quantize, to_model_input
from ..tflite_file import NOT_TFLITE, header_problem
from .calibration import TemperatureScaling
from .devices import DeviceChoice, DeviceError, explain_interpreter_failure, resolve_device
from .guard import NOT_CHEST_XRAY, Guard, GuardStatsError
from .interpreter import (RUNTIME_NAMES, Runtime, RuntimeNotFound, RuntimeNumpyMismatch,
                          select_runtime)
from .lung_guard import LungRule
from .lungs import LUNG_DIR, LungModelError, LungResult, LungSegmenter

SUPPORTED_INPUT_DTYPES = (np.float32, np.int8, np.uint8)
# LiteRT prints this on every interpreter; it is noise to someone classifying an X-ray.
_NATIVE_NOISE = ("INFO: Created TensorFlow Lite XNNPACK delegate for CPU.",)


class ModelError(Exception):
    """A model that cannot be loaded or run; the message says why and what to do."""


class ModelIntegrityWarning(UserWarning):
    """The model file is not the one its model card was written for."""


@dataclass
class Prediction:
    """One image's answer. verdict is one of the model's labels, NOT_CHEST_XRAY (then
    `reason` says why and the probabilities are None: the model's output on a photo means
    nothing), or None with `error` set when the file could not be read."""

    path: str
    probability: float | None  # of the positive label ("covid"), calibrated
    verdict: str | None  # positive when probability >= threshold, else the likeliest other class
    threshold: float  # on the calibrated scale: verdict is positive when probability >= it
    latency_ms: float | None  # interpreter.invoke() only
    total_ms: float | None  # decode + resize + quantize + invoke
    runtime: str
    error: str | None = None
    raw_probability: float | None = None  # the model's own output, before calibration
    reason: str | None = None  # why the verdict is NOT_CHEST_XRAY
    ood_distance: float | None = None  # feature distance, when the guard's feature test ran
    lungs: dict | None = None  # lung geometry (edge_runtime/lungs.py), when the lung model ran
    probabilities: dict | None = None  # every class's calibrated probability, in label order
    raw_probabilities: dict | None = None  # every class's probability before calibration

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Inference:
    """One run of the model: what `Classifier.run` returns."""

    raw: np.ndarray  # the probability output as the model gives it (int8 steps for int8)
    probabilities: np.ndarray  # every class's probability (label order), before calibration
    features: np.ndarray | None  # pooled penultimate features, dequantized
    latency_ms: float  # interpreter.invoke() only
    positive_index: int

    @property
    def positive(self) -> float:
        """The model's own P(positive label)."""
        return float(self.probabilities[self.positive_index])


@dataclass
class Prepared:
    """An image ready for the interpreter: what `Classifier.prepare_file` hands `finish`."""

    path: str
    input_tensor: np.ndarray
    elapsed_ms: float  # spent decoding, checking and preparing it
    lungs: dict | None = None  # lung geometry, carried to the Prediction


def integer_input_map(spec, input_details: dict):
    """A function uint8 pixels -> the model's integer input tensor that skips float arithmetic,
    or None where the model takes float input or the map is not exact.

    The float path (to_model_input, then quantize) sends each of the 256 grey levels to one
    integer; that table is computed here with the float path itself, so the shortcut is exact
    by construction. For the lossless spec it is pixel - 128 (an XOR with 0x80 on the bits).
    """
    dtype = np.dtype(input_details["dtype"])
    if dtype not in (np.dtype(np.int8), np.dtype(np.uint8)):
        return None
    scale, zero_point = input_details["quantization"]
    if not scale:
        return None
    levels = np.arange(256, dtype=np.uint8)
    table = quantize(to_model_input(levels, spec)[..., 0], scale, zero_point, dtype)
    channels = spec.channels
    shape = (1, spec.height, spec.width, channels)
    if dtype == np.int8 and np.array_equal(table.astype(np.int16), levels.astype(np.int16) - 128):
        def convert(pixels):
            gray = (pixels ^ np.uint8(0x80)).view(np.int8)
            # np.stack copies whole planes; np.repeat on the last axis goes value by value.
            return np.stack([gray] * channels, axis=-1).reshape(shape)
        return convert

    def lookup(pixels):
        return np.stack([table[pixels]] * channels, axis=-1).reshape(shape)
    return lookup


def default_threads() -> int:
    """The CPU cores this process may use (a Raspberry Pi 4/5 has 4)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


class Classifier:
    """A loaded model. Build it with `Classifier.load`; reuse it for many images."""

    def __init__(self, interpreter, runtime: Runtime, card: dict, variant: str,
                 model_path: Path, num_threads: int | None, device: DeviceChoice | None = None,
                 guard: bool = True, lungs: "LungSegmenter | None | str" = "auto"):
        """lungs: the lung model (guard's frontal-film check, crop mode); "auto" loads the one
        beside the model, else the released one."""
        self.interpreter = interpreter
        self.runtime = runtime
        self.device = device or DeviceChoice("cpu", "cpu", model_path)
        self.card = card
        self.variant = variant
        self.model_path = model_path
        self._file_sha256: str | None = None
        self.num_threads = num_threads
        self.spec = preprocess_spec(card)
        # Verdicts are decided on the model's own probability against the card's threshold;
        # people see both mapped through the calibration (monotone: the same decision).
        self.model_threshold = float(card["threshold"])
        self.calibration = TemperatureScaling.from_card(card)
        self.threshold = float(self.calibration.apply(self.model_threshold))
        self.scheme = ClassScheme.from_card(card)
        self.labels = self.scheme.labels
        self.positive_label = self.scheme.positive
        others = self.scheme.others
        # What "not the positive class" is called where one word is needed (explain's scale).
        self.negative_label = others[0] if len(others) == 1 else f"not {self.positive_label}"
        self.input_details = interpreter.get_input_details()[0]
        outputs = interpreter.get_output_details()
        # Outputs are told apart by shape, never by order (the converter does not keep it).
        self.output_details, self.feature_details = split_outputs(outputs, self.scheme)
        feature_dim = (None if self.feature_details is None
                       else int(self.feature_details["shape"][-1]))
        self.guard = Guard.from_card(card, model_path.parent, feature_dim) if guard else None
        # Where normalising then quantizing is a fixed map of the 256 grey levels (int8 input,
        # lossless spec: pixel - 128), a table does it without float arithmetic.
        self._integer_input = integer_input_map(self.spec, self.input_details)
        # The lung model: the guard's frontal-film check and the crop mode's bounding box.
        lung_notes = []
        if lungs == "auto":
            lungs, lung_notes = _load_lungs(
                model_path, runtime.name if isinstance(runtime, Runtime) else None, self.spec,
                guard)
        self.use_lungs(lungs)
        if self.guard is not None:
            self.guard.notes.extend(lung_notes)

    # -- loading ---------------------------------------------------------------------------

    @classmethod
    def load(cls, model_path: str | Path | None = None, runtime: str | None = None,
             num_threads: int | None = None, delegates: list | None = None,
             device: str = "cpu", guard: bool = True) -> "Classifier":
        """Load `model_path` (a .tflite file beside its model_card.json, or a folder holding a
        model card), or the released model when None, on `device` (cpu, edgetpu or auto; see
        devices.resolve_device: auto and edgetpu may pick the file's Edge TPU build).
        guard=False turns the out-of-distribution guard off: every image gets a verdict.

        Raises ModelError with a message a user can act on; warns with ModelIntegrityWarning
        when the file's sha256 differs from the card's.
        """
        model_path, folder_card = _resolve_model_path(model_path)
        if model_path.suffix.lower() == ".onnx" and model_path.is_file():
            return _load_onnx(cls, model_path, runtime, num_threads, guard)
        _check_tflite_file(model_path)
        _refuse_onnx_runtime(runtime, model_path)
        try:
            chosen = select_runtime(runtime)
        except RuntimeNotFound as exc:
            raise ModelError(str(exc)) from None
        try:
            beside = folder_card if folder_card is not None else _card_beside(model_path)
            choice = resolve_device(device, model_path, beside, chosen)
        except DeviceError as exc:
            raise ModelError(str(exc)) from None
        if choice.model_path.parent != model_path.parent:
            beside = None  # another folder's card: read below
        if choice.model_path != model_path:
            model_path = choice.model_path
            _check_tflite_file(model_path)
        try:
            card, variant = card_for_model(model_path, beside)
            spec = preprocess_spec(card)
            scheme = ClassScheme.from_card(card)
            float(card["threshold"])
            TemperatureScaling.from_card(card)
        except ModelCardError as exc:
            raise ModelError(str(exc)) from None
        except (ClassSchemeError, ValueError, TypeError, KeyError) as exc:
            raise ModelError(f"{model_path.parent / CARD_FILENAME}: invalid model card "
                             f"({exc})") from None

        expected_sha = variant_entry(card, variant).get("sha256")
        file_sha = sha256_file(model_path) if expected_sha else None
        if expected_sha and file_sha != expected_sha:
            warnings.warn(ModelIntegrityWarning(
                f"{model_path.name} differs from the file its model card describes (sha256 "
                "mismatch): the card's threshold and metrics may not apply; re-run "
                "`covid-edge convert` or restore the released file"), stacklevel=2)

        try:
            interpreter = chosen.interpreter(str(model_path), num_threads=num_threads,
                                             delegates=(delegates or []) + choice.delegates)
            with _filtered_native_stderr():
                interpreter.allocate_tensors()
        except RuntimeNumpyMismatch as exc:
            raise ModelError(str(exc)) from None
        except (RuntimeError, ValueError) as exc:
            raise ModelError(_explain_interpreter_failure(model_path, exc, card)) from None

        _check_signature(interpreter, spec, scheme, model_path)
        try:
            classifier = cls(interpreter, chosen, card, variant, model_path, num_threads,
                             choice, guard)
        except GuardStatsError as exc:
            raise ModelError(f"out-of-distribution guard: {exc}; restore the models folder "
                             "(or re-run `covid-edge convert`), or pass --no-guard to classify "
                             "without the guard") from None
        classifier._file_sha256 = file_sha
        return classifier

    @property
    def file_sha256(self) -> str:
        """The model file's sha256, hashed once (at load when the card has one to check)."""
        if self._file_sha256 is None:
            self._file_sha256 = sha256_file(self.model_path)
        return self._file_sha256

    @property
    def runtime_label(self) -> str:
        """The runtime, and the Edge TPU when the model runs on it (shown with every result)."""
        if self.device.device == "edgetpu":
            return f"{self.runtime.label} + Edge TPU"
        return self.runtime.label

    # -- inference -------------------------------------------------------------------------

    def prepare_input(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 (height, width) pixels -> the exact tensor the model's input takes."""
        pixels = np.asarray(pixels)
        if pixels.dtype != np.uint8 or pixels.shape != (self.spec.height, self.spec.width):
            raise ValueError(f"expected uint8 pixels of shape ({self.spec.height}, "
                             f"{self.spec.width}), got {pixels.dtype} {pixels.shape}")
        if self._integer_input is not None:
            return self._integer_input(pixels)
        x = to_model_input(pixels, self.spec)[np.newaxis]
        dtype = np.dtype(self.input_details["dtype"])
        if dtype == np.float32:
            return x
        scale, zero_point = self.input_details["quantization"]
        return quantize(x, scale, zero_point, dtype)

    def run(self, input_tensor: np.ndarray) -> Inference:
        """Run the model on a prepared input (see `Inference`)."""
        self.interpreter.set_tensor(self.input_details["index"], input_tensor)
        start = time.perf_counter()
        self.interpreter.invoke()
        latency_ms = (time.perf_counter() - start) * 1000.0
        raw = self.interpreter.get_tensor(self.output_details["index"]).reshape(-1).copy()
        probabilities = self.scheme.probabilities(_dequantize(raw, self.output_details))
        features = None
        if self.feature_details is not None:
            features = _dequantize(
                self.interpreter.get_tensor(self.feature_details["index"]).reshape(-1),
                self.feature_details)
        return Inference(raw, probabilities, features, latency_ms, self.scheme.positive_index)

    def output_limits(self) -> tuple[float, float] | None:
        """The lowest and highest probability an integer output can say (before calibration),
        None for a float output. An int8 probability at either end is saturated: the model
        may be surer than it can show."""
        dtype = np.dtype(self.output_details["dtype"])
        if not np.issubdtype(dtype, np.integer):
            return None
        limits = np.iinfo(dtype)
        return (float(_dequantize(limits.min, self.output_details)),
                float(_dequantize(limits.max, self.output_details)))

    def verdict(self, probabilities) -> str:
        """The verdict for the model's own per-class probabilities (`Inference.probabilities`):
        the positive label when its probability reaches the card's threshold, else the most
        probable other label (classes.ClassScheme)."""
        return self.scheme.verdict(probabilities, self.model_threshold)

    def calibrated(self, probabilities) -> np.ndarray:
        """The model's per-class probabilities -> the calibrated ones people are shown."""
        return self.calibration.apply_all(probabilities, self.scheme.positive_index)

    def calibrated_positive(self, probability: float) -> float:
        """The model's P(positive) -> the calibrated P(positive)."""
        return float(self.calibration.apply(probability))

    def use_lungs(self, lungs: LungSegmenter | None) -> None:
        """Run the guard (and crop) with this lung model; the frontal-film limits come from the
        classifier's card, else the lung model's own (`guard_rule`), else LungRule's."""
        self.lungs = lungs
        self._last_lung = None
        self.lung_rule = LungRule.from_dict(
            (self.card.get("ood_guard") or {}).get("lung_rule")
            or (lungs.card.get("guard_rule") if lungs else None))

    def segment_lungs(self, gray) -> LungResult | None:
        """The lung model on a grey picture (PIL image or uint8 array); None without one.
        Thread-safe (the segmenter holds a lock): prepare_* may run in several threads."""
        if self.lungs is None:
            return None
        # The kiosk asks twice for the same decoded picture (crop, then guard): reuse.
        last = getattr(self, "_last_lung", None)
        if last is not None and last[0] is gray:
            return last[1]
        result = self.lungs.segment(gray)
        self._last_lung = (gray, result)
        return result

    def pixels_from_gray(self, gray) -> tuple[np.ndarray, LungResult | None]:
        """The decoded grey picture -> (model-size pixels, lung result): covid_edge.preprocess
        (prepare_gray), with the crop to the lungs when the card's spec asks for it."""
        lung = self.segment_lungs(gray) if (self.guard is not None or self.spec.crop) else None
        return prepare_gray(gray, self.spec, lung), lung

    def classify_pixels(self, pixels: np.ndarray, path: str = "<pixels>", *,
                        colourfulness: float | None = None,
                        size: tuple[int, int] | None = None, gray=None,
                        lung: LungResult | None = None) -> Prediction:
        """Classify model-size uint8 pixels. colourfulness and size (width, height) describe the
        picture before it became gray and small (image_io.read_image); the guard's colour and
        aspect-ratio checks skip what is not given. The lung check runs on `lung` if given, else
        on the lung model's view of `gray` (the decoded picture), else of `pixels`."""
        return self.finish(self.prepare_pixels(pixels, path, colourfulness=colourfulness,
                                               size=size, gray=gray, lung=lung))

    def classify_file(self, path: str | Path) -> Prediction:
        """Classify one file; an unreadable file gives a Prediction whose `error` says why."""
        return self.finish(self.prepare_file(path))

    # The two stages of classify_file. prepare_* touches no interpreter state, so several
    # threads may run it while one runs `finish` (pipeline.classify_paths does).

    def prepare_file(self, path: str | Path) -> "Prepared | Prediction":
        """Decode, resize, run the guard's image checks and build the input tensor; a
        Prediction when the file is unreadable or refused before inference."""
        start = time.perf_counter()
        # The decode's share of the memory budget is held until the full-size picture is
        # gone, so that threads preparing files at once stay within it together.
        with ExitStack() as decoding:
            try:
                decoded = read_image(path, target_size=(self.spec.width, self.spec.height),
                                     high_bit_depth=self.spec.high_bit_window, hold=decoding)
            except ImageReadError as exc:
                return Prediction(str(path), None, None, self.threshold, None, None,
                                  self.runtime_label, error=str(exc))
            pixels, lung = self.pixels_from_gray(decoded.gray)  # = preprocess.load_pixels
            colourfulness, size = decoded.colourfulness, decoded.size
            del decoded
        return self.prepare_pixels(pixels, str(path), colourfulness=colourfulness,
                                   size=size, start=start, lung=lung)

    def prepare_pixels(self, pixels: np.ndarray, path: str = "<pixels>", *,
                       colourfulness: float | None = None, size: tuple[int, int] | None = None,
                       start: float | None = None, gray=None,
                       lung: LungResult | None = None) -> "Prepared | Prediction":
        start = time.perf_counter() if start is None else start
        reason, lung_geometry = self.refusal_before_inference(pixels, colourfulness, size,
                                                              gray=gray, lung=lung)
        if reason:
            return Prediction(str(path), None, NOT_CHEST_XRAY, self.threshold, None,
                              (time.perf_counter() - start) * 1000.0, self.runtime_label,
                              reason=reason, lungs=lung_geometry)
        input_tensor = self.prepare_input(pixels)
        return Prepared(str(path), input_tensor, (time.perf_counter() - start) * 1000.0,
                        lung_geometry)

    def refusal_before_inference(self, pixels: np.ndarray, colourfulness=None, size=None, *,
                                 gray=None, lung: LungResult | None = None
                                 ) -> tuple[str | None, dict | None]:
        """The guard's checks that need no inference, in order: the image checks, then the
        lung check. (reason or None, lung geometry when the lung model ran). The feature test
        follows inference (`guard.feature_reason`). Benchmarks that report guard on and off
        call this too, so they refuse exactly what `classify` refuses."""
        if self.guard is None:
            return None, None
        reason = self.guard.image_reason(pixels, colourfulness, size)
        if reason or self.lungs is None:
            return reason, None
        lung = lung or self.segment_lungs(pixels if gray is None else gray)
        return self.lung_rule.reason(lung.geometry), lung.geometry.to_dict()

    def finish(self, prepared: "Prepared | Prediction") -> Prediction:
        """Inference, the feature test and the verdict for a prepared input. total_ms is the
        work done on this image (both stages), not time spent waiting in a queue."""
        if isinstance(prepared, Prediction):
            return prepared
        start = time.perf_counter()
        path = prepared.path
        inference = self.run(prepared.input_tensor)
        latency_ms = inference.latency_ms
        distance = None
        if self.guard is not None:
            reason, distance = self.guard.feature_reason(inference.features)
            if reason:
                return Prediction(path, None, NOT_CHEST_XRAY, self.threshold, latency_ms,
                                  prepared.elapsed_ms + (time.perf_counter() - start) * 1000.0,
                                  self.runtime_label, reason=reason, ood_distance=distance,
                                  lungs=prepared.lungs)
        total_ms = prepared.elapsed_ms + (time.perf_counter() - start) * 1000.0
        shown = self.calibrated(inference.probabilities)
        return Prediction(path, float(shown[self.scheme.positive_index]),
                          self.verdict(inference.probabilities), self.threshold, latency_ms,
                          total_ms, self.runtime_label, raw_probability=inference.positive,
                          ood_distance=distance, lungs=prepared.lungs,
                          probabilities=self.scheme.as_dict(shown),
                          raw_probabilities=self.scheme.as_dict(inference.probabilities))

    # -- description -----------------------------------------------------------------------

    def describe(self) -> dict:
        """What a report needs to say which model and runtime produced a result."""
        return {
            "name": self.card.get("name"),
            "version": self.card.get("version"),
            "variant": self.variant,
            "file": str(self.model_path),
            # Two conversions can share a name and version; the file's hash tells them apart.
            "sha256": self.file_sha256,
            "input_shape": [int(n) for n in self.input_details["shape"]],
            "input_dtype": np.dtype(self.input_details["dtype"]).name,
            "device": self.device.device,
            "classes": self.scheme.to_dict(),
            "guard": self.describe_guard(),
            "lung_model": self.lungs.describe() if self.lungs is not None else None,
            "calibration": {"method": "temperature scaling",
                            "temperature": self.calibration.temperature,
                            "model_threshold": self.model_threshold,
                            "threshold": self.threshold},
        }

    def describe_guard(self) -> dict:
        """Which out-of-distribution checks run, with their limits."""
        if self.guard is None:
            return {"enabled": False, "notes": ["guard off: every image gets a verdict"]}
        features = self.guard.features
        return {
            "enabled": True,
            "image_checks": self.guard.checks.to_dict(),
            "feature_test": features is not None,
            "lung_check": self.lungs is not None,
            "lung_rule": self.lung_rule.to_dict() if self.lungs is not None else None,
            "feature_threshold": None if features is None else features.threshold,
            "notes": list(self.guard.notes),
        }


def _refuse_onnx_runtime(runtime: str | None, model_path: Path) -> None:
    """--runtime onnxruntime/openvino runs an ONNX export; on a .tflite file it can only fail,
    so say which file it wants instead of failing inside the TFLite loader."""
    from .onnx_backends import ONNX_RUNTIMES

    if runtime in ONNX_RUNTIMES:
        raise ModelError(
            f"--runtime {runtime} runs an ONNX export, and {model_path} is a TFLite file: "
            f"write the export with `covid-edge export-onnx` and pass --model FILE.onnx, or "
            f"pick a TFLite runtime ({', '.join(RUNTIME_NAMES)})")


def _load_onnx(cls, model_path: Path, runtime, num_threads, guard) -> "Classifier":
    from ..model_card import ModelCardError as CardError
    from .onnx_backends import EXPORT_AGAIN, OnnxBackendError, load_onnx
    try:
        return load_onnx(cls, model_path, runtime, num_threads, guard)
    except (OnnxBackendError, CardError) as exc:
        raise ModelError(f"{model_path.name}: {exc}") from None
    except Exception as exc:  # the backend's own load errors: one line, not a traceback
        raise ModelError(f"{model_path.name}: the ONNX backend cannot load it "
                         f"({str(exc).strip().splitlines()[0] if str(exc).strip() else exc!r}); "
                         f"a damaged or partial export: write it again with {EXPORT_AGAIN}"
                         ) from None


def _load_lungs(model_path: Path, runtime: str | None, spec, guard: bool
                ) -> tuple[LungSegmenter | None, list[str]]:
    """The lung model beside the classifier (DIR/lungs/), else the released one. Without it
    the guard runs its other checks and says so; a crop-mode model cannot run at all."""
    if not guard and not spec.crop:
        return None, []
    beside = model_path.parent / LUNG_DIR
    try:
        lungs = LungSegmenter.load(beside if beside.is_dir() else None, runtime=runtime)
    except LungModelError as exc:
        if spec.crop:
            raise ModelError(f"this model crops to the lungs, but the lung model cannot be "
                             f"loaded: {exc}") from None
        return None, [f"lung model not loaded ({exc}): the frontal-film check is off"]
    if spec.crop and spec.crop_model_sha256 and lungs.card.get("sha256") != spec.crop_model_sha256:
        warnings.warn(ModelIntegrityWarning(
            f"this model was trained on crops by lung model {spec.crop_model_sha256[:12]}, but "
            f"{lungs.model_path} is {str(lungs.card.get('sha256'))[:12]}: crops may differ"),
            stacklevel=3)
    return lungs, []


def _resolve_model_path(model_path: str | Path | None) -> tuple[Path, dict | None]:
    """The model file to load, and the card beside it when reading the folder's card told
    which file that is (else None: the caller reads it)."""
    if model_path is None:
        try:
            directory = released_models_dir()
        except ModelCardError as exc:
            raise ModelError(str(exc)) from None
    else:
        model_path = Path(model_path)
        if not model_path.is_dir():
            return model_path, None
        directory = model_path
    try:
        card = load_card(directory / CARD_FILENAME)
    except ModelCardError as exc:
        raise ModelError(f"{exc}; pass a .tflite file or a folder that `covid-edge convert` "
                         "wrote") from None
    variant = card.get("default_variant", "int8")
    entry = card["variants"].get(variant)
    if not entry or "file" not in entry:
        raise ModelError(f"{directory / CARD_FILENAME}: default variant {variant!r} is not "
                         "among its variants; pass --model PATH/TO/file.tflite")
    path = directory / entry["file"]
    return path, (card if path.parent == directory else None)


def _check_tflite_file(model_path: Path) -> None:
    if not model_path.exists():
        raise ModelError(f"{model_path}: no such model file; pass --model PATH/TO/model.tflite "
                         "(see `covid-edge info` for the released one)")
    if not model_path.is_file():
        raise ModelError(f"{model_path}: not a file; pass the .tflite file")
    problem = header_problem(model_path)
    if problem == NOT_TFLITE:
        problem += ("; covid-edge runs the .tflite files `covid-edge convert` writes, not "
                    ".keras/.h5/SavedModel files")
    if problem:
        raise ModelError(f"{model_path}: {problem}")


def _card_beside(model_path: Path) -> dict | None:
    """The model card next to the file, if any: it pairs CPU and Edge TPU files."""
    try:
        return load_card(model_path.parent / CARD_FILENAME)
    except ModelCardError:
        return None


def _explain_interpreter_failure(model_path: Path, exc: Exception, card: dict) -> str:
    explained = explain_interpreter_failure(model_path, exc, card)
    if explained:
        return explained
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return f"{model_path}: the TFLite interpreter cannot load this model ({message})"


def split_outputs(outputs: list[dict], scheme: ClassScheme) -> tuple[dict, dict | None]:
    """(the probability output, the [1, F] features output or None), told apart by shape:
    the probability output has `scheme.output_size` values, the features output more."""
    size = scheme.output_size
    probability = [d for d in outputs if int(np.prod(d["shape"])) == size]
    features = [d for d in outputs if int(np.prod(d["shape"])) > size]
    if len(probability) != 1 or len(features) > 1 or len(probability) + len(features) != len(
            outputs):
        shapes = [[int(v) for v in detail["shape"]] for detail in outputs]
        what = ("one probability" if scheme.output_kind == "sigmoid"
                else f"{scheme.count} class probabilities ({', '.join(scheme.labels)})")
        raise ValueError(f"the model gives {shapes}; its card expects one output holding "
                         f"{what}, optionally with a [1, N] features output")
    if features and not (len(features[0]["shape"]) == 2 and int(features[0]["shape"][0]) == 1):
        raise ValueError(f"the features output has shape {list(features[0]['shape'])}, "
                         "not [1, N]")
    return probability[0], (features[0] if features else None)


def _check_signature(interpreter, spec, scheme: ClassScheme, model_path: Path) -> None:
    """The model must take one [1, H, W, C] image the card's preprocessing produces and give
    the probabilities its card's classes call for; anything else means the card and the model
    do not belong together."""
    inputs, outputs = interpreter.get_input_details(), interpreter.get_output_details()
    expected = [1, spec.height, spec.width, spec.channels]
    if len(inputs) != 1 or list(inputs[0]["shape"]) != expected:
        shapes = [list(detail["shape"]) for detail in inputs]
        raise ModelError(f"{model_path.name}: the model takes {shapes} but its model card's "
                         f"preprocessing makes {expected}; the card does not describe this model")
    if np.dtype(inputs[0]["dtype"]) not in [np.dtype(t) for t in SUPPORTED_INPUT_DTYPES]:
        raise ModelError(f"{model_path.name}: unsupported input type "
                         f"{np.dtype(inputs[0]['dtype']).name}")
    try:
        split_outputs(outputs, scheme)
    except ValueError as exc:
        raise ModelError(f"{model_path.name}: {exc}") from None


def _dequantize(values, detail: dict):
    scale, zero_point = detail["quantization"]
    if np.issubdtype(np.dtype(detail["dtype"]), np.integer) and scale:
        return (np.asarray(values, dtype=np.float64) - zero_point) * scale
    return np.asarray(values, dtype=np.float64)


def _filtered_native_stderr():
    """Hide the interpreter's C++ INFO line while keeping anything else it writes to fd 2."""
    return filtered_native_stderr(lambda line: line.strip() in _NATIVE_NOISE)


def load_with_messages(model_path=None, *, runtime: str | None = None,
                       threads: int | None = None, device: str = "cpu",
                       guard: bool = True) -> tuple["Classifier", list[str]]:
    """`Classifier.load` as the commands use it: all cores by default, and the lines a person
    should read (a model file that differs from its card, device fallbacks, guard notes).

    Runtimes' own deprecation chatter is dropped: it is not the user's to act on.
    Raises ModelError like `Classifier.load`.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        classifier = Classifier.load(model_path, runtime=runtime,
                                     num_threads=threads or default_threads(),
                                     device=device, guard=guard)
    messages = [f"warning: {w.message}" for w in caught
                if issubclass(w.category, ModelIntegrityWarning)]
    messages += [f"note: {notice}" for notice in classifier.device.notices]
    messages += [f"note: {notice}" for notice in classifier.describe_guard()["notes"]]
    return classifier, messages
