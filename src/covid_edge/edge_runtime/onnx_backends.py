"""Running the int8 model's ONNX export (QDQ) with ONNX Runtime or OpenVINO, when installed.

On x86 CPUs without VNNI, LiteRT's int8 kernels are no faster than its float32 ones, while
OpenVINO runs the same int8 network faster on some hosts (issue 16 measured 0.69x LiteRT's
time on an AVX2-only EPYC). `covid-edge export-onnx` writes the export
(covid-edge-int8.onnx) and, beside it, covid-edge-int8.onnx.json: the tensors' names, types
and quantization (copied from the .tflite file the export came from), and how often each
installed backend's verdicts agree with the TFLite int8 model on labelled X-rays. A backend
is used only when that agreement is recorded and at least AGREEMENT_MIN: an export that
computes something else must not answer quietly.

The wrapper speaks the subset of the TFLite Interpreter API that Classifier uses
(get_input_details, get_output_details, set_tensor, invoke, get_tensor, allocate_tensors),
so the rest of the runtime does not know the difference. Neither backend is a base
dependency: the onnx extra.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ONNX_RUNTIMES = ("onnxruntime", "openvino")
SIDECAR_SUFFIX = ".json"  # covid-edge-int8.onnx -> covid-edge-int8.onnx.json
AGREEMENT_MIN = 0.995
# export-onnx refuses to replace an export without --force; the advice to export again says so.
EXPORT_AGAIN = "`covid-edge export-onnx --force`"


class OnnxBackendError(Exception):
    """The export cannot be run here; the message says why and what to do."""


def sidecar_path(onnx_path: str | Path) -> Path:
    onnx_path = Path(onnx_path)
    return onnx_path.with_name(onnx_path.name + SIDECAR_SUFFIX)


def read_sidecar(onnx_path: str | Path) -> dict:
    path = sidecar_path(onnx_path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise OnnxBackendError(f"{path.name} is missing beside {Path(onnx_path).name}: run "
                               f"{EXPORT_AGAIN} to write the export again with it") from None
    except (OSError, ValueError) as exc:
        raise OnnxBackendError(f"{path}: unreadable ({exc}); run {EXPORT_AGAIN} to write "
                               "the export again") from None


def installed(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


@dataclass(frozen=True)
class OnnxRuntime:
    """Stands where interpreter.Runtime stands for a .tflite file."""

    name: str
    version: str

    @property
    def label(self) -> str:
        return f"{self.name} {self.version} (ONNX)"

    def interpreter(self, model_path: str, num_threads: int | None = None,
                    delegates: list | None = None, xnnpack: bool = True):
        if delegates:
            raise OnnxBackendError("delegates (the Edge TPU) apply to .tflite files only")
        return OnnxInterpreter(model_path, self.name, num_threads)


def select_onnx_runtime(name: str | None) -> OnnxRuntime:
    """The named backend, or the first installed (OpenVINO first: it was the faster one)."""
    names = [name] if name else ["openvino", "onnxruntime"]
    for candidate in names:
        if candidate not in ONNX_RUNTIMES:
            raise OnnxBackendError(f"{candidate} does not run ONNX files; use "
                                   f"--runtime {' or '.join(ONNX_RUNTIMES)}")
        if installed(candidate):
            module = importlib.import_module(candidate)
            return OnnxRuntime(candidate, str(getattr(module, "__version__", "unknown")))
    from .. import install_hint
    raise OnnxBackendError(
        f"no ONNX backend installed ({' or '.join(names)}): {install_hint('onnx')}")


def kernel_host(features: dict | None = None) -> dict:
    """What decides how a backend computes int8 here: the instruction set and the int8 and
    float kernel paths its flags allow (benchmarks.cpu_features)."""
    from ..benchmarks.cpu_features import cpu_features

    features = cpu_features() if features is None else features
    return {key: features.get(key) for key in ("isa", "int8_kernels", "float_kernels")}


def check_agreement(sidecar: dict, runtime_name: str, host: dict | None = None) -> float:
    """The backend's recorded verdict agreement with the TFLite model; raises when it is
    missing, below AGREEMENT_MIN, or was measured on a host whose kernels differ from this
    one's (`host`, default: this machine's kernel_host()).

    The host matters: the backends pick int8 kernels by instruction set, and they do not all
    compute alike. Release 0.3.0's export agreed with the TFLite model on 94.50% of 400 test
    verdicts under ONNX Runtime on an AVX2 host without VNNI, and on 100% on an AVX-512 VNNI
    host (docs/speed.md)."""
    agreement = sidecar.get("agreement") or {}
    record = agreement.get("runtimes", {}).get(runtime_name)
    if record is None:
        raise OnnxBackendError(
            f"the export's agreement with the TFLite model was not checked with {runtime_name}: "
            f"run {EXPORT_AGAIN} again with it installed")
    value = float(record["verdict_agreement"])
    if value < AGREEMENT_MIN:
        raise OnnxBackendError(
            f"{runtime_name} agrees with the TFLite int8 model on only {value:.2%} of verdicts "
            f"(needs {AGREEMENT_MIN:.1%}); use the .tflite file")
    checked_on = agreement.get("host")
    here = kernel_host() if host is None else host
    if checked_on != here:
        where = ("an unrecorded host (an export written before hosts were recorded)"
                 if checked_on is None else
                 f"a host with {checked_on.get('int8_kernels')} int8 kernels")
        raise OnnxBackendError(
            f"the export's agreement was checked on {where}; this host has "
            f"{here.get('int8_kernels')} int8 kernels, where {runtime_name} may compute "
            f"differently: run {EXPORT_AGAIN} on this host to check it here")
    return value


class OnnxInterpreter:
    """The TFLite Interpreter calls Classifier makes, on an ONNX session."""

    def __init__(self, model_path: str, backend: str, num_threads: int | None = None):
        self.sidecar = read_sidecar(model_path)
        self._inputs = [dict(d, index=i) for i, d in enumerate(self.sidecar["inputs"])]
        self._outputs = [dict(d, index=len(self._inputs) + i)
                         for i, d in enumerate(self.sidecar["outputs"])]
        self._values: dict[int, np.ndarray] = {}
        self.backend = backend
        if backend == "onnxruntime":
            import onnxruntime
            options = onnxruntime.SessionOptions()
            # Images come one at a time here: idle worker threads that spin between runs only
            # take the core from the rest of the pipeline (decoding, the guard, the lung model).
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            if num_threads:
                options.intra_op_num_threads = num_threads
                options.inter_op_num_threads = 1
            self._session = onnxruntime.InferenceSession(
                str(model_path), options, providers=["CPUExecutionProvider"])
            self._run = self._run_onnxruntime
        elif backend == "openvino":
            import openvino
            config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY"}
            if num_threads:
                config["INFERENCE_NUM_THREADS"] = num_threads
            compiled = openvino.Core().compile_model(str(model_path), "CPU", config)
            self._request = compiled.create_infer_request()
            self._run = self._run_openvino
        else:
            raise OnnxBackendError(f"unknown ONNX backend {backend!r}")

    @staticmethod
    def _details(entry: dict) -> dict:
        return {"name": entry["name"], "index": entry["index"],
                "shape": np.array(entry["shape"], dtype=np.int32),
                "dtype": np.dtype(entry["dtype"]).type,
                "quantization": tuple(entry["quantization"])}

    def allocate_tensors(self) -> None:
        pass

    def get_input_details(self) -> list[dict]:
        return [self._details(d) for d in self._inputs]

    def get_output_details(self) -> list[dict]:
        return [self._details(d) for d in self._outputs]

    def set_tensor(self, index: int, value: np.ndarray) -> None:
        self._values[index] = np.ascontiguousarray(value)

    def get_tensor(self, index: int) -> np.ndarray:
        return self._values[index]

    def invoke(self) -> None:
        for entry, value in zip(self._outputs, self._run()):
            self._values[entry["index"]] = value

    def _run_onnxruntime(self) -> list[np.ndarray]:
        feeds = {d["name"]: self._values[d["index"]] for d in self._inputs}
        return self._session.run([d["name"] for d in self._outputs], feeds)

    def _run_openvino(self) -> list[np.ndarray]:
        results = self._request.infer({i: self._values[d["index"]]
                                       for i, d in enumerate(self._inputs)})
        by_name = {}
        for port, value in results.items():
            for name in port.get_names():
                by_name[name] = np.asarray(value)
        return [by_name[d["name"]] for d in self._outputs]


def load_onnx(cls, model_path: Path, runtime: str | None, num_threads: int | None,
              guard: bool):
    """Classifier.load for an ONNX export: its card is the one of the .tflite file it was
    exported from; refused unless the chosen backend's agreement was checked."""
    from ..model_card import card_for_model
    sidecar = read_sidecar(model_path)
    chosen = select_onnx_runtime(runtime)
    check_agreement(sidecar, chosen.name)
    card, variant = card_for_model(model_path.parent / sidecar["source"])
    interpreter = chosen.interpreter(str(model_path), num_threads=num_threads)
    return cls(interpreter, chosen, card, variant, model_path, num_threads, None, guard)
