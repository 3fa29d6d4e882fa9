"""Where the int8 model's verdicts differ from the float32 model's, and how close to a decision
boundary those images lie (issue 17: int8 agreement >= 99.5% was missed).

    python scripts/int8_flips.py [--model DIR] [--data ../shared/data] [--part val] [--json OUT]

Runs the shipped float32 and int8 TFLite files (LiteRT, guard off, the model's own
probabilities before calibration, as `convert` compares them) on the test split that
models/training/split.csv names (`--part val`: the validation split, for choosing a
conversion setting without the test split). For every image it takes the margin of the float32 model's
verdict: for a covid verdict or a near miss, |P(covid) - threshold|; below the threshold, the
gap between the two likeliest other classes. Margins are counted in steps of the int8
output's quantization scale and set against the card's kernel tolerance (the most that
LiteRT's own int8 kernel sets differ on validation images). Prints the flips by kind, their
margins, and how many images of the split lie as close to a boundary: measures, asserts
nothing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "src"))

from covid_edge import dataset  # noqa: E402
# The loop `convert` compares its variants with; importing it loads no TensorFlow.
from covid_edge.convert.convert import evaluate  # noqa: E402
from covid_edge.convert.train_cli import progress  # noqa: E402
from covid_edge.edge_runtime.classifier import Classifier  # noqa: E402
from covid_edge.intervals import wilson  # noqa: E402


def margins(probs: np.ndarray, threshold: float, positive: int) -> np.ndarray:
    """The float model's distance from the boundary its verdict sits behind."""
    to_threshold = np.abs(probs[:, positive] - threshold)
    others = np.delete(probs, positive, axis=1)
    ordered = np.sort(others, axis=1)
    between_others = (ordered[:, -1] - ordered[:, -2] if others.shape[1] > 1
                      else np.full(len(probs), np.inf))
    below = probs[:, positive] < threshold
    return np.where(below, np.minimum(to_threshold, between_others), to_threshold)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=REPO_ROOT / "models")
    parser.add_argument("--data", type=Path, default=REPO_ROOT.parent / "shared" / "data",
                        help="folder holding cxr/ and cxr-more/ (split.csv's roots)")
    parser.add_argument("--part", choices=("test", "val"), default="test",
                        help="the split part to compare on (default: test)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    card = json.loads((args.model / "model_card.json").read_text())
    items, _, split = dataset.read_split(args.model / "training" / "split.csv")
    test = [item for item, part in zip(items, split) if part == args.part]
    roots = {item.root for item in test}
    data_dirs = {root: args.data / root for root in roots}
    float_model = Classifier.load(args.model / card["variants"]["float32"]["file"], guard=False)
    int8_model = Classifier.load(args.model / card["variants"]["int8"]["file"], guard=False)
    scheme, threshold = int8_model.scheme, card["threshold"]
    scale = float(int8_model.output_details["quantization"][0])
    tolerance = card.get("reference_outputs", {}).get("tolerance", {}).get("raw_output_steps")

    p_float = evaluate(float_model, data_dirs, test, progress)
    p_int8 = evaluate(int8_model, data_dirs, test, progress)
    v_float = scheme.verdict_indices(p_float, threshold)
    v_int8 = scheme.verdict_indices(p_int8, threshold)
    flipped = v_float != v_int8
    steps = margins(p_float, threshold, scheme.positive_index) / scale
    moved = np.max(np.abs(p_int8 - p_float), axis=1) / scale

    labels = scheme.labels
    kinds: dict[str, int] = {}
    for a, b in zip(v_float[flipped], v_int8[flipped]):
        kind = f"{labels[a]} -> {labels[b]}"
        kinds[kind] = kinds.get(kind, 0) + 1
    print(f"{len(test)} {args.part} images; threshold {threshold:.4f} on the model's P("
          f"{labels[scheme.positive_index]}); int8 output step {scale:.5f}; kernel tolerance "
          f"{tolerance} steps (card)")
    low, high = wilson(int((~flipped).sum()), len(test))
    print(f"agreement {1 - flipped.mean():.4f} (95% Wilson {low:.4f}-{high:.4f}; "
          f"{flipped.sum()} flips): "
          + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items(), key=lambda kv: -kv[1])))
    if flipped.any():
        print(f"float32 margin of the flipped images, in int8 steps: median "
              f"{statistics.median(steps[flipped]):.1f}, max {steps[flipped].max():.1f}")
    print(f"largest change int8 made to any class's P, in steps: median "
          f"{statistics.median(moved):.1f} over all images"
          + (f", {statistics.median(moved[flipped]):.1f} over the flips" if flipped.any() else "")
          + f", p99 {np.percentile(moved, 99):.1f}, max {moved.max():.1f}")
    bands = sorted({2, 5, 10} | ({int(tolerance)} if tolerance else set()))
    for band in bands:
        near = steps <= band
        print(f"  within {band:>2} steps of a boundary: {near.sum():>4} images "
              f"({near.mean():.1%}), of which {flipped[near].sum()} flipped; flips beyond: "
              f"{flipped[~near].sum()}")
    if args.json:
        args.json.write_text(json.dumps({
            "part": args.part, "images": len(test), "flips": int(flipped.sum()), "kinds": kinds,
            "threshold": threshold, "step": scale, "tolerance_steps": tolerance,
            "flip_margins_steps": sorted(float(s) for s in steps[flipped]),
            "near": {str(b): int((steps <= b).sum()) for b in bands}}, indent=1) + "\n")


if __name__ == "__main__":
    main()
