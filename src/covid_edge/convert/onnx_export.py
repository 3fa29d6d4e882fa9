"""The int8 TFLite model as ONNX (QDQ), checked against the TFLite model before any use.

tf2onnx reads the .tflite file and writes the same int8 network with QuantizeLinear /
DequantizeLinear pairs around each operator, keeping the int8 input and outputs and their
tensor names. Beside it goes a sidecar (onnx_backends.sidecar_path): the input and output
tensors with the quantization read from the .tflite file (ONNX files do not carry it at the
graph's edges), the source file and its sha256, and the verdict agreement of every installed
backend with the TFLite model on labelled X-rays. The runtime runs the export only with a
backend whose agreement is recorded and at least onnx_backends.AGREEMENT_MIN.

Exporting needs TensorFlow (tf2onnx imports it): the [train] and [onnx] extras.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..edge_runtime.classifier import Classifier, Prepared, split_outputs
from ..edge_runtime.onnx_backends import (AGREEMENT_MIN, ONNX_RUNTIMES, OnnxInterpreter,
                                          installed, kernel_host, sidecar_path)
from ..model_card import sha256_file

OPSET = 17


class ExportError(Exception):
    """The export cannot be written; the message says why."""


def tensor_entries(details: list[dict]) -> list[dict]:
    return [{"name": d["name"], "dtype": np.dtype(d["dtype"]).name,
             "shape": [int(n) for n in d["shape"]],
             "quantization": [float(d["quantization"][0]), int(d["quantization"][1])]}
            for d in details]


def export_onnx(tflite_path: Path, out_path: Path, opset: int = OPSET) -> dict:
    """Write out_path and its sidecar (without agreement yet); returns the sidecar."""
    # TensorFlow's and tf2onnx's start-up chatter is not the user's to act on.
    from ..tf_quiet import quiet_tensorflow
    quiet_tensorflow()
    logging.getLogger("tf2onnx").setLevel(logging.WARNING)
    try:
        import tf2onnx
        logging.getLogger("tf2onnx").setLevel(logging.WARNING)
    except ImportError as exc:
        from .. import install_hint
        raise ExportError(f"exporting needs tf2onnx and TensorFlow (missing {exc.name}): "
                          f"{install_hint('onnx')}, and the train extra") from None
    from ..edge_runtime.interpreter import select_runtime
    interpreter = select_runtime().interpreter(str(tflite_path))
    interpreter.allocate_tensors()
    with tempfile.TemporaryDirectory() as scratch:
        written = Path(scratch) / out_path.name
        tf2onnx.convert.from_tflite(str(tflite_path), opset=opset, output_path=str(written))
        out_path.write_bytes(written.read_bytes())
    sidecar = {
        "format": "ONNX, int8 QDQ (tf2onnx from the int8 .tflite)",
        # relative to the export's folder: the model card lies beside the source
        "source": os.path.relpath(tflite_path.resolve(), out_path.resolve().parent),
        "source_sha256": sha256_file(tflite_path),
        "sha256": sha256_file(out_path),
        "exporter": f"tf2onnx {tf2onnx.__version__}",
        "opset": opset,
        "inputs": tensor_entries(interpreter.get_input_details()),
        "outputs": tensor_entries(interpreter.get_output_details()),
        "agreement": None,
    }
    write_sidecar(out_path, sidecar)
    return sidecar


def write_sidecar(onnx_path: Path, sidecar: dict) -> Path:
    path = sidecar_path(onnx_path)
    path.write_text(json.dumps(sidecar, indent=2) + "\n", encoding="utf-8")
    return path


@dataclass
class Agreement:
    images: int
    agreeing: int
    max_abs_dp: float
    flips: list[str]

    @property
    def fraction(self) -> float:
        return self.agreeing / self.images if self.images else 0.0


def measure_agreement(tflite: Classifier, onnx_path: Path, backend: str,
                      images: list[Path], threads: int | None = None) -> Agreement:
    """Verdicts of the export on `backend` against the TFLite model's, image by image (the
    guard is not involved: the same input tensor goes to both)."""
    session = OnnxInterpreter(str(onnx_path), backend, threads)
    output, _ = split_outputs(session.get_output_details(), tflite.scheme)
    scale, zero_point = output["quantization"]
    agreeing, worst, flips, counted = 0, 0.0, [], 0
    for path in images:
        prepared = tflite.prepare_file(path)
        if not isinstance(prepared, Prepared):
            continue  # unreadable: the TFLite model has no verdict either
        expected = tflite.run(prepared.input_tensor).probabilities
        session.set_tensor(session.get_input_details()[0]["index"], prepared.input_tensor)
        session.invoke()
        raw = session.get_tensor(output["index"]).reshape(-1).astype(np.float64)
        got = tflite.scheme.probabilities((raw - zero_point) * scale if scale else raw)
        counted += 1
        worst = max(worst, float(np.max(np.abs(got - expected))))
        if tflite.verdict(got) == tflite.verdict(expected):
            agreeing += 1
        else:
            flips.append(str(path))
    return Agreement(counted, agreeing, worst, flips)


def record_agreement(onnx_path: Path, sidecar: dict, results: dict[str, Agreement],
                     data: str) -> dict:
    sidecar["agreement"] = {
        "data": data,
        "minimum": AGREEMENT_MIN,
        # Where it was measured: the runtime trusts it only on a host with the same kernels.
        "host": kernel_host(),
        "runtimes": {name: {"images": r.images, "verdict_agreement": round(r.fraction, 6),
                            "max_abs_dp": round(r.max_abs_dp, 6), "flips": r.flips[:20]}
                     for name, r in results.items()},
    }
    write_sidecar(onnx_path, sidecar)
    return sidecar


def installed_backends() -> list[str]:
    return [name for name in ONNX_RUNTIMES if installed(name)]
