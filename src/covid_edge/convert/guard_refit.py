"""Fit the out-of-distribution guard's feature check again for a conversion that exists.

The guard's statistics describe the shipped int8 file's own features, so they can be fitted
again without the Keras model: the same steps `convert` takes (ood_fit.fit_guard on the
training and validation split the conversion recorded, then ood_fit.measure_guard on its test
split and the non-X-ray images), written into the same model card. Everything else in the
folder (model files, threshold, calibration, samples) stays as it is.
"""

from __future__ import annotations

import shlex
import shutil
import tempfile
from pathlib import Path

from .. import dataset, model_card
from ..edge_runtime.guard import OOD_STATS_FILENAME
from ..model_card import CARD_FILENAME
from . import ood_fit
from .card_markdown import write_markdown


class RefitError(Exception):
    """The folder is not a conversion whose guard can be fitted again here."""


def data_folders(card: dict, overrides: dict[str, str]) -> dict[str, Path]:
    """{split root: folder}: the card's data.folders (as the training command named them),
    each replaceable by --data ROOT=DIR."""
    folders = {**(card.get("data") or {}).get("folders", {}), **overrides}
    if not folders:
        raise RefitError("the model card names no data folders (a one-folder conversion): "
                         "pass --data ROOT=DIR for each root of training/split.csv")
    missing = [f"{root}={path}" for root, path in folders.items() if not Path(path).is_dir()]
    if missing:
        raise RefitError(f"data folder {missing[0]} is not here; pass --data ROOT=DIR")
    return {root: Path(path) for root, path in folders.items()}


def refit_guard(models_dir: str | Path, *, data: dict[str, str] | None = None,
                train_images: int = ood_fit.DEFAULT_TRAIN_IMAGES,
                components: int | None = None, quantile: float = ood_fit.DEFAULT_QUANTILE,
                per_label: bool = False, seed: int = 0, non_xray_dirs: tuple = (),
                command: str | None = None, force: bool = False, log=print,
                progress=None) -> dict:
    """Fit and measure the guard of the conversion in `models_dir`; rewrites its
    ood_stats.npz, model card (ood_guard, reproduce) and training/ood_distances.png.
    Returns the card's new ood_guard entry."""
    from ..edge_runtime.classifier import Classifier

    models_dir = Path(models_dir)
    card = model_card.load_card(models_dir / CARD_FILENAME)
    stats = models_dir / OOD_STATS_FILENAME
    if (stats.exists() or card.get("ood_guard", {}).get("stats_file")) and not force:
        raise RefitError(f"{models_dir} already has a fitted guard ({stats.name} and the "
                         "card's ood_guard): pass --force to replace it, or fit a copy "
                         f"(cp -r {models_dir} runs/guard-trial) to compare first")
    split_path = models_dir / "training" / "split.csv"
    if not split_path.is_file():
        raise RefitError(f"{split_path}: missing; the guard is fitted on the conversion's "
                         "own training and validation split")
    folders = data_folders(card, data or {})
    items, _, split = dataset.read_split(split_path)
    unknown = sorted({item.root for item in items} - set(folders))
    if unknown:
        raise RefitError(f"training/split.csv has images under root {unknown[0]!r}, which "
                         "no data folder names: pass --data ROOT=DIR")
    parts = {name: [item for item, part in zip(items, split) if part == name]
             for name in ("train", "val", "test")}
    int8_path = models_dir / card["variants"]["int8"]["file"]
    progress = progress or (lambda values, label: values)
    scratch = Path(tempfile.mkdtemp(prefix="covid-edge-guard-"))
    try:
        card["ood_guard"], _ = ood_fit.fit_guard(
            Classifier.load(int8_path, guard=False), folders, parts["train"], parts["val"],
            models_dir, train_images=train_images, components=components, quantile=quantile,
            per_label=per_label, seed=seed, progress=progress, log=log, scratch=scratch)
        distances = card["ood_guard"].pop("_distances")
        model_card.write_json(card, models_dir)  # the runtime reads the new statistics
        ood_fit.measure_into(card["ood_guard"], distances, int8_path, folders, parts["test"],
                             scratch / "non_xray", non_xray_dirs, progress, seed,
                             models_dir / "training" / "ood_distances.png", log)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if command:
        # The card's recipe: the conversion, then this refit (a rerun replaces the old one).
        recipe = [line for line in card.get("reproduce", [])
                  if not line.startswith("covid-edge fit-guard ")]
        card["reproduce"] = recipe + [command]
    model_card.write_json(card, models_dir)
    write_markdown(card, models_dir)
    return card["ood_guard"]


def command_line(models_dir, *, data: dict[str, str], train_images: int,
                 components: int | None, quantile: float, per_label: bool, seed: int,
                 non_xray_dirs: tuple) -> str:
    """The `covid-edge fit-guard` command that does what these arguments ask."""
    words = ["covid-edge", "fit-guard", str(models_dir)]
    for root, path in data.items():
        words += ["--data", f"{root}={path}"]
    if train_images != ood_fit.DEFAULT_TRAIN_IMAGES:
        words += ["--ood-train-images", str(train_images)]
    if components is not None:
        words += ["--ood-components", str(components)]
    if quantile != ood_fit.DEFAULT_QUANTILE:
        words += ["--ood-quantile", f"{quantile:g}"]
    if per_label:
        words.append("--ood-per-label")
    if seed:
        words += ["--seed", str(seed)]
    words.append("--force")  # the recipe replays it on a folder that has a guard
    for folder in non_xray_dirs:
        words += ["--non-xray", str(folder)]
    return shlex.join(words)
