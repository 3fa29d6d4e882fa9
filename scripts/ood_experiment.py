"""Compare feature-distance choices for the out-of-distribution guard on a converted model.

Runs the int8 model of MODELS_DIR (which `covid-edge convert` wrote, with training/split.csv)
once over a training subsample, the validation and test splits and the non-X-ray set, then
prints, for several numbers of principal components and scores, the test acceptance and the
non-X-ray rejection at the validation-quantile threshold `convert` would use.

It looks at the evaluation set, so it is for understanding a converted model, not for choosing
its settings: the first release's guard (32 components) was chosen with it and then missed one
evaluation image. `covid-edge convert` now chooses the number of components on a separate tuning
set (convert/non_xray.build_tuning) and this script must not feed back into that choice.

    PYTHONPATH=src python scripts/ood_experiment.py models --data ../shared/data/cxr \
        --non-xray ../shared/reference/photos
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from covid_edge import dataset
from covid_edge.convert import non_xray
from covid_edge.convert.ood_fit import collect, fit, with_threshold
from covid_edge.edge_runtime.classifier import Classifier
from covid_edge.edge_runtime.guard import ImageChecks
from covid_edge.image_io import ImageReadError, read_image
from covid_edge.preprocess import resize_gray


def features_of_files(model, paths):
    rows, kept = [], []
    for path in paths:
        try:
            decoded = read_image(path, (model.spec.width, model.spec.height))
        except ImageReadError:
            continue
        pixels = resize_gray(decoded.gray, model.spec)
        features = model.run(model.prepare_input(pixels)).features
        rows.append(features)
        kept.append((path, ImageChecks().reason(pixels, decoded.colourfulness, decoded.size)))
    return np.stack(rows), kept


def scores(stats, features, kind):
    # One model for all labels (ood_fit.fit without labels): its one group.
    x = np.asarray(features, dtype=np.float64) - stats.mean[0]
    z = x @ stats.components[0].T
    mahalanobis = (z ** 2 / stats.variances[0]).sum(axis=-1)
    residual = np.maximum((x ** 2).sum(axis=-1) - (z ** 2).sum(axis=-1), 0)
    return {"ppca": mahalanobis + residual / stats.residual_variance[0],
            "mahalanobis": mahalanobis, "residual": residual}[kind]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models_dir", type=Path)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--non-xray", action="append", default=[])
    parser.add_argument("--train-images", type=int, default=2000)
    parser.add_argument("--quantile", type=float, default=0.995)
    args = parser.parse_args()

    model = Classifier.load(args.models_dir, guard=False)
    items, _, split = dataset.read_split(args.models_dir / "training" / "split.csv")
    parts = {name: [i for i, s in zip(items, split) if s == name] for name in dataset.SPLITS}
    rng = np.random.default_rng(0)
    train = [parts["train"][i] for i in sorted(rng.permutation(len(parts["train"]))
                                               [:args.train_images])]
    quiet = lambda values, label: values  # noqa: E731
    _, f_train = collect(model, args.data, train, quiet, "train")
    _, f_val = collect(model, args.data, parts["val"], quiet, "val")
    _, f_test = collect(model, args.data, parts["test"], quiet, "test")
    with tempfile.TemporaryDirectory() as scratch:
        images = non_xray.build(scratch, args.non_xray)
        f_other, kept = features_of_files(model, [image.path for image in images])
    caught_by_checks = np.array([reason is not None for _, reason in kept])
    print(f"train {len(f_train)}, val {len(f_val)}, test {len(f_test)}, non-X-ray {len(kept)} "
          f"({caught_by_checks.sum()} caught by the image checks)")
    print(f"{'k':>4} {'score':<12} {'test acc':>9} {'non-X rej (features)':>21} "
          f"{'whole guard':>12}  missed")
    for k in (8, 16, 32, 64, 128):
        stats = fit(f_train, k)
        for kind in ("ppca", "mahalanobis", "residual"):
            threshold = np.quantile(scores(stats, f_val, kind), args.quantile, method="higher")
            test_ok = np.mean(scores(stats, f_test, kind) <= threshold)
            far = scores(stats, f_other, kind) > threshold
            whole = far | caught_by_checks
            missed = [Path(path).name for (path, _), w in zip(kept, whole) if not w]
            print(f"{k:>4} {kind:<12} {test_ok:>9.2%} {far.mean():>21.2%} {whole.mean():>12.2%}"
                  f"  {', '.join(missed[:8])}")
        del stats
    _ = with_threshold  # the same rule convert applies


if __name__ == "__main__":
    main()
