"""Compare training runs on their VALIDATION images, source by source: the figures a choice
between settings (lung crop or full image, invariance on or off) may be made on.

    python scripts/compare_runs.py runs/pilot-full runs/pilot-crop [--split val] [--json]

Reads each run's predictions.csv (per-class probabilities, split, source) and run.json
(labels, threshold). Per source and label: images, how often each verdict is given; pooled:
covid sensitivity, covid-vs-rest ROC AUC, N-class accuracy. The test split is refused unless
--split test is asked for explicitly: choosing on it would spend the held-out data.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from covid_edge.classes import ClassScheme  # noqa: E402
from covid_edge.metrics import roc_auc  # noqa: E402


def load(run_dir: Path, split: str, card: Path | None = None
         ) -> tuple[ClassScheme, float, list[dict], np.ndarray]:
    """card: a model card whose threshold replaces training's (convert --target-sensitivity)."""
    run = json.loads((run_dir / "run.json").read_text())
    if card is not None:
        run["threshold"] = json.loads(card.read_text())["threshold"]
    scheme = ClassScheme.from_card(run)
    with open(run_dir / "predictions.csv", newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["split"] == split]
    if scheme.output_kind == "softmax":
        probs = np.array([[float(row[f"p_{label}"]) for label in scheme.labels] for row in rows])
    else:
        probs = scheme.probabilities(np.array([[float(row["probability"])] for row in rows]))
    return scheme, float(run["threshold"]), rows, probs


def summarise(run_dir: Path, split: str, card: Path | None = None) -> dict:
    scheme, threshold, rows, probs = load(run_dir, split, card)
    # predictions.csv holds 6 decimals: the threshold (one of the validation probabilities)
    # must not fall above its own rounded value.
    verdicts = np.array(scheme.labels)[scheme.verdict_indices(probs, threshold - 5e-7)]
    labels = np.array([row["label"] for row in rows])
    sources = np.array([row.get("source") or "all" for row in rows])
    positive = scheme.positive
    table = {}
    for source in sorted(set(sources)):
        for label in scheme.labels:
            chosen = (sources == source) & (labels == label)
            if chosen.any():
                table[f"{source}/{label}"] = {
                    "n": int(chosen.sum()),
                    **{f"called {v}": float(np.mean(verdicts[chosen] == v))
                       for v in scheme.labels}}
    is_positive = labels == positive
    return {
        "run": str(run_dir), "split": split, "threshold": threshold, "images": len(rows),
        f"{positive} sensitivity": float(np.mean(verdicts[is_positive] == positive)),
        f"{positive}-vs-rest ROC AUC": roc_auc(is_positive, probs[:, scheme.positive_index]),
        "class accuracy": float(np.mean(verdicts == labels)),
        "by_source": table,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--split", default="val", choices=["train", "val", "test"])
    parser.add_argument("--card", type=Path, help="use this model card's threshold (e.g. "
                        "models/model_card.json after convert --target-sensitivity)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = [summarise(run, args.split, args.card) for run in args.runs]
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    keys = sorted({key for result in results for key in result["by_source"]})
    names = [Path(result["run"]).name for result in results]
    print(f"{args.split} split, threshold " + ", ".join(f"{r['threshold']:.4f}" for r in results)
          + "; per source/label: share called covid | called its own label")
    print(f"{'':<28}" + "".join(f"{name:>22}" for name in names))
    for headline in [k for k in results[0] if k.endswith(("sensitivity", "AUC", "accuracy"))]:
        print(f"{headline:<28}" + "".join(f"{r[headline]:>22.4f}" for r in results))
    for key in keys:
        cells = []
        for result in results:
            row = result["by_source"].get(key)
            own = key.split("/")[1]
            cells.append("-" if row is None else
                         f"{row['called covid']:.3f} | {row['called ' + own]:.3f} (n={row['n']})")
        print(f"{key:<28}" + "".join(f"{cell:>22}" for cell in cells))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
