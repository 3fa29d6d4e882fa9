"""Measure a release's device-check tolerance and store it in its model card, without retraining.

    python scripts/measure_tolerance.py --models models               # prints, writes nothing
    python scripts/measure_tolerance.py --models models --write       # updates the card(s)

Runs the int8 model on the card's bundled samples and on the validation split of its
training/split.csv under every kernel set of the installed LiteRT (XNNPACK, builtin optimized,
reference: covid_edge.kernel_sets), and stores in reference_outputs: each sample's raw output
per kernel set, and the tolerance = the largest difference between two kernel sets on any
validation image, plus a 2-step noise floor. `covid-edge convert` does the same for a new
release. The test split is never read: the tolerance is chosen on what it is measured on.
The lung model beside it (models/lungs) gets the same treatment on the same X-rays: per-pixel
steps, and the lowest share of mask pixels two kernel sets agree on.

--images N takes N validation images (a seeded random draw) instead of all: the reference
kernels are slow (800 images took 12 minutes on the development machine, 2 shared cores).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from covid_edge import dataset, kernel_sets  # noqa: E402
from covid_edge.edge_runtime.classifier import Classifier  # noqa: E402
from covid_edge.model_card import CARD_FILENAME  # noqa: E402


def counted(images, total: int, every: int = 100):
    """Pass `images` on, saying on stderr how far it got (a long job, often logged)."""
    for index, image in enumerate(images, 1):
        yield image
        if index % every == 0 or index == total:
            print(f"kernel sets: {index}/{total} images", file=sys.stderr, flush=True)


def data_folders(card: dict, models_dir: Path, overrides: list[str]) -> dict | Path:
    """{root: folder} from the card's data.folders (paths relative to the repository, as
    convert recorded them), or --data ROOT=DIR."""
    folders = dict((card.get("data") or {}).get("folders") or {})
    for override in overrides:
        name, _, folder = override.partition("=")
        folders[name] = folder
    resolved = {}
    for name, folder in folders.items():
        path = Path(folder)
        if not path.is_absolute():
            path = ROOT / path
        if not path.is_dir():
            sys.exit(f"error: data folder {folder} ({name}) is not here; pass --data {name}=DIR")
        resolved[name] = path
    if not resolved:
        sys.exit("error: the card names no data folders; pass --data ROOT=DIR")
    return resolved


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog="\n\n".join(__doc__.split("\n\n")[1:]),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=Path, default=ROOT / "models")
    parser.add_argument("--images", type=int, default=0,
                        help="validation images to measure on (0: all of them)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", action="append", default=[], metavar="ROOT=DIR",
                        help="where a data root of split.csv is, if not where the card says")
    parser.add_argument("--which", choices=("both", "classifier", "lungs"), default="both",
                        help="the classifier's card, the lung model's (models/lungs), or both")
    parser.add_argument("--write", action="store_true", help="update model_card.json and "
                        "MODEL_CARD.md (else print the result only)")
    args = parser.parse_args()

    card_path = args.models / CARD_FILENAME
    card = json.loads(card_path.read_text(encoding="utf-8"))
    reference = card["reference_outputs"]
    items, _, split = dataset.read_split(args.models / "training" / "split.csv")
    val = [item for item, part in zip(items, split) if part == "val"]
    if args.images and args.images < len(val):
        chosen = np.sort(np.random.default_rng(args.seed).permutation(len(val))[:args.images])
        val = [val[i] for i in chosen]
    folders = data_folders(card, args.models, args.data)
    paths = [dataset.item_path(folders, item) for item in val]
    models = args.models.resolve()
    # As typed from the repository's root when the folder is in it (models, runs/...).
    shown = models.relative_to(ROOT).as_posix() if models.is_relative_to(ROOT) else str(models)
    command = (f"python scripts/measure_tolerance.py --models {shown}"
               + (f" --images {args.images} --seed {args.seed}" if args.images else ""))
    measured_on = (f"validation split of training/split.csv ({len(paths)} images"
                   + (f", a random draw with seed {args.seed}" if args.images else "") + ")")
    lung_dir = args.models / "lungs"
    if args.which in ("both", "lungs") and lung_dir.is_dir():
        from covid_edge.benchmarks import lungs_check
        from covid_edge.edge_runtime.lungs import LUNG_CARD_FILENAME

        measured = lungs_check.measure_tolerance(
            lung_dir, paths, progress=lambda images: counted(images, len(paths)))
        print(json.dumps({"lungs": measured}, indent=2))
        if args.write:
            print(lungs_check.store_tolerance(
                lung_dir, LUNG_CARD_FILENAME, measured,
                measured_on=f"{measured_on}, the classifier's X-rays",
                command=f"{command} --which lungs --write"), file=sys.stderr)
    if args.which == "lungs":
        return 0
    classifier = Classifier.load(args.models / card["variants"][reference["variant"]]["file"],
                                 num_threads=1, guard=False)
    kernel_sets.record(reference, args.models, classifier, paths, measured_on=measured_on,
                       command=f"{command} --which classifier --write",
                       progress=lambda images: counted(images, len(paths)))
    print(json.dumps({"tolerance": reference["tolerance"],
                      "samples": {image["file"]: image["raw_by_kernel_set"]
                                  for image in reference["images"]}}, indent=2))
    if args.write:
        from covid_edge.card_schema import validate
        from covid_edge.convert.card_markdown import write_markdown

        # The measurement takes many minutes; anything else written into the card meanwhile
        # (e.g. record_behaviour.py) is kept: only the reference outputs are replaced.
        card = json.loads(card_path.read_text(encoding="utf-8"))
        card["reference_outputs"] = reference
        validate(card)
        card_path.write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {card_path} and {write_markdown(card, args.models)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
