"""Compare training runs on their VALIDATION images, source by source: the figures a choice
between settings (lung crop or full image, invariance on or off) may be made on.

    python scripts/compare_runs.py runs/pilot-full runs/pilot-crop [--split val] [--json]
        [--card A/model_card.json --card B/model_card.json] [--decide]

Reads each run's predictions.csv (per-class probabilities, split, source) and run.json
(labels, threshold). Per source and label: images, how often each verdict is given; pooled:
covid sensitivity, covid-vs-rest ROC AUC, N-class accuracy. The test split is refused unless
--split test is asked for explicitly: choosing on it would spend the held-out data.

--decide applies the rule of docs/bench/0.3.0/crop-vs-full.md, written before the crop model's
results: the candidate (the second run) replaces the first if its mean share of non-covid
images called covid, over the source/label cells, is lower, while its covid-vs-rest ROC AUC is
at most 0.005 below the first's and its covid sensitivity at least 0.95.
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


AUC_MARGIN = 0.005
MIN_SENSITIVITY = 0.95


def false_positive_share(result: dict, positive: str) -> float:
    """Mean over the source/label cells that are not the positive class of the share called
    positive: each hospital and finding counts once, whatever its size."""
    cells = [row[f"called {positive}"] for key, row in result["by_source"].items()
             if key.split("/")[1] != positive]
    return float(np.mean(cells))


def decide(first: dict, candidate: dict, positive: str = "covid") -> dict:
    auc, sensitivity = f"{positive}-vs-rest ROC AUC", f"{positive} sensitivity"
    shares = [false_positive_share(result, positive) for result in (first, candidate)]
    conditions = {
        "auc_within_margin": candidate[auc] >= first[auc] - AUC_MARGIN,
        "sensitivity_reached": candidate[sensitivity] >= MIN_SENSITIVITY,
    }
    return {"false_positive_share": shares, "conditions": conditions,
            "choose": candidate["run"] if shares[1] < shares[0] and all(conditions.values())
            else first["run"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--split", default="val", choices=["train", "val", "test"])
    parser.add_argument("--card", type=Path, action="append", default=[],
                        help="use this model card's threshold (e.g. models/model_card.json after "
                        "convert --target-sensitivity); once for every run, in their order")
    parser.add_argument("--decide", action="store_true",
                        help="choose between two runs by the rule in docs/bench/0.3.0/"
                        "crop-vs-full.md (the second is the candidate)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.card and len(args.card) != len(args.runs):
        parser.error(f"--card given {len(args.card)} times for {len(args.runs)} runs")
    if args.decide and len(args.runs) != 2:
        parser.error("--decide compares exactly two runs: the current one, then the candidate")
    for run in args.runs:
        missing = [name for name in ("run.json", "predictions.csv") if not (run / name).is_file()]
        if missing:
            parser.error(f"{run} has no {' or '.join(missing)}: give run folders that "
                         "`covid-edge train` or `covid-edge average` finished writing")
    for card in args.card:
        if not card.is_file():
            parser.error(f"--card {card}: no such file")
    cards = args.card or [None] * len(args.runs)
    results = [summarise(run, args.split, card) for run, card in zip(args.runs, cards)]
    decision = decide(*results) if args.decide else None
    if args.json:
        print(json.dumps({"runs": results, "decision": decision} if decision else results,
                         indent=2))
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
    # The crop rule's figure, for every run: a run may be judged against recorded bounds.
    print(f"{'mean share called covid':<28}"
          + "".join(f"{false_positive_share(r, 'covid'):>22.4f}" for r in results))
    if decision:
        print("conditions for the candidate: " + ", ".join(
            f"{name} {'yes' if held else 'NO'}" for name, held in decision["conditions"].items()))
        print(f"choose: {decision['choose']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
