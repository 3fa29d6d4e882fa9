"""Does the guard's cheaper fine-detail blur refuse the same pictures as the one it replaced?

    python scripts/detail_blur_compare.py [--models models] [--shift-images 300]
                                          [--markdown docs/bench/detail-blur.md]

The guard refuses a picture whose fine detail (mean |picture - its blur| / its grey-level
standard deviation) lies outside limits fitted on the training X-rays (edge_runtime/guard.py).
The blur was Pillow's radius-2 Gaussian (three box passes); a single radius-3 box pass costs
less than half as much. This script measures both on every picture it can find, fits each
measure's limits by convert's own rule on the training images convert used
(ood_fit.training_subset, ood_fit.fitted_image_checks), and counts the pictures whose
fine-detail decision differs:
  - the model's own split (training, validation and test) and the rest of ../shared/data:
    cxr-more, the lung X-rays, the lateral/CT/knee views;
  - the reference photos, the non-X-ray evaluation set and the guard's tuning set, as
    `convert` draws them;
  - every shift-suite perturbation of --shift-images test X-rays;
  - synthetic noise and smooth ramps.
Prints the table (and writes it as Markdown with --markdown) and each blur's time per picture.
Measures, asserts nothing.
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "src"))
SHARED = REPO_ROOT.parent / "shared"

from PIL import Image  # noqa: E402

from covid_edge import dataset, model_card  # noqa: E402
from covid_edge.benchmarks import perturbations  # noqa: E402
from covid_edge.benchmarks.cpu_features import cpu_features, summary  # noqa: E402
from covid_edge.benchmarks.device_info import cpu_model  # noqa: E402
from covid_edge.convert import non_xray, ood_fit  # noqa: E402
from covid_edge.convert.guard_refit import data_folders  # noqa: E402
from covid_edge.edge_runtime.guard import DETAIL_BLURS, fine_detail, grey_spread  # noqa: E402
from covid_edge.image_io import ImageReadError  # noqa: E402
from covid_edge.preprocess import PreprocessSpec, load_pixels  # noqa: E402

OLD, NEW = "gaussian-2", "box-3"
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".dcm"}


class Measured:
    """Both measures of every picture, by group."""

    def __init__(self, spec: PreprocessSpec):
        self.spec = spec
        self.groups: dict[str, list[tuple[str, float, float]]] = defaultdict(list)
        self.unreadable = 0

    def add_pixels(self, group: str, name: str, pixels: np.ndarray) -> None:
        spread = grey_spread(pixels)
        self.groups[group].append((name, fine_detail(pixels, spread, OLD),
                                   fine_detail(pixels, spread, NEW)))

    def add_file(self, group: str, path, name: str | None = None) -> None:
        try:
            pixels = load_pixels(path, self.spec)
        except (ImageReadError, OSError, ValueError):
            self.unreadable += 1
            return
        self.add_pixels(group, name or str(path), pixels)


def images_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*")
                  if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def decision(value: float, limits: tuple[float, float]) -> str:
    high, low = limits
    return "noise" if value > high else ("featureless" if value < low else "passes")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=Path, default=REPO_ROOT / "models",
                        help="the conversion whose split and training rule to use")
    parser.add_argument("--shift-images", type=int, default=300,
                        help="test X-rays each shift-suite perturbation is applied to")
    parser.add_argument("--seed", type=int, default=0,
                        help="the conversion's --seed (it picks the training images fitted on)")
    parser.add_argument("--markdown", type=Path, help="also write the table here")
    args = parser.parse_args()

    card = model_card.load_card(args.models / model_card.CARD_FILENAME)
    spec = PreprocessSpec.from_dict(card["preprocessing"])
    folders = data_folders(card, {})
    folders = {root: (path if path.is_absolute() else REPO_ROOT / path)
               for root, path in folders.items()}
    items, _, split = dataset.read_split(args.models / "training" / "split.csv")
    measured = Measured(spec)
    started = time.perf_counter()
    for item, part in zip(items, split):
        measured.add_file(f"split {part} ({item.root})", dataset.item_path(folders, item),
                          f"{item.root}/{item.path}")
    train = [row for group, rows in measured.groups.items() if group.startswith("split train")
             for row in rows]
    fitted_names = {f"{item.root}/{item.path}" for item in ood_fit.training_subset(
        [item for item, part in zip(items, split) if part == "train"],
        ood_fit.DEFAULT_TRAIN_IMAGES, args.seed)}
    fitted = [row for row in train if row[0] in fitted_names]
    limits = {}
    for index, blur in ((1, OLD), (2, NEW)):
        checks = ood_fit.fitted_image_checks([row[index] for row in fitted], blur)
        limits[blur] = (checks.detail_max, checks.detail_min)

    data = SHARED / "data"
    for name in ("cxr-more", "lungs/images", "not-frontal-chest"):
        for path in images_under(data / name):
            measured.add_file(f"../shared/data/{name} (all)", path)
    for path in images_under(SHARED / "reference" / "photos"):
        measured.add_file("../shared/reference/photos", path)
    with tempfile.TemporaryDirectory(prefix="covid-edge-detail-") as scratch:
        for image in non_xray.build(Path(scratch) / "evaluation"):
            measured.add_file(f"non-X-ray evaluation: {image.source}", image.path)
        for image in non_xray.build_tuning(Path(scratch) / "tuning"):
            measured.add_file(f"guard tuning set: {image.source}", image.path)

    test = [item for item, part in zip(items, split) if part == "test"]
    chosen = np.random.default_rng(0).permutation(len(test))[:args.shift_images]
    sample = [test[i] for i in chosen]
    for index, perturbation in enumerate(perturbations.CATALOGUE):
        if not perturbations.available(perturbation):
            continue
        for image_index, item in enumerate(sample):
            with Image.open(dataset.item_path(folders, item)) as img:
                img.load()
                made = perturbation.apply(img, perturbations.generator(0, index, image_index))
            measured.add_file(f"shift: {perturbation.name}", io.BytesIO(made.data), item.path)
    rng = np.random.default_rng(1)
    for k in range(200):
        noise = rng.normal(rng.uniform(40, 200), rng.uniform(2, 60), (224, 224))
        measured.add_pixels("synthetic: Gaussian noise", f"noise-{k}",
                            np.clip(noise, 0, 255).astype(np.uint8))
        ramp = (np.linspace(0, 1, 224)[None, :] * rng.uniform(30, 255)
                + np.linspace(0, 1, 224)[:, None] * rng.uniform(0, 100))
        measured.add_pixels("synthetic: smooth ramps", f"ramp-{k}",
                            np.clip(ramp, 0, 255).astype(np.uint8))

    lines = [f"Fine-detail decisions, {OLD} against {NEW} "
             f"(`python scripts/detail_blur_compare.py --shift-images {args.shift_images}`; "
             f"limits fitted by convert's rule on its {len(fitted)} training images):", "",
             f"- {OLD}: refuse above {limits[OLD][0]:.4f} (noise) or below "
             f"{limits[OLD][1]:.4f} (featureless)",
             f"- {NEW}: refuse above {limits[NEW][0]:.4f} or below {limits[NEW][1]:.4f}",
             f"- correlation of the two measures on the {len(train)} training X-rays: "
             f"{np.corrcoef([r[1] for r in train], [r[2] for r in train])[0, 1]:.4f}", "",
             f"| pictures | n | refused by {OLD} | refused by {NEW} | decisions differ |",
             "|---|---|---|---|---|"]
    total = differ_total = 0
    examples = []
    for group in sorted(measured.groups):
        rows = measured.groups[group]
        old = [decision(r[1], limits[OLD]) for r in rows]
        new = [decision(r[2], limits[NEW]) for r in rows]
        differ = [(r, a, b) for r, a, b in zip(rows, old, new) if a != b]
        total += len(rows)
        differ_total += len(differ)
        examples += [(group, *d) for d in differ[:2]]
        lines.append(f"| {group} | {len(rows)} | {sum(a != 'passes' for a in old)} | "
                     f"{sum(b != 'passes' for b in new)} | {len(differ)} |")
    lines += ["", f"{differ_total} of {total} pictures get another fine-detail decision "
              f"({measured.unreadable} files unreadable, skipped)."]
    for group, (name, old_value, new_value), a, b in examples[:6]:
        lines.append(f"- e.g. {group}: {name}: {OLD} {old_value:.4f} ({a}), "
                     f"{NEW} {new_value:.4f} ({b})")
    pictures = [np.asarray(load_pixels(dataset.item_path(folders, item), spec))
                for item in sample[:100]]
    timing = []
    for blur in (OLD, NEW, OLD, NEW):
        begin = time.perf_counter()
        for _ in range(5):
            for pixels in pictures:
                fine_detail(pixels, None, blur)
        timing.append((blur, (time.perf_counter() - begin) * 1000 / (5 * len(pictures))))
    best = {blur: min(ms for b, ms in timing if b == blur) for blur in DETAIL_BLURS}
    lines += ["", f"Time per 224-px picture (fine_detail, best of two passes; {cpu_model()}, "
              f"{summary(cpu_features())}): "
              f"{OLD} {best[OLD]:.3f} ms, {NEW} {best[NEW]:.3f} ms."]
    text = "\n".join(lines)
    print(text)
    print(f"\n({time.perf_counter() - started:.0f} s)", file=sys.stderr)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(f"# The guard's fine-detail blur\n\n{text}\n", encoding="utf-8")


if __name__ == "__main__":
    main()
