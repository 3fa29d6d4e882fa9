"""One image file in, one verdict out, with the TFLite model and its model card.

The path is short and linear on purpose (pycoral's classify_image.py is the model):
model card -> interpreter -> read + resize the file (covid_edge.preprocess, the same code training
used) -> quantize to the model's input type -> invoke -> dequantize -> threshold from the card.
Nothing here imports TensorFlow.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..image_io import ImageReadError
from ..model_card import (CARD_FILENAME, ModelCardError, card_for_model, load_card,
                          preprocess_spec, released_models_dir, sha256_file)
from ..preprocess import load_pixels, quantize, to_model_input
from .interpreter import Runtime, RuntimeNotFound, select_runtime

# Every TFLite flatbuffer carries this file identifier at bytes 4..8.
TFLITE_IDENTIFIER = b"TFL3"
SUPPORTED_INPUT_DTYPES = (np.float32, np.int8, np.uint8)
# LiteRT prints this on every interpreter; it is noise to someone classifying an X-ray.
_NATIVE_NOISE = ("INFO: Created TensorFlow Lite XNNPACK delegate for CPU.",)


class ModelError(Exception):
    """A model that cannot be loaded or run; the message says why and what to do."""


class ModelIntegrityWarning(UserWarning):
    """The model file is not the one its model card was written for."""


@dataclass
class Prediction:
    path: str
    probability: float | None  # of the positive label ("covid")
    verdict: str | None
    threshold: float
    latency_ms: float | None  # interpreter.invoke() only
    total_ms: float | None  # decode + resize + quantize + invoke
    runtime: str
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict:
        return asdict(self)


def default_threads() -> int:
    """The CPU cores this process may use (a Raspberry Pi 4/5 has 4)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


class Classifier:
    """A loaded model. Build it with `Classifier.load`; reuse it for many images."""

    def __init__(self, interpreter, runtime: Runtime, card: dict, variant: str,
                 model_path: Path, num_threads: int | None):
        self.interpreter = interpreter
        self.runtime = runtime
        self.card = card
        self.variant = variant
        self.model_path = model_path
        self.num_threads = num_threads
        self.spec = preprocess_spec(card)
        self.threshold = float(card["threshold"])
        self.positive_label = card["positive_label"]
        negatives = [label for label in card["labels"] if label != self.positive_label]
        self.negative_label = negatives[0] if negatives else f"not {self.positive_label}"
        self.input_details = interpreter.get_input_details()[0]
        self.output_details = interpreter.get_output_details()[0]

    # -- loading ---------------------------------------------------------------------------

    @classmethod
    def load(cls, model_path: str | Path | None = None, runtime: str | None = None,
             num_threads: int | None = None, delegates: list | None = None) -> "Classifier":
        """Load `model_path` (a .tflite file beside its model_card.json, or a folder holding a
        model card), or the released model when None.

        Raises ModelError with a message a user can act on; warns with ModelIntegrityWarning
        when the file's sha256 differs from the card's.
        """
        model_path = _resolve_model_path(model_path)
        _check_tflite_file(model_path)
        try:
            card, variant = card_for_model(model_path)
            spec = preprocess_spec(card)
            float(card["threshold"])
        except ModelCardError as exc:
            raise ModelError(str(exc)) from None
        except (ValueError, TypeError, KeyError) as exc:
            raise ModelError(f"{model_path.parent / CARD_FILENAME}: invalid model card "
                             f"({exc})") from None

        expected_sha = card["variants"][variant].get("sha256")
        if expected_sha and sha256_file(model_path) != expected_sha:
            warnings.warn(ModelIntegrityWarning(
                f"{model_path.name} differs from the file its model card describes (sha256 "
                "mismatch): the card's threshold and metrics may not apply; re-run "
                "`covid-edge convert` or restore the released file"), stacklevel=2)

        try:
            chosen = select_runtime(runtime)
        except RuntimeNotFound as exc:
            raise ModelError(str(exc)) from None
        try:
            interpreter = chosen.interpreter(str(model_path), num_threads=num_threads,
                                             delegates=delegates)
            with _filtered_native_stderr():
                interpreter.allocate_tensors()
        except (RuntimeError, ValueError) as exc:
            raise ModelError(_explain_interpreter_failure(model_path, exc)) from None

        _check_signature(interpreter, spec, model_path)
        return cls(interpreter, chosen, card, variant, model_path, num_threads)

    # -- inference -------------------------------------------------------------------------

    def prepare_input(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 (height, width) pixels -> the exact tensor the model's input takes."""
        pixels = np.asarray(pixels)
        if pixels.dtype != np.uint8 or pixels.shape != (self.spec.height, self.spec.width):
            raise ValueError(f"expected uint8 pixels of shape ({self.spec.height}, "
                             f"{self.spec.width}), got {pixels.dtype} {pixels.shape}")
        x = to_model_input(pixels, self.spec)[np.newaxis]
        dtype = np.dtype(self.input_details["dtype"])
        if dtype == np.float32:
            return x
        scale, zero_point = self.input_details["quantization"]
        return quantize(x, scale, zero_point, dtype)

    def infer(self, input_tensor: np.ndarray) -> tuple[float, float, float]:
        """Run the model on a prepared input: (raw output value, probability, invoke ms)."""
        self.interpreter.set_tensor(self.input_details["index"], input_tensor)
        start = time.perf_counter()
        self.interpreter.invoke()
        latency_ms = (time.perf_counter() - start) * 1000.0
        raw = self.interpreter.get_tensor(self.output_details["index"]).reshape(-1)[0]
        scale, zero_point = self.output_details["quantization"]
        if np.issubdtype(np.dtype(self.output_details["dtype"]), np.integer) and scale:
            probability = (float(raw) - zero_point) * scale
        else:
            probability = float(raw)
        return float(raw), probability, latency_ms

    def verdict(self, probability: float) -> str:
        return self.positive_label if probability >= self.threshold else self.negative_label

    def classify_pixels(self, pixels: np.ndarray, path: str = "<pixels>") -> Prediction:
        start = time.perf_counter()
        _, probability, latency_ms = self.infer(self.prepare_input(pixels))
        total_ms = (time.perf_counter() - start) * 1000.0
        return Prediction(str(path), probability, self.verdict(probability), self.threshold,
                          latency_ms, total_ms, self.runtime.label)

    def classify_file(self, path: str | Path) -> Prediction:
        """Classify one file; an unreadable file gives a Prediction whose `error` says why."""
        start = time.perf_counter()
        try:
            pixels = load_pixels(path, self.spec)
        except ImageReadError as exc:
            return Prediction(str(path), None, None, self.threshold, None, None,
                              self.runtime.label, error=str(exc))
        prediction = self.classify_pixels(pixels, str(path))
        prediction.total_ms = (time.perf_counter() - start) * 1000.0
        return prediction

    # -- description -----------------------------------------------------------------------

    def describe(self) -> dict:
        """What a report needs to say which model and runtime produced a result."""
        return {
            "name": self.card.get("name"),
            "version": self.card.get("version"),
            "variant": self.variant,
            "file": str(self.model_path),
            "input_shape": [int(n) for n in self.input_details["shape"]],
            "input_dtype": np.dtype(self.input_details["dtype"]).name,
        }


def _resolve_model_path(model_path: str | Path | None) -> Path:
    if model_path is None:
        try:
            directory = released_models_dir()
        except ModelCardError as exc:
            raise ModelError(str(exc)) from None
    else:
        model_path = Path(model_path)
        if not model_path.is_dir():
            return model_path
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
    return directory / entry["file"]


def _check_tflite_file(model_path: Path) -> None:
    if not model_path.exists():
        raise ModelError(f"{model_path}: no such model file; pass --model PATH/TO/model.tflite "
                         "(see `covid-edge info` for the released one)")
    if not model_path.is_file():
        raise ModelError(f"{model_path}: not a file; pass the .tflite file")
    try:
        with open(model_path, "rb") as handle:
            header = handle.read(8)
    except OSError as exc:
        raise ModelError(f"{model_path}: cannot be read ({exc.strerror})") from None
    if header[4:8] != TFLITE_IDENTIFIER:
        raise ModelError(
            f"{model_path}: not a TensorFlow Lite model (no TFL3 identifier); covid-edge runs "
            "the .tflite files `covid-edge convert` writes, not .keras/.h5/SavedModel files")


def _explain_interpreter_failure(model_path: Path, exc: Exception) -> str:
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if "edgetpu-custom-op" in str(exc):
        return (f"{model_path.name} is compiled for the Coral Edge TPU (edgetpu_compiler "
                "output): it runs only through the Edge TPU delegate (libedgetpu) on a Coral "
                "device. On a CPU, pass the plain int8 model instead (e.g. covid-edge-int8.tflite)"
                "; to check a Coral device run `covid-edge check-edgetpu`.")
    return f"{model_path}: the TFLite interpreter cannot load this model ({message})"


def _check_signature(interpreter, spec, model_path: Path) -> None:
    """The model must take one [1, H, W, C] image the card's preprocessing produces and give
    one probability; anything else means the card and the model do not belong together."""
    inputs, outputs = interpreter.get_input_details(), interpreter.get_output_details()
    expected = [1, spec.height, spec.width, spec.channels]
    if len(inputs) != 1 or list(inputs[0]["shape"]) != expected:
        shapes = [list(detail["shape"]) for detail in inputs]
        raise ModelError(f"{model_path.name}: the model takes {shapes} but its model card's "
                         f"preprocessing makes {expected}; the card does not describe this model")
    if np.dtype(inputs[0]["dtype"]) not in [np.dtype(t) for t in SUPPORTED_INPUT_DTYPES]:
        raise ModelError(f"{model_path.name}: unsupported input type "
                         f"{np.dtype(inputs[0]['dtype']).name}")
    if len(outputs) != 1 or int(np.prod(outputs[0]["shape"])) != 1:
        shapes = [list(detail["shape"]) for detail in outputs]
        raise ModelError(f"{model_path.name}: the model gives {shapes}; covid-edge expects one "
                         "output holding the probability of the positive label")


@contextlib.contextmanager
def _filtered_native_stderr():
    """Hide the interpreter's C++ INFO line while keeping anything else it writes to fd 2."""
    try:
        stderr_fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # no real stderr (pytest capture, pythonw)
        yield
        return
    sys.stderr.flush()
    saved_fd = os.dup(stderr_fd)
    with tempfile.TemporaryFile(mode="w+b") as captured:
        os.dup2(captured.fileno(), stderr_fd)
        try:
            yield
        finally:
            os.dup2(saved_fd, stderr_fd)
            os.close(saved_fd)
            captured.seek(0)
            text = captured.read().decode("utf-8", errors="replace")
            kept = [line for line in text.splitlines() if line.strip() not in _NATIVE_NOISE]
            if kept:
                sys.stderr.write("\n".join(kept) + "\n")
                sys.stderr.flush()
