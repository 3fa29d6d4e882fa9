"""Where the int8 model's disagreement with float32 comes from: the backbone or the last layer.

    python scripts/int8_head_probe.py [--model DIR] [--part val] [--json OUT]

The int8 model has two outputs: its class probabilities (int8, after an int8 dense layer and
an int8 softmax) and its pooled 1280 features (the dense layer's input). For every image of a
split part this runs the float32 and int8 TFLite files (LiteRT, guard off, as `convert`
compares them) and scores three readouts against the float32 verdicts:

- int8 as shipped: the model's own int8 probabilities;
- int8 features, the int8 file's dense layer in float: the same weights (dequantized), but the
  logits and the softmax in float64, so no rounding after the features;
- int8 features, float32's dense layer: also the layer's weights unrounded.

If the two float readouts agree with float32 much more often than the shipped output does,
the rounding after the features is where the flips come from, and a runtime could do that
last layer itself. If not, the flips come from the backbone. Measures, asserts nothing; use
the validation split (the default) for any choice.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "src"))

from covid_edge import dataset  # noqa: E402
from covid_edge.convert.train_cli import progress  # noqa: E402
from covid_edge.edge_runtime.classifier import Classifier  # noqa: E402
from covid_edge.edge_runtime.explain import final_layer  # noqa: E402
from covid_edge.intervals import wilson  # noqa: E402
from covid_edge.preprocess import load_pixels  # noqa: E402


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def outputs(classifier: Classifier, paths: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities (n, N), features (n, F)) as the model gives them."""
    probabilities, features = [], []
    for path in progress(paths, f"running {classifier.variant}"):
        inference = classifier.run(classifier.prepare_input(load_pixels(path, classifier.spec)))
        probabilities.append(inference.probabilities)
        features.append(inference.features)
    return np.array(probabilities), np.array(features, dtype=np.float64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=REPO_ROOT / "models")
    parser.add_argument("--data", type=Path, default=REPO_ROOT.parent / "shared" / "data",
                        help="folder holding the data roots split.csv names")
    parser.add_argument("--part", choices=("val", "test"), default="val")
    parser.add_argument("--limit", type=int, help="the first N images only (a quick look)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    card = json.loads((args.model / "model_card.json").read_text())
    items, _, split = dataset.read_split(args.model / "training" / "split.csv")
    chosen = [item for item, part in zip(items, split) if part == args.part][:args.limit]
    data_dirs = {root: args.data / root for root in {item.root for item in chosen}}
    paths = [dataset.item_path(data_dirs, item) for item in chosen]
    float_model = Classifier.load(args.model / card["variants"]["float32"]["file"], guard=False)
    int8_model = Classifier.load(args.model / card["variants"]["int8"]["file"], guard=False)
    scheme, threshold = int8_model.scheme, card["threshold"]
    int8_layer, float_layer = final_layer(int8_model), final_layer(float_model)
    if int8_layer is None or float_layer is None:
        sys.exit("the models' last layer cannot be read (no feature output?)")

    p_float, _ = outputs(float_model, paths)
    p_int8, f_int8 = outputs(int8_model, paths)
    readouts = {
        "int8 as shipped": p_int8,
        "int8 features, int8 dense layer in float": softmax(
            np.array([int8_layer.logits(f) for f in f_int8])),
        "int8 features, float32 dense layer": softmax(
            np.array([float_layer.logits(f) for f in f_int8])),
    }
    v_float = scheme.verdict_indices(p_float, threshold)
    print(f"{len(paths)} {args.part} images; threshold {threshold:.4f}; flips against float32:")
    figures = {}
    for name, probabilities in readouts.items():
        flips = int((scheme.verdict_indices(probabilities, threshold) != v_float).sum())
        low, high = wilson(len(paths) - flips, len(paths))
        moved = np.abs(probabilities - p_float).max(axis=1)
        figures[name] = {"flips": flips, "agreement": 1 - flips / len(paths),
                         "median_abs_p_change": float(np.median(moved)),
                         "p99_abs_p_change": float(np.percentile(moved, 99))}
        print(f"  {name:<42} {flips:4d} flips, agreement {1 - flips / len(paths):.4f} "
              f"({low:.4f}-{high:.4f}); |P change| median {np.median(moved):.4f}, "
              f"p99 {np.percentile(moved, 99):.4f}")
    if args.json:
        args.json.write_text(json.dumps({"part": args.part, "images": len(paths),
                                         "readouts": figures}, indent=1) + "\n")


if __name__ == "__main__":
    main()
