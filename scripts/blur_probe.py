"""Would blurring the model's input make its verdicts steadier under re-encoding?

A probe with the released model as it is (no retraining), on validation images only.

    python scripts/blur_probe.py [--model DIR] [--per-cell 40] [--sigmas 0,0.5,0.75,1,1.5]
                                 [--data cxr=../shared/data/cxr --data cxr-more=...]

The release's verdicts flip under JPEG re-encoding, resampling and noise far more often than
the release issue allows (docs/bench/0.3.0/shift). JPEG's 8x8 blocks and a resample chain's
aliasing are fine detail; a Gaussian blur of the model-size picture, before the model, would
take most of it away for every way an image arrives. This measures whether that is worth a
preprocessing option (and a model trained on it): for each sigma, the verdict flips under five
of the shift suite's perturbations and the covid-vs-rest ROC AUC, on up to --per-cell
validation images per hospital and label of the model's training/split.csv. The original and
its perturbed copies go through covid-edge's own decode (benchmarks.scoring.decode), the blur
is applied to the model-size pixels, and the guard is off. Measures, asserts nothing.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "src"))

from covid_edge import dataset  # noqa: E402
from covid_edge.benchmarks import perturbations  # noqa: E402
from covid_edge.benchmarks.scoring import decode  # noqa: E402
from covid_edge.edge_runtime.classifier import Classifier  # noqa: E402
from covid_edge.image_io import read_image  # noqa: E402
from covid_edge.metrics import roc_auc  # noqa: E402
from covid_edge.model_card import released_models_dir  # noqa: E402

PERTURBATIONS = ("jpeg-q75", "jpeg-q50", "noise-3", "resample-chain", "camera-capture")
SHARED = REPO_ROOT.parent / "shared" / "data"
DEFAULT_DATA = {"cxr": SHARED / "cxr", "cxr-more": SHARED / "cxr-more"}


def validation_images(split_csv: Path, per_cell: int, seed: int) -> list[dataset.Item]:
    items, _, parts = dataset.read_split(split_csv)
    cells: dict[tuple[str, str], list] = {}
    for item, part in zip(items, parts):
        if part == "val":
            cells.setdefault((item.source, item.label), []).append(item)
    rng = np.random.default_rng(seed)
    chosen = []
    for key in sorted(cells):
        cell = cells[key]
        chosen += [cell[i] for i in rng.permutation(len(cell))[:per_cell]]
    return chosen


def verdict(classifier: Classifier, pixels: np.ndarray, sigma: float) -> tuple[str, float]:
    if sigma:
        pixels = np.asarray(Image.fromarray(pixels).filter(ImageFilter.GaussianBlur(sigma)))
    inference = classifier.run(classifier.prepare_input(pixels))
    return classifier.verdict(inference.probabilities), float(inference.positive)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None,
                        help="A converted model folder (default: the released model).")
    parser.add_argument("--per-cell", type=int, default=40)
    parser.add_argument("--sigmas", default="0,0.5,0.75,1,1.5")
    parser.add_argument("--data", action="append", default=[], metavar="ROOT=DIR")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    folder = args.model or released_models_dir()
    roots = {**DEFAULT_DATA, **dict(entry.split("=", 1) for entry in args.data)}
    sigmas = [float(value) for value in args.sigmas.split(",")]
    classifier = Classifier.load(folder, num_threads=2, guard=False)
    images = validation_images(Path(folder) / "training" / "split.csv", args.per_cell, args.seed)
    print(f"{len(images)} validation images, {args.per_cell} at most per hospital and label")

    verdicts = {sigma: {name: [] for name in ("original", *PERTURBATIONS)} for sigma in sigmas}
    for index, item in enumerate(images):
        path = Path(roots[item.root]) / item.path
        views = {"original": decode(classifier, path)[0]}
        upright = read_image(path, high_bit_depth=classifier.spec.high_bit_window).gray
        for name in PERTURBATIONS:
            perturbation = perturbations.BY_NAME[name]
            number = perturbations.CATALOGUE.index(perturbation)
            copy = perturbation.apply(upright, perturbations.generator(0, number, index))
            views[name] = decode(classifier, io.BytesIO(copy.data))[0]
        for sigma in sigmas:
            for name, pixels in views.items():
                verdicts[sigma][name].append(verdict(classifier, pixels, sigma))

    covid = np.array([item.label == classifier.positive_label for item in images])
    print("| blur sigma | covid-vs-rest ROC AUC | " + " | ".join(
        f"{name} flips" for name in PERTURBATIONS) + " |")
    print("|---:|---:|" + "---:|" * len(PERTURBATIONS))
    for sigma in sigmas:
        original = verdicts[sigma]["original"]
        auc = roc_auc(covid, np.array([p for _, p in original]))
        flips = [np.mean([a[0] != b[0] for a, b in zip(original, verdicts[sigma][name])])
                 for name in PERTURBATIONS]
        print(f"| {sigma:g} | {auc:.4f} | " + " | ".join(f"{rate:.1%}" for rate in flips) + " |")


if __name__ == "__main__":
    main()
