"""The release issue's targets against what the reports measured: one table, each figure with
its 95% interval, each target met or missed.

    python scripts/release_targets.py --models models \
        --sources docs/bench/0.3.0/sources/sources.json \
        --shift docs/bench/0.3.0/shift/shift.json \
        [--previous releases/0.2.0] [--latency-runs 300] [--markdown]

Every figure comes from the reports `covid-edge bench sources` and `covid-edge bench shift`
wrote and from the model card `covid-edge convert` wrote; nothing is typed in by hand. With
--previous, the int8 latency of this release and the previous one is measured here,
interleaved (1 thread, the same input), and reported as a ratio, with the host's CPU.
A target is met when the point estimate meets it; the interval says how sure that is.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from covid_edge.benchmarks.report_format import markdown_table  # noqa: E402
from covid_edge.model_card import report_mismatch  # noqa: E402

SHIFT_ENCODINGS = ("jpeg-q90", "jpeg-q75", "jpeg-q50", "resample-chain", "export-16bit-2048",
                   "dicom-12bit", "exif-rotated")


def interval(entry: dict | None, key: str = "rate") -> str:
    if not entry or entry.get(key) is None:
        return "n/a"
    return f"{entry[key]:.3f} ({entry['low']:.3f}-{entry['high']:.3f})"


def row(target: str, bound: str, entry: dict | None, key: str, met) -> list[str]:
    value = None if not entry else entry.get(key)
    verdict = "n/a" if value is None else ("met" if met(value) else "MISSED")
    return [target, bound, interval(entry, key), verdict]


def group(sources: dict, source: str, label: str) -> dict | None:
    return next((g for g in sources["groups"] if g["source"] == source and g["label"] == label),
                None)


def targets(card: dict, sources: dict, shift: dict) -> list[list[str]]:
    positive = card["positive_label"]
    rows = []
    own = next(s for s in sources["sources"]
               if s["source"] == "cxr" and s["mode"] == "guard_on")
    rows.append(row("cxr test split: covid-vs-rest ROC AUC", ">= 0.99", own["roc_auc"], "auc",
                    lambda v: v >= 0.99))
    rows.append(row("cxr test split: covid sensitivity at the threshold", ">= 0.95",
                    own["sensitivity"], "rate", lambda v: v >= 0.95))
    by_name = {p["name"]: p for p in shift["perturbations"]}
    for name in SHIFT_ENCODINGS:
        rows.append(row(f"shift {name}: verdict flips", "<= 0.01", by_name.get(name, {}).get(
            "flips"), "rate", lambda v: v <= 0.01))
    rows.append(row("shift camera-capture: verdict flips", "<= 0.03",
                    by_name.get("camera-capture", {}).get("flips"), "rate", lambda v: v <= 0.03))
    for source in ("nih", "kermany", "montgomery", "shenzhen", "jsrt"):
        entry = group(sources, source, "normal")
        rows.append(row(f"{source} normals called {positive}", "<= 0.05",
                        entry["guard_on"]["called"][positive] if entry else None, "rate",
                        lambda v: v <= 0.05))
    for source in ("nih", "kermany"):
        entry = group(sources, source, "pneumonia")
        rows.append(row(f"{source} pneumonia called {positive}", "<= 0.10",
                        entry["guard_on"]["called"][positive] if entry else None, "rate",
                        lambda v: v <= 0.10))
    for source, bound in (("nih", 0.80), ("kermany", 0.95)):
        entry = group(sources, source, "pneumonia")
        rows.append(row(f"within {source}: pneumonia vs normal ROC AUC", f">= {bound}",
                        entry.get("roc_auc_against_source_negatives") if entry else None, "auc",
                        lambda v, b=bound: v >= b))
    int8 = card["variants"]["int8"]
    agreement = int8["versus_float32"]["agreement"]
    rows.append(["int8 vs float32 verdict agreement (test split)", ">= 0.995",
                 f"{agreement:.4f} ({len(int8['versus_float32']['flipped'])} flips)",
                 "met" if agreement >= 0.995 else "MISSED"])
    size = int8["bytes"] / 1e6
    rows.append(["int8 file size", "<= 3 MB", f"{size:.2f} MB", "met" if size <= 3 else "MISSED"])
    return rows


def latency_ratio(models: Path, previous: Path, runs: int) -> tuple[float, str]:
    """Median invoke time of this release's int8 model over the previous one's, interleaved
    so that load on the machine hits both alike; 1 thread."""
    from covid_edge.benchmarks.cpu_features import cpu_features, summary
    from covid_edge.edge_runtime.classifier import Classifier

    loaded = [Classifier.load(folder, num_threads=1, guard=False) for folder in (models,
                                                                                   previous)]
    inputs = [c.prepare_input(np.full((c.spec.height, c.spec.width), 128, np.uint8))
              for c in loaded]
    times: list[list[float]] = [[], []]
    for index in range(runs + 20):
        for which, (classifier, tensor) in enumerate(zip(loaded, inputs)):
            classifier.interpreter.set_tensor(classifier.input_details["index"], tensor)
            start = time.perf_counter()
            classifier.interpreter.invoke()
            if index >= 20:  # the first calls allocate and pack weights
                times[which].append(time.perf_counter() - start)
    ratio = float(np.median(times[0]) / np.median(times[1]))
    return ratio, summary(cpu_features())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=ROOT / "models")
    parser.add_argument("--sources", type=Path, required=True)
    parser.add_argument("--shift", type=Path, required=True)
    parser.add_argument("--previous", type=Path, help="the previous release's models folder")
    parser.add_argument("--latency-runs", type=int, default=300)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    card = json.loads((args.models / "model_card.json").read_text())
    sources = json.loads(args.sources.read_text())
    shift = json.loads(args.shift.read_text())
    for report in (sources, shift):
        mismatch = report_mismatch(report["model"], card)
        if mismatch:
            sys.exit(f"{report['command']}: {mismatch}")
    rows = targets(card, sources, shift)
    if args.previous:
        ratio, host = latency_ratio(args.models, args.previous, args.latency_runs)
        rows.append([f"int8 latency / previous release's (1 thread, {host})", "<= 1.10",
                     f"{ratio:.3f}", "met" if ratio <= 1.10 else "MISSED"])
    header = ("target", "bound", "measured (95% interval)", "")
    if args.markdown:
        print(markdown_table(header, rows))
    else:
        width = max(len(r[0]) for r in rows)
        for r in [list(header)] + rows:
            print(f"{r[0]:<{width}}  {r[1]:>8}  {r[2]:>26}  {r[3]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
