"""Coarse-to-fine occlusion maps against the full maps, on held-out test X-rays.

    python scripts/explain_coarse_check.py [--model DIR] [--per-class 10] [--budget 80]
                                           [--threads 1] [--seed 0]

Draws --per-class random test images of each label from the model's split.csv (never used
for training or tuning), computes each image's full map (explain.explain_pixels, 170
inferences at 224 px) and its coarse-to-fine map (explain_coarse, at most --budget), and
prints, per image and in summary, the Pearson correlation of the two heatmaps, the
inferences each took and the time. The goal (issue 16): <= 80 inferences with maps that
correlate >= 0.9 with the full maps. Measures; asserts nothing.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))
CXR = REPO.parent / "shared" / "data" / "cxr"

from covid_edge.dataset import LABELS, read_split  # noqa: E402
from covid_edge.edge_runtime.classifier import Classifier  # noqa: E402
from covid_edge.edge_runtime.explain import explain_pixels  # noqa: E402
from covid_edge.edge_runtime.explain_coarse import explain_pixels_coarse  # noqa: E402
from covid_edge.model_card import released_models_dir  # noqa: E402
from covid_edge.preprocess import load_pixels  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path)
    parser.add_argument("--per-class", type=int, default=10)
    parser.add_argument("--budget", type=int, default=80)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    model_dir = args.model or released_models_dir()
    classifier = Classifier.load(model_dir, num_threads=args.threads)
    items, _, split = read_split(model_dir / "training" / "split.csv")
    rng = random.Random(args.seed)
    chosen = []
    for label in LABELS:
        test = sorted(item.path for item, part in zip(items, split)
                      if part == "test" and item.label == label)
        chosen += [(label, path) for path in rng.sample(test, min(args.per_class, len(test)))]

    print(f"{'label':<7} {'r':>6} {'full inf':>8} {'coarse inf':>10} {'full ms':>8} "
          f"{'coarse ms':>9}  image")
    correlations, full_ms, coarse_ms, spent = [], [], [], []
    for label, path in chosen:
        pixels = load_pixels(CXR / path, classifier.spec)
        full = explain_pixels(classifier, pixels)
        coarse = explain_pixels_coarse(classifier, pixels, budget=args.budget)
        r = float(np.corrcoef(full.heatmap.ravel(), coarse.heatmap.ravel())[0, 1])
        correlations.append(r)
        full_ms.append(full.elapsed_ms)
        coarse_ms.append(coarse.elapsed_ms)
        spent.append(coarse.inferences)
        print(f"{label:<7} {r:>6.3f} {full.inferences:>8} {coarse.inferences:>10} "
              f"{full.elapsed_ms:>8.0f} {coarse.elapsed_ms:>9.0f}  {path}")
    median = statistics.median(correlations)
    print(f"\n{len(chosen)} test X-rays ({args.per_class} per label, seed {args.seed}), "
          f"{classifier.runtime.label}, {args.threads} thread(s):")
    print(f"  correlation with the full map: median {median:.3f}, min {min(correlations):.3f}, "
          f"{sum(r >= 0.9 for r in correlations)}/{len(correlations)} >= 0.9")
    print(f"  inferences: {max(spent)} at most (full: {full.inferences}); time: median "
          f"{statistics.median(coarse_ms):.0f} ms against {statistics.median(full_ms):.0f} ms "
          f"({statistics.median(np.divide(coarse_ms, full_ms)):.2f}x, same run)")
    met = max(spent) <= 80 and min(correlations) >= 0.9
    print(f"  goal (<= 80 inferences, every map r >= 0.9): {'met' if met else 'MISSED'}")


if __name__ == "__main__":
    main()
