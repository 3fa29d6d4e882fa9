"""Where the leave-one-source-out lung models disagree with the held-out masks.

    python scripts/lungs_loso_examples.py runs/lungs-128.npz \
        runs/lungs-loso-shenzhen/int8 runs/lungs-loso-kermany-v7/int8 -o docs/lungs/loso_examples.png

One row per held-out source (the source is read from each lung card), its first N images
(every 50th): green = both mark lung, red = the model marks lung the reference mask does not,
blue = the reference marks lung the model missed. At the model's 128 px.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image

from covid_edge.convert import lungs_data
from covid_edge.convert.lungs_train import spec_for
from covid_edge.edge_runtime.lungs import LUNG_CARD_FILENAME, LungSegmenter


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("data", help="the lungs folder or its pack")
    parser.add_argument("models", nargs="+", help="converted leave-one-source-out folders")
    parser.add_argument("-o", "--out", type=Path, required=True)
    parser.add_argument("-n", type=int, default=4)
    args = parser.parse_args()
    data = lungs_data.load(args.data, spec_for(128))
    rows = []
    for folder in args.models:
        source = json.loads((Path(folder) / LUNG_CARD_FILENAME).read_text())["held_out_source"]
        segmenter = LungSegmenter.load(folder)
        tiles = []
        for i in np.flatnonzero(data.sources == source)[::50][:args.n]:
            prob, _ = segmenter.probabilities(data.pixels[i])
            pred = prob >= segmenter.threshold
            truth = np.asarray(Image.fromarray(data.masks[i].astype(np.uint8) * 255).resize(
                pred.shape[::-1], Image.Resampling.NEAREST)) > 127
            x = data.pixels[i].astype(np.float64)
            rgb = np.stack([x, x, x], -1)
            rgb[pred & truth] = rgb[pred & truth] * 0.5 + [0, 100, 0]
            rgb[pred & ~truth] = [255, 0, 0]
            rgb[truth & ~pred] = [0, 0, 255]
            tiles.append(rgb)
        rows.append(np.concatenate(tiles, 1))
        print(f"{source}: {len(tiles)} images")
    picture = Image.fromarray(np.concatenate(rows, 0).astype(np.uint8))
    picture.resize((picture.width * 2, picture.height * 2), Image.Resampling.NEAREST).save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
