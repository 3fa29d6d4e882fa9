"""Why ONNX Runtime disagrees with the TFLite int8 model: its graph optimization levels.

    python scripts/onnx_levels.py [--onnx models/covid-edge-int8.onnx] [--every 40]
                                  [--rounds 40]

At the basic level (and with optimizations off) ONNX Runtime runs the export's QDQ graph as
written: dequantize, a float operator, quantize. At the extended level and above it fuses
those into int8 kernels (QLinearConv and friends). For each level: how many verdicts agree
with the TFLite int8 model on X-rays of ../shared/data/cxr (every --every-th covid and every
2 x --every-th normal image, the guard not involved: the same input tensor to both), the
largest probability difference, and the p50 of one inference at 1 thread next to LiteRT's in
the same loop. Measures; asserts nothing. Needs onnxruntime (the onnx extra) and an export
(`covid-edge export-onnx`).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "src"))
CXR = REPO_ROOT.parent / "shared" / "data" / "cxr"

from covid_edge.benchmarks.device_info import host_line  # noqa: E402
from covid_edge.edge_runtime.classifier import Classifier, Prepared, split_outputs  # noqa: E402
from covid_edge.edge_runtime.onnx_backends import read_sidecar  # noqa: E402
from covid_edge.intervals import wilson  # noqa: E402


def main() -> None:
    import onnxruntime as ort

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--onnx", type=Path, default=REPO_ROOT / "models" / "covid-edge-int8.onnx")
    parser.add_argument("--every", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args()

    sidecar = read_sidecar(args.onnx)
    classifier = Classifier.load(args.onnx.parent / sidecar["source"], num_threads=1)
    levels = {"all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
              "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
              "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
              "off": ort.GraphOptimizationLevel.ORT_DISABLE_ALL}
    sessions = {}
    for name, level in levels.items():
        options = ort.SessionOptions()
        options.graph_optimization_level = level
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        sessions[name] = ort.InferenceSession(str(args.onnx), options,
                                              providers=["CPUExecutionProvider"])
    details = [dict(d, index=i) for i, d in enumerate(sidecar["outputs"])]
    for detail in details:
        detail["shape"] = np.array(detail["shape"])
    output, _ = split_outputs(details, classifier.scheme)
    scale, zero_point = output["quantization"]
    input_name = sessions["all"].get_inputs()[0].name
    files = (sorted((CXR / "covid").glob("*"))[::args.every]
             + sorted((CXR / "normal").glob("*"))[::2 * args.every])
    agree = dict.fromkeys(sessions, 0)
    worst = dict.fromkeys(sessions, 0.0)
    count, tensor = 0, None
    for path in files:
        prepared = classifier.prepare_file(path)
        if not isinstance(prepared, Prepared):
            continue
        tensor, count = prepared.input_tensor, count + 1
        expected = classifier.run(tensor).probabilities
        for name, session in sessions.items():
            raw = session.run([output["name"]], {input_name: tensor})[0].reshape(-1)
            got = classifier.scheme.probabilities((raw.astype(np.float64) - zero_point) * scale)
            worst[name] = max(worst[name], float(np.max(np.abs(got - expected))))
            agree[name] += classifier.verdict(got) == classifier.verdict(expected)
    print(f"host: {host_line()}")
    print(f"onnxruntime {ort.__version__}, {args.onnx.name}; {count} X-rays; p50 of "
          f"{args.rounds} inferences at 1 thread, LiteRT's in the same loop")
    for name, session in sessions.items():
        ours, litert = [], []
        for _ in range(args.rounds):
            start = time.perf_counter()
            session.run([output["name"]], {input_name: tensor})
            ours.append((time.perf_counter() - start) * 1000.0)
            start = time.perf_counter()
            classifier.run(tensor)
            litert.append((time.perf_counter() - start) * 1000.0)
        low, high = wilson(agree[name], count)
        print(f"  {name:<9} verdicts agree {agree[name]}/{count} "
              f"({agree[name] / count:.2%}, 95% Wilson {low:.2%}-{high:.2%}), max |dp| "
              f"{worst[name]:.3f}; p50 "
              f"{statistics.median(ours):.1f} ms, LiteRT {statistics.median(litert):.1f} ms")


if __name__ == "__main__":
    main()
