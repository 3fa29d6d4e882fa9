"""Raw int8 outputs of the bundled samples under each kernel set of the installed runtime.

    python scripts/int8_kernels.py [--models DIR]     # JSON on stdout

The model card's reference outputs come from one implementation of int8 arithmetic (LiteRT's
XNNPACK on x86-64). The op resolvers of the same runtime give others: the builtin optimized
kernels and the plain reference kernels, each with its own rounding. How far they drift apart
on these samples shows how much of a difference on another device is rounding, not a fault.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "src"))

from covid_edge.edge_runtime.classifier import Classifier  # noqa: E402
from covid_edge.model_card import load_card  # noqa: E402
from covid_edge.preprocess import load_pixels  # noqa: E402

# resolver name in the runtime -> what it runs
RESOLVERS = {"AUTO": "default (XNNPACK)",
             "BUILTIN_WITHOUT_DEFAULT_DELEGATES": "builtin optimized kernels",
             "BUILTIN_REF": "reference kernels"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=Path, default=REPO_ROOT / "models")
    args = parser.parse_args()
    card = load_card(args.models / "model_card.json")
    reference = card["reference_outputs"]
    model = args.models / card["variants"][reference["variant"]]["file"]
    classifier = Classifier.load(model, num_threads=1)
    module = classifier.runtime.module
    resolvers = getattr(module, "OpResolverType", None) or module.experimental.OpResolverType
    inputs = {Path(image["file"]).name: classifier.prepare_input(
        load_pixels(args.models / image["file"], classifier.spec))
        for image in reference["images"]}
    kernels = {}
    for name, label in RESOLVERS.items():
        interpreter = module.Interpreter(model_path=str(model), num_threads=1,
                                         experimental_op_resolver_type=getattr(resolvers, name))
        interpreter.allocate_tensors()
        index = interpreter.get_input_details()[0]["index"]
        output = next(o["index"] for o in interpreter.get_output_details()
                      if int(o["shape"][-1]) == 1)
        raw = {}
        for file, tensor in inputs.items():
            interpreter.set_tensor(index, tensor)
            interpreter.invoke()
            raw[file] = int(interpreter.get_tensor(output).reshape(-1)[0])
        kernels[name] = {"kernels": label, "raw": raw}
    print(json.dumps({"runtime": classifier.runtime.label,
                      "card_raw": {Path(i["file"]).name: i["raw_output"]
                                   for i in reference["images"]},
                      "resolvers": kernels}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
