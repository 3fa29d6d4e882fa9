"""The guard's feature check, scored several ways on the tuning sets only.

    python scripts/guard_score_compare.py            # the released int8 model's features

The feature check refuses a picture whose pooled features lie far from the training X-rays'.
This compares one probabilistic-PCA model of all training features (what `convert` fits by
default; release 0.3.0's guard) with one per label (`convert --ood-per-label`), for several
numbers of components, training subsets and thresholds (quantiles of every validation
film's distance, as `convert` sets them). For each it prints how many pictures of each
not-frontal tuning set the whole guard refuses (image checks and the lung check first, as
`classify` runs them, then the feature check) and how many validation frontal films the
feature check refuses besides those, and how many of the non-X-ray tuning images `convert`
tunes on the feature check refuses. Only tuning sets are read: ../shared/data/not-frontal-chest,
the classifier's validation split and the non-X-ray tuning images; never the test split.
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lung_guard_eval import SHARED, SPLIT, folder_paths  # noqa: E402

from covid_edge.convert.ood_fit import fit_each, tuning_features  # noqa: E402
from covid_edge.edge_runtime.classifier import Classifier  # noqa: E402
from covid_edge.image_io import read_image  # noqa: E402

QUANTILES = (0.995, 0.997, 0.998, 0.999)
NOT_FRONTAL = ("lateral", "ct", "knee")


def measure(classifier: Classifier, path: Path) -> tuple[bool, np.ndarray]:
    """(refused before inference, as `classify` refuses; the pooled features)"""
    decoded = read_image(path, target_size=(classifier.spec.width, classifier.spec.height),
                         high_bit_depth=classifier.spec.high_bit_window)
    pixels, lung = classifier.pixels_from_gray(decoded.gray)
    reason, _ = classifier.refusal_before_inference(pixels, decoded.colourfulness,
                                                    decoded.size, lung=lung)
    return bool(reason), classifier.run(classifier.prepare_input(pixels)).features


def features_of(classifier, paths, label) -> tuple[np.ndarray, np.ndarray]:
    print(f"{label}: {len(paths)} images", file=sys.stderr, flush=True)
    measured = [measure(classifier, p) for p in paths]
    return np.array([m[0] for m in measured]), np.stack([m[1] for m in measured])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=None,
                        help="a model folder or .tflite file (default: the released model)")
    parser.add_argument("--components", type=int, nargs="+", default=[16, 32, 64, 128])
    args = parser.parse_args()
    classifier = Classifier.load(args.model)
    if classifier.lungs is None or classifier.guard is None:
        print("needs the guard and the lung model", file=sys.stderr)
        return 1

    rows = _split_rows()  # in split.csv's order, so that a seeded subsample is convert's
    train = [path for path, part, _ in rows if part == "train"]
    _, train_features = features_of(classifier, train, "training features")
    train_labels = np.array([label for _, part, label in rows if part == "train"])
    val_refused, val_features = features_of(
        classifier, [path for path, part, _ in rows if part == "val"], "validation")
    sets = {name: features_of(classifier, folder_paths(SHARED / "not-frontal-chest" / name),
                              name) for name in NOT_FRONTAL}
    # The non-X-ray tuning images `convert` chooses the components on, as it draws them: the
    # ones that pass the image checks are what the feature check alone has to catch.
    with tempfile.TemporaryDirectory() as scratch:
        _, photos = tuning_features(classifier, classifier.guard.checks,
                                    Path(scratch) / "tuning")
    print(f"validation frontal films: {len(val_refused)}, refused before the feature check "
          f"{int(val_refused.sum())}")
    for name, (refused, _) in sets.items():
        print(f"{name}: {len(refused)}, refused before the feature check {int(refused.sum())}")
    print(f"non-X-ray tuning images that pass the image checks: {len(photos)}")
    print("\ncells: refused by the whole guard, " + ", ".join(
        f"{n} of {len(sets[n][0])}" for n in NOT_FRONTAL)
        + "; val: validation films the feature check refuses besides; photos: non-X-ray "
        "tuning images the feature check refuses")
    print("| model | training images | components | " + " | ".join(
        f"quantile {q}" for q in QUANTILES) + " |")
    print("|---|---|---:|" + "---|" * len(QUANTILES))
    n = len(train)
    subsets = [("2000, seed 0", 2000, 0)] + [(f"{size}, seed {seed}", size, seed)
                                             for size in (2000, 4000) for seed in (1, 2)
                                             ] + [("all", n, 0)]
    for per_label in (False, True):
        for subset_name, size, seed in subsets:
            chosen = np.sort(np.random.default_rng(seed).permutation(n)[:size])
            fitted = fit_each(train_features[chosen], args.components,
                              train_labels[chosen] if per_label else None)
            for stats in fitted:
                # The threshold as `convert` sets it: a quantile of every validation film's
                # distance, the ones that the checks before it refuse included.
                val_distances = stats.distance(val_features)
                cells = []
                for q in QUANTILES:
                    threshold = np.quantile(val_distances, q, method="higher")
                    counts = [int(refused.sum() + (stats.distance(f[~refused]) > threshold).sum())
                              for refused, f in sets.values()]
                    refused_too = (val_distances > threshold) & ~val_refused
                    caught = int((stats.distance(photos) > threshold).sum())
                    cells.append(",".join(map(str, counts)) + f"; val {int(refused_too.sum())}"
                                 f"; photos {caught}")
                print(f"| {'per label' if per_label else 'all labels'} | {subset_name} | "
                      f"{stats.component_count} | " + " | ".join(cells) + " |")
    return 0


def _split_rows() -> list[tuple[Path, str, str]]:
    """(path, split part, label) of every image of the classifier's split, in its order."""
    with open(SPLIT, newline="", encoding="utf-8") as handle:
        return [(SHARED / row.get("root", "cxr") / row["path"], row["split"], row["label"])
                for row in csv.DictReader(handle)]


if __name__ == "__main__":
    sys.exit(main())
