"""Per-image cost of training's augmentation at the model's size, without and with the
invariance chain (covid_edge.convert.invariance), and of each invariance transform alone.

    python3 scripts/augment_cost.py [--images 256] [--p 0.5] [--json]

Reads real X-rays from ../shared/data/cxr (model-size pixels, as training holds them) and
times batches of 32 as convert/train.py calls the augmenter, in CPU time of this process
(one thread: Pillow and numpy run these single-threaded). Prints the host's CPU model;
figures from a busy machine are upper bounds.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

from covid_edge.convert.augment import Augmenter
from covid_edge.convert.invariance import TRANSFORMS, InvarianceAugmenter
from covid_edge.preprocess import PreprocessSpec, load_pixels

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "cxr"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# CPU time of this process: other work on a shared machine does not count against it.
clock = time.process_time


def per_image_ms(augment, pixels: np.ndarray, repeats: int, seed: int = 0) -> float:
    rng = np.random.default_rng(seed)
    start = clock()
    for _ in range(repeats):
        for batch in range(0, len(pixels), 32):
            augment(pixels[batch:batch + 32], rng)
    return 1000 * (clock() - start) / (repeats * len(pixels))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--p", type=float, default=0.5)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    files = sorted(p for p in args.data.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg",
                                                                            ".png"))
    rng = np.random.default_rng(0)
    chosen = [files[i] for i in rng.permutation(len(files))[:args.images]]
    spec = PreprocessSpec()
    pixels = np.stack([load_pixels(path, spec) for path in chosen])

    base = Augmenter()
    result = {"host": cpu_model(), "images": len(pixels), "size": list(pixels.shape[1:]),
              "p": args.p,
              "base_ms": per_image_ms(base, pixels, args.repeats),
              "invariance_ms": per_image_ms(InvarianceAugmenter(base=base, p=args.p), pixels,
                                            args.repeats)}
    every = InvarianceAugmenter(base=base, p=1.0)
    transform_rng = np.random.default_rng(1)
    result["per_transform_ms"] = {}
    for name in TRANSFORMS:
        start = clock()
        for image in pixels[:64]:
            every.apply(name, image, transform_rng)
        result["per_transform_ms"][name] = 1000 * (clock() - start) / min(64, len(pixels))
    result["added_ms"] = result["invariance_ms"] - result["base_ms"]
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"host: {result['host']}; {result['images']} images at "
          f"{result['size'][0]}x{result['size'][1]}, CPU time per image")
    print(f"Augmenter alone:                {result['base_ms']:.2f} ms/image")
    print(f"with invariance p={args.p:<4}:        {result['invariance_ms']:.2f} ms/image "
          f"(+{result['added_ms']:.2f})")
    for name, ms in result["per_transform_ms"].items():
        print(f"  {name:<9} alone (when drawn): {ms:.2f} ms")


if __name__ == "__main__":
    main()
