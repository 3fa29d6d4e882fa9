"""Which model variant is fastest on this host: every variant invoked in turn, in one process.

    python scripts/variant_latency.py [--model DIR] [--reference FILE] [--threads 1,2]
                                      [--rounds 200]

`covid-edge bench latency` measures each configuration in its own process, one after the
other; on a shared or throttling machine the speed drifts between them and the ratios with
it. Here the interpreters are loaded side by side and invoked round-robin (A B C A B C ...),
so every variant sees the same machine, and the ratios to int8 hold even when the absolute
times do not. Prints p50 and the ratio of each variant to the int8 model per thread count,
with the CPU line of `bench latency` (the int8 fast path is what decides the ranking). The
lung model beside the classifier (lungs/) is timed too: issue 11 asks it to take at most half
the int8 classifier's time at 1 thread.
Measures; asserts nothing.
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

from covid_edge.benchmarks.cpu_features import cpu_features, summary  # noqa: E402
from covid_edge.benchmarks.device_info import cpu_model, usable_cores  # noqa: E402
from covid_edge.edge_runtime.interpreter import select_runtime  # noqa: E402
from covid_edge.edge_runtime.lungs import LUNG_CARD_FILENAME, load_lung_card  # noqa: E402
from covid_edge.edge_runtime.onnx_backends import (ONNX_RUNTIMES, OnnxBackendError,  # noqa: E402
                                                   OnnxInterpreter, check_agreement, installed,
                                                   read_sidecar)
from covid_edge.model_card import load_card, released_models_dir  # noqa: E402


def variants(model_dir: Path, references: list[Path]) -> dict[str, Path]:
    card = load_card(model_dir / "model_card.json")
    found = {}
    for name, entry in card["variants"].items():
        path = model_dir / entry["file"]
        if path.is_file():
            found[name] = path
    if (model_dir / "lungs" / LUNG_CARD_FILENAME).is_file():
        found["lungs"] = load_lung_card(model_dir / "lungs")[1]
    for reference in references:
        found[reference.name] = reference
    return found


def random_input(detail: dict, rng) -> np.ndarray:
    dtype = np.dtype(detail["dtype"])
    if dtype == np.float32:
        return rng.uniform(-1, 1, detail["shape"]).astype(np.float32)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max + 1, detail["shape"]).astype(dtype)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="folder with model_card.json (default: "
                                                   "the released models)")
    parser.add_argument("--reference", type=Path, action="append", default=[],
                        help="another .tflite to compare (repeatable), e.g. "
                        "../shared/reference/mobilenet_v2_1.0_224_quant.tflite")
    parser.add_argument("--onnx", type=Path, help="the int8 model's ONNX export (covid-edge "
                        "export-onnx); default: covid-edge-int8.onnx beside the models, if "
                        "there. Each installed backend whose agreement was checked is added.")
    parser.add_argument("--include-unchecked", action="store_true",
                        help="also time ONNX backends whose agreement is missing or too low "
                             "(speed only: the runtime refuses to answer with them)")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=10)
    args = parser.parse_args()

    runtime = select_runtime()
    model_dir = args.model or released_models_dir()
    files = variants(model_dir, args.reference)
    width = max(20, *(len(name) for name in files))
    onnx = args.onnx or model_dir / "covid-edge-int8.onnx"
    if onnx.is_file():
        sidecar = read_sidecar(onnx)
        for backend in ONNX_RUNTIMES:
            if not installed(backend):
                continue
            try:
                check_agreement(sidecar, backend)
            except OnnxBackendError as exc:
                if not args.include_unchecked:
                    print(f"skipping {backend}: {exc}")
                    continue
                print(f"timing {backend} for speed only, refused for use: {exc}")
                files[f"int8 ONNX, {backend} (refused)"] = (onnx, backend)
                continue
            files[f"int8 ONNX, {backend}"] = (onnx, backend)
    rng = np.random.default_rng(0)
    print(f"host: {cpu_model()}, {usable_cores()} usable cores; "
          f"{summary(cpu_features())}")
    print(f"runtime {runtime.label}, XNNPACK (ONNX rows: their backend); {args.rounds} round-robin rounds after "
          f"{args.warmup} warm-up; p50 of invoke() in ms; ratio = variant / int8 "
          "(same rounds)")
    print(f"{'threads':>7}  {'variant':<{width}} {'p50 ms':>8} {'ratio to int8':>14}")
    for threads in [int(t) for t in args.threads.split(",")]:
        loaded = {}
        for name, path in files.items():
            if isinstance(path, tuple):  # (ONNX export, backend)
                interpreter = OnnxInterpreter(str(path[0]), path[1], threads)
            else:
                interpreter = runtime.interpreter(str(path), num_threads=threads)
            interpreter.allocate_tensors()
            detail = interpreter.get_input_details()[0]
            interpreter.set_tensor(detail["index"], random_input(detail, rng))
            loaded[name] = interpreter
        samples = {name: [] for name in loaded}
        for round_index in range(args.warmup + args.rounds):
            for name, interpreter in loaded.items():
                start = time.perf_counter()
                interpreter.invoke()
                if round_index >= args.warmup:
                    samples[name].append((time.perf_counter() - start) * 1000.0)
        int8 = samples.get("int8")
        for name, times in samples.items():
            ratio = "-"
            if int8:
                ratio = f"{statistics.median(np.divide(times, int8)):.2f}"
            print(f"{threads:>7}  {name:<{width}} {statistics.median(times):>8.2f} {ratio:>14}")
    print("float16 files hold float16 weights that XNNPACK expands to float32 at load: they run "
          "the float32 kernels.")


if __name__ == "__main__":
    main()
