"""Latency measurement of one .tflite model in one configuration, and the statistics on it.

`measure(job)` runs in a fresh process per configuration (see runner.py), so its model load time
is a cold start of the interpreter and its peak memory is that configuration's alone.
Everything here is TensorFlow-free unless the job names the tensorflow runtime.
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..model_card import ModelCardError, card_for_model, preprocess_spec
from ..preprocess import PreprocessSpec, load_pixels, quantize, to_model_input

PERCENTILES = (50, 90, 99)


class MeasurementError(Exception):
    """A configuration that cannot be measured; the message says why in a user's terms."""

    def __init__(self, message: str, skipped: bool = False):
        super().__init__(message)
        # skipped: expected on this machine (an Edge TPU model without an Edge TPU), not a fault.
        self.skipped = skipped


@dataclass
class Job:
    """One configuration to measure: a model on a runtime, target, thread count."""

    model: str
    label: str
    runtime: str
    threads: int
    target: str = "cpu"  # "cpu" or "edgetpu"
    xnnpack: bool | None = True  # None where it does not apply (Edge TPU)
    runs: int = 100
    warmup: int = 10
    images: list[str] = field(default_factory=list)
    end_to_end: bool = True

    def describe(self) -> str:
        if self.target == "edgetpu":
            where = "Edge TPU"
        elif self.model.lower().endswith(".onnx"):
            where = "ONNX"
        else:
            where = "XNNPACK" if self.xnnpack else "no XNNPACK"
        return f"{self.label} {self.runtime} {where} {self.threads}t"

    def to_dict(self) -> dict:
        return asdict(self)


def summarize(samples_ms) -> dict:
    """Percentiles, mean and spread of latency samples in milliseconds."""
    values = np.asarray(samples_ms, dtype=np.float64)
    if values.size == 0:
        raise ValueError("no latency samples to summarize")
    p50, p90, p99 = np.percentile(values, PERCENTILES)
    return {
        "n": int(values.size),
        "p50_ms": float(p50),
        "p90_ms": float(p90),
        "p99_ms": float(p99),
        "mean_ms": float(values.mean()),
        "std_ms": float(values.std(ddof=1)) if values.size > 1 else 0.0,
        "min_ms": float(values.min()),
        "max_ms": float(values.max()),
    }


def time_calls(call, runs: int, warmup: int) -> list[float]:
    """Milliseconds of `runs` calls of `call(i)`, after `warmup` untimed ones."""
    for i in range(warmup):
        call(i)
    samples = []
    clock = time.perf_counter_ns
    for i in range(runs):
        start = clock()
        call(i)
        samples.append((clock() - start) / 1e6)
    return samples


def quantize_for(x: np.ndarray, detail: dict) -> np.ndarray:
    """Float model input -> the input tensor's dtype, exactly as `classify` quantizes it."""
    dtype = np.dtype(detail["dtype"])
    if dtype.kind == "f":
        return x.astype(dtype)
    scale, zero_point = detail.get("quantization", (0.0, 0))
    if not scale:
        raise MeasurementError(f"the model's {dtype} input has no quantization parameters")
    return quantize(x, scale, zero_point, dtype)


def dequantize(y: np.ndarray, detail: dict) -> np.ndarray:
    scale, zero_point = detail.get("quantization", (0.0, 0))
    if np.dtype(detail["dtype"]).kind == "f" or not scale:
        return y.astype(np.float32)
    return (y.astype(np.float32) - np.float32(zero_point)) * np.float32(scale)


def spec_for(model_path: str | Path, input_shape) -> tuple[PreprocessSpec, str | None]:
    """Preprocessing from the model card beside the model, else MobileNet's [-1, 1] default
    at the model's input size (right for the ImageNet reference, which shares it)."""
    try:
        card, variant = card_for_model(model_path)
        spec = preprocess_spec(card)
    except ModelCardError:
        variant = None
        spec = None
    height, width, channels = (int(v) for v in input_shape[1:4])
    if spec is None or (spec.height, spec.width, spec.channels) != (height, width, channels):
        spec = PreprocessSpec(height=height, width=width, channels=channels)
    return spec, variant


def peak_rss_mb() -> float | None:
    """Peak resident memory of this process so far (None where `resource` is missing)."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports kilobytes, macOS bytes.
    return round(peak / (1024 * 1024 if sys.platform == "darwin" else 1024), 1)


def _explain_load_error(exc: Exception, job: Job) -> MeasurementError:
    text = str(exc)
    if "edgetpu-custom-op" in text:
        return MeasurementError(
            "compiled for the Edge TPU: measure it with --device edgetpu on a machine with a "
            "Coral accelerator", skipped=True)
    if "experimental_op_resolver_type" in text or "OpResolverType" in text:
        return MeasurementError(
            f"the {job.runtime} runtime cannot turn the XNNPACK delegate off", skipped=True)
    if "Could not open" in text or "not a valid" in text.lower() or "Model provided" in text:
        return MeasurementError(f"not a readable TFLite model ({text.strip()})")
    return MeasurementError(f"the interpreter failed to load the model: {text.strip()}")


def edgetpu_setup(runtime, model_path: str):
    """(model file, delegates) to measure `model_path` on the Edge TPU, as `classify --device
    edgetpu` would run it: its compiled build when it has one. A model that is not compiled
    is skipped (the delegate would leave all of it on the CPU)."""
    from ..edge_runtime.devices import DeviceError, resolve_device
    from ..model_card import CARD_FILENAME, load_card

    card = None
    if (Path(model_path).parent / CARD_FILENAME).is_file():
        try:
            card = load_card(Path(model_path).parent / CARD_FILENAME)
        except ModelCardError:
            card = None
    try:
        choice = resolve_device("edgetpu", model_path, card, runtime)
    except DeviceError as exc:
        raise MeasurementError(f"no Edge TPU: {exc}",
                               skipped=exc.reason == "not-compiled") from None
    return str(choice.model_path), choice.delegates


def _load_onnx(job: Job):
    """(runtime, interpreter, load ms, the export's TFLite source, agreement, refusal) for an
    ONNX export (edge_runtime.onnx_backends). A backend the runtime refuses (its agreement with
    the TFLite model missing or below the gate) is still timed, and the result says so."""
    from ..edge_runtime.onnx_backends import (OnnxBackendError, OnnxInterpreter,
                                              check_agreement, read_sidecar,
                                              select_onnx_runtime)

    try:
        sidecar = read_sidecar(job.model)
        runtime = select_onnx_runtime(job.runtime)
    except OnnxBackendError as exc:
        raise MeasurementError(str(exc)) from None
    agreement, refused = None, None
    try:
        agreement = check_agreement(sidecar, runtime.name)
    except OnnxBackendError as exc:
        refused = str(exc)
        record = (sidecar.get("agreement") or {}).get("runtimes", {}).get(runtime.name)
        agreement = float(record["verdict_agreement"]) if record else None
    started = time.perf_counter()
    try:
        interpreter = OnnxInterpreter(job.model, runtime.name, job.threads)
    except Exception as exc:  # the backend's own load errors
        raise MeasurementError(f"{runtime.name} cannot load the export: "
                               f"{str(exc).strip() or type(exc).__name__}") from None
    load_ms = (time.perf_counter() - started) * 1e3
    source = Path(job.model).parent / str(sidecar.get("source", ""))
    return runtime, interpreter, load_ms, source, agreement, refused


def measure(job: Job) -> dict:
    """Load the model as `job` says and time it; a dict ready for JSON."""
    from ..edge_runtime.interpreter import RuntimeNotFound, select_runtime

    model_format, agreement, refused = "tflite", None, None
    started = time.perf_counter()
    if job.model.lower().endswith(".onnx"):
        model_format = "onnx"
        runtime, interpreter, load_ms, spec_source, agreement, refused = _load_onnx(job)
        import_ms, baseline_rss, model_file = None, peak_rss_mb(), job.model
    else:
        try:
            runtime = select_runtime(job.runtime)
        except RuntimeNotFound as exc:
            raise MeasurementError(str(exc)) from None
        import_ms = (time.perf_counter() - started) * 1e3
        baseline_rss = peak_rss_mb()

        model_file, delegates = job.model, None
        if job.target == "edgetpu":
            model_file, delegates = edgetpu_setup(runtime, job.model)
        xnnpack = True if job.xnnpack is None else job.xnnpack
        started = time.perf_counter()
        try:
            interpreter = runtime.interpreter(model_file, num_threads=job.threads,
                                              delegates=delegates, xnnpack=xnnpack)
            interpreter.allocate_tensors()
        except (ValueError, RuntimeError, TypeError, AttributeError) as exc:
            raise _explain_load_error(exc, job) from None
        load_ms = (time.perf_counter() - started) * 1e3
        spec_source = model_file

    inputs = interpreter.get_input_details()
    outputs = interpreter.get_output_details()
    if len(inputs) != 1 or len(inputs[0]["shape"]) != 4:
        raise MeasurementError("covid-edge benchmarks models with one image input [1,H,W,C]")
    # A covid-edge model may also output its pooled features (for the OOD guard): time the
    # same invoke, but read the probability, the one-value output.
    in_detail = inputs[0]
    out_detail = next((d for d in outputs if int(np.prod(d["shape"])) == 1), outputs[0])
    spec, variant = spec_for(spec_source, in_detail["shape"])

    def prepare(path) -> np.ndarray:
        pixels = load_pixels(path, spec)
        return quantize_for(to_model_input(pixels, spec)[np.newaxis], in_detail)

    if job.images:
        sample = prepare(job.images[0])
        input_source = job.images[0]
    else:
        # No image at hand: latency does not depend on the values, so noise is a fair input.
        rng = np.random.default_rng(0)
        noise = rng.uniform(-1.0, 1.0, size=(1, spec.height, spec.width, spec.channels))
        sample = quantize_for(noise.astype(np.float32), in_detail)
        input_source = "random"

    interpreter.set_tensor(in_detail["index"], sample)
    started = time.perf_counter()
    # The first call also packs weights for XNNPACK and plans memory: a cold start cost.
    interpreter.invoke()
    first_invoke_ms = (time.perf_counter() - started) * 1e3

    inference = time_calls(lambda _: interpreter.invoke(), job.runs, job.warmup)

    end_to_end = None
    if job.end_to_end and job.images:
        images = job.images

        def classify_file(i):
            interpreter.set_tensor(in_detail["index"], prepare(images[i % len(images)]))
            interpreter.invoke()
            return dequantize(interpreter.get_tensor(out_detail["index"]), out_detail)

        end_to_end = time_calls(classify_file, job.runs, job.warmup)

    return {
        "model": job.label,
        "path": str(model_file),
        "variant": variant,
        "format": model_format,
        "runtime": runtime.name,
        "runtime_version": runtime.version,
        "target": job.target,
        "xnnpack": job.xnnpack if job.target == "cpu" and model_format == "tflite" else None,
        # ONNX exports: the backend's recorded verdict agreement with the TFLite model, and
        # why the runtime refuses to answer with it (None: it may be used).
        "agreement": agreement,
        "refused": refused,
        "threads": job.threads,
        "status": "ok",
        "input_shape": [int(v) for v in in_detail["shape"]],
        "input_dtype": np.dtype(in_detail["dtype"]).name,
        "input": input_source,
        "runtime_import_ms": import_ms,
        "load_ms": load_ms,
        "first_invoke_ms": first_invoke_ms,
        "inference": {**summarize(inference), "samples_ms": inference},
        "end_to_end": ({**summarize(end_to_end), "samples_ms": end_to_end}
                       if end_to_end is not None else None),
        "memory": {"baseline_rss_mb": baseline_rss, "peak_rss_mb": peak_rss_mb()},
        "tensorflow_imported": "tensorflow" in sys.modules,
    }


def probe_edgetpu(runtime_name: str) -> dict:
    """Whether the Edge TPU delegate loads with this runtime, and the runtime's version."""
    from ..edge_runtime.devices import DeviceError, load_edgetpu_delegate
    from ..edge_runtime.interpreter import RuntimeNotFound, select_runtime

    try:
        _, found = load_edgetpu_delegate(select_runtime(runtime_name))
    except (DeviceError, RuntimeNotFound) as exc:
        return {"edgetpu": False, "reason": f"no Edge TPU: {exc}"}
    return {"edgetpu": True, "library": found.to_dict()}


def compare(results: list[dict], models: list[dict], reference_goal: float = 1.10,
            float_goal: float = 2.0, lungs_goal: float = 0.5) -> list[dict]:
    """Our int8 p50 over the reference's and our float32's over int8's, in the same run,
    configuration by configuration (runtime, target, XNNPACK, threads)."""
    ok = [r for r in results if r.get("status") == "ok"]
    by_key = {(r["model"], r["runtime"], r["target"], r["xnnpack"], r["threads"]): r for r in ok}
    reference = next((m for m in models if m.get("role") == "reference"), None)
    comparisons = []
    for model in models:
        if model.get("variant") != "int8" or model.get("role") != "ours":
            continue
        float32 = next((m for m in models if m.get("role") == "ours"
                        and m.get("variant") == "float32"
                        and m.get("card_dir") == model.get("card_dir")), None)
        for r in ok:
            if r["model"] != model["label"]:
                continue
            key = (r["runtime"], r["target"], r["xnnpack"], r["threads"])
            row = {"model": model["label"], "runtime": r["runtime"], "target": r["target"],
                   "xnnpack": r["xnnpack"], "threads": r["threads"],
                   "int8_p50_ms": r["inference"]["p50_ms"]}
            ref = by_key.get((reference["label"], *key)) if reference else None
            if ref is not None:
                ratio = r["inference"]["p50_ms"] / ref["inference"]["p50_ms"]
                same_input = r["input_shape"][1:3] == ref["input_shape"][1:3]
                row["reference"] = {
                    "model": reference["label"],
                    "p50_ms": ref["inference"]["p50_ms"],
                    "ratio": ratio,
                    # Fastest runs: less swayed by other programs on a busy machine.
                    "ratio_of_min": r["inference"]["min_ms"] / ref["inference"]["min_ms"],
                    "goal": f"<= {reference_goal:.2f} at 1 thread",
                    "comparable": same_input,
                    "met": (ratio <= reference_goal) if same_input and r["threads"] == 1
                    else None,
                }
            f32 = by_key.get((float32["label"], *key)) if float32 else None
            if f32 is not None:
                speedup = f32["inference"]["p50_ms"] / r["inference"]["p50_ms"]
                row["float32"] = {
                    "model": float32["label"],
                    "p50_ms": f32["inference"]["p50_ms"],
                    "speedup": speedup,
                    "speedup_of_min": f32["inference"]["min_ms"] / r["inference"]["min_ms"],
                    "goal": f">= {float_goal:.1f}x at 1 thread",
                    "met": (speedup >= float_goal) if r["threads"] == 1 else None,
                }
            lungs = next((m for m in models if m.get("role") == "lungs"
                          and m.get("card_dir") == model.get("card_dir")), None)
            lung = by_key.get((lungs["label"], *key)) if lungs else None
            if lung is not None:
                # The lung model runs before the classifier on every image (guard, crop).
                ratio = lung["inference"]["p50_ms"] / r["inference"]["p50_ms"]
                row["lungs"] = {
                    "model": lungs["label"], "p50_ms": lung["inference"]["p50_ms"],
                    "ratio": ratio,
                    "ratio_of_min": lung["inference"]["min_ms"] / r["inference"]["min_ms"],
                    "goal": f"<= {lungs_goal:.2f} of the classifier's at 1 thread",
                    "met": (ratio <= lungs_goal) if r["threads"] == 1 else None,
                }
            if "reference" in row or "float32" in row or "lungs" in row:
                comparisons.append(row)
    return comparisons


def goal_summary(comparisons: list[dict]) -> list[dict]:
    """The goals judged where they are set: 1 thread, the default XNNPACK configuration."""
    summary = []
    for c in comparisons:
        if c["threads"] != 1 or c["xnnpack"] is False:
            continue
        ref, f32, lungs = c.get("reference") or {}, c.get("float32") or {}, c.get("lungs") or {}
        summary.append({
            "model": c["model"], "runtime": c["runtime"], "target": c["target"],
            "xnnpack": c["xnnpack"],
            "int8_over_reference": ref.get("ratio"), "reference_goal_met": ref.get("met"),
            "reference_comparable": ref.get("comparable"),
            "int8_over_reference_of_min": ref.get("ratio_of_min"),
            "float32_over_int8": f32.get("speedup"), "float32_goal_met": f32.get("met"),
            "float32_over_int8_of_min": f32.get("speedup_of_min"),
            "lungs_over_int8": lungs.get("ratio"), "lungs_goal_met": lungs.get("met"),
            "lungs_over_int8_of_min": lungs.get("ratio_of_min"),
        })
    return summary
