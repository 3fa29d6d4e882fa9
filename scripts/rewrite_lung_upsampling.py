"""Rewrite the released lung model's upsamplings as ops XNNPACK runs, checked bit for bit.

    python scripts/rewrite_lung_upsampling.py [--lungs models/lungs] [--images DIR ...]
                                              [--dry-run]

`covid-edge convert-lungs` now writes every nearest 2x upsampling of the U-Net as
CONCATENATION + DEPTH_TO_SPACE instead of Keras' RESHAPE/TILE chain (convert/upsample_ops.py:
XNNPACK has no TILE, so the lung model ran as 9 delegate partitions). The lung model released
before that change has no Keras file here to convert again; this applies the same rewrite to
the .tflite itself. Nothing is replaced unless the rewritten model gives the same raw int8
output, every pixel, as the original on every image of --images (default: the 1,943 X-rays of
../shared/data/lungs, the lateral/CT/knee images of ../shared/data/not-frontal-chest and the
bundled samples), through covid-edge's own decode and preprocessing, with the XNNPACK delegate
and with the builtin kernels. Then the lung card's sha256, size and op list are updated and
the rewrite is recorded under conversion.graph_rewrites; the weights, the card's metrics and
its reference outputs stay what they were. Needs the [train] extra (the TFLite schema).
Exit codes: 0 rewritten (or nothing to rewrite), 1 an output differed (nothing written),
2 bad arguments.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "src"))

from covid_edge.benchmarks.lungs_check import raw_output  # noqa: E402
from covid_edge.convert import quantize, upsample_ops  # noqa: E402
from covid_edge.convert.lungs_convert import UPSAMPLING_REWRITE  # noqa: E402
from covid_edge.edge_runtime.interpreter import select_runtime  # noqa: E402
from covid_edge.edge_runtime.lungs import LUNG_CARD_FILENAME, LungSegmenter  # noqa: E402
from covid_edge.formats import IMAGE_SUFFIXES  # noqa: E402
from covid_edge.model_card import sha256_file  # noqa: E402
from covid_edge.progress import progress_bar  # noqa: E402

SHARED = REPO_ROOT.parent / "shared" / "data"
DEFAULT_IMAGES = (SHARED / "lungs" / "images", SHARED / "not-frontal-chest",
                  REPO_ROOT / "models" / "samples")
KERNELS = {"XNNPACK": True, "builtin kernels": False}


def images_in(folders) -> list[Path]:
    return sorted(p for folder in folders for p in Path(folder).rglob("*")
                  if p.suffix.lower() in IMAGE_SUFFIXES)


def segmenter(model_path: Path, card: dict, xnnpack: bool) -> LungSegmenter:
    runtime = select_runtime()
    interpreter = runtime.interpreter(str(model_path), num_threads=1, xnnpack=xnnpack)
    interpreter.allocate_tensors()
    return LungSegmenter(interpreter, runtime, card, model_path)


def op_names(model_path: Path) -> list[str]:
    interpreter = select_runtime().interpreter(str(model_path), num_threads=1, xnnpack=False)
    interpreter.allocate_tensors()
    return quantize.op_names(interpreter)


def differing_images(original: Path, rewritten: Path, card: dict, images: list[Path]) -> dict:
    differing = {}
    for kernels, xnnpack in KERNELS.items():
        before, after = segmenter(original, card, xnnpack), segmenter(rewritten, card, xnnpack)
        count = 0
        with progress_bar(len(images), f"comparing outputs ({kernels})") as bar:
            for path in images:
                count += not np.array_equal(raw_output(before, path), raw_output(after, path))
                bar.update(1)
        differing[kernels] = count
    return differing


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 2)[2])
    parser.add_argument("--lungs", type=Path, default=REPO_ROOT / "models" / "lungs",
                        help="the lung model folder (lung_model_card.json + the .tflite)")
    parser.add_argument("--images", type=Path, action="append",
                        help="a folder of images to compare outputs on (repeatable)")
    parser.add_argument("--dry-run", action="store_true",
                        help="compare and report, write nothing")
    args = parser.parse_args(argv)
    card_path = args.lungs / LUNG_CARD_FILENAME
    if not card_path.is_file():
        parser.error(f"{card_path}: no lung model card")
    folders = args.images or [folder for folder in DEFAULT_IMAGES if folder.is_dir()]
    images = images_in(folders)
    if not images:
        parser.error("no images to compare outputs on (pass --images DIR)")
    card = json.loads(card_path.read_text(encoding="utf-8"))
    model_path = args.lungs / card["file"]

    rewritten, replaced = upsample_ops.rewrite(model_path.read_bytes())
    if not replaced:
        print(f"{model_path}: no RESHAPE/TILE upsampling to rewrite; left as it is")
        return 0
    with tempfile.TemporaryDirectory(dir=args.lungs) as tmp:
        candidate = Path(tmp) / card["file"]
        candidate.write_bytes(rewritten)
        differing = differing_images(model_path, candidate, card, images)
        new_ops = op_names(candidate)
        print(f"{replaced} upsamplings rewritten; {len(images)} images from "
              f"{', '.join(str(f) for f in folders)}")
        for kernels, count in differing.items():
            print(f"  {kernels}: {count} of {len(images)} images with any differing output value")
        print(f"  ops: {', '.join(new_ops)}")
        print(f"  size: {model_path.stat().st_size} -> {len(rewritten)} bytes")
        if any(differing.values()):
            print("outputs differ: nothing written", file=sys.stderr)
            return 1
        if args.dry_run:
            return 0
        old_sha = card["sha256"]
        os.replace(candidate, model_path)
    card.update({"sha256": sha256_file(model_path), "size_bytes": model_path.stat().st_size,
                 "ops": new_ops})
    card.setdefault("conversion", {})["graph_rewrites"] = {UPSAMPLING_REWRITE: replaced}
    card["conversion"]["rewritten_after_conversion"] = {
        "from_sha256": old_sha,
        "command": "python scripts/rewrite_lung_upsampling.py",
        "outputs_identical_on_images": len(images),
        "kernels_compared": list(KERNELS),
    }
    card_path.write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {model_path} and {card_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
