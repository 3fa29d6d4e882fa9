"""Raw int8 outputs of the bundled samples under each kernel set of the installed runtime.

    python scripts/int8_kernels.py [--models DIR]     # JSON on stdout

The model card's reference outputs come from one implementation of int8 arithmetic (LiteRT's
XNNPACK on the release host). The op resolvers of the same runtime give others: the builtin
optimized kernels and the plain reference kernels, each with its own rounding
(covid_edge.kernel_sets). How far they drift apart on these samples shows how much of a
difference on another device is rounding, not a fault; the card's tolerance is that spread
measured on the validation split (scripts/measure_tolerance.py).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "src"))

from covid_edge import kernel_sets  # noqa: E402
from covid_edge.edge_runtime.classifier import Classifier  # noqa: E402
from covid_edge.model_card import load_card  # noqa: E402


def _card_raw(values):
    values = [int(v) for v in values]
    return values[0] if len(values) == 1 else values


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=Path, default=REPO_ROOT / "models")
    args = parser.parse_args()
    card = load_card(args.models / "model_card.json")
    reference = card["reference_outputs"]
    model = args.models / card["variants"][reference["variant"]]["file"]
    classifier = Classifier.load(model, num_threads=1, guard=False)
    files = [image["file"] for image in reference["images"]]
    names = kernel_sets.available(classifier.runtime)
    raw = kernel_sets.raw_outputs(
        classifier, kernel_sets.images_of((args.models / file for file in files), classifier.spec), names)
    described = kernel_sets.describe(names)
    print(json.dumps({
        "runtime": classifier.runtime.label,
        "card_raw": {Path(i["file"]).name: i["raw_output"] for i in reference["images"]},
        "resolvers": {name: {"kernels": described[name],
                             "raw": {Path(file).name: _card_raw(raw[name][index])
                                     for index, file in enumerate(files)}}
                      for name in names}}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
