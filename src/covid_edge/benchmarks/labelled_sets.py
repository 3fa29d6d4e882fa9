"""Labelled X-rays from several places at once, each image with its label and its source.

A set is given on the command line as PATH or NAME=PATH, where PATH is
- a folder with a MANIFEST.csv (columns `path`, `label`, optionally `source`): its rows;
- a folder of class sub-folders (`normal/`, `pneumonia/`, ...): every image in them;
- a CSV file with those columns: its rows, paths relative to the CSV's folder.
Without a `source` column the source is NAME, else the folder's name.

Labels are whatever the data says, not only the model's classes: a covid/normal model is also
scored on pneumonia, tuberculosis and nodule images ("called covid" rates).

TensorFlow-free: runs on the device.
"""

from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..dataset import IMAGE_SUFFIXES
from .drift import read_split_file

MANIFEST_NAME = "MANIFEST.csv"


class LabelledSetError(Exception):
    """A set that cannot be read; the message says what to pass instead."""


@dataclass(frozen=True)
class LabelledImage:
    path: Path    # where the file is
    name: str     # as reports show it: relative to its set's folder, "/" separators
    label: str
    source: str


def parse_set_argument(argument: str) -> tuple[str | None, Path]:
    """"NAME=PATH" -> (NAME, PATH); "PATH" -> (None, PATH). A path that exists wins over a
    name split, so a folder whose name holds "=" still works."""
    if "=" in argument and not Path(argument).exists():
        name, _, path = argument.partition("=")
        if name and path:
            return name, Path(path)
    return None, Path(argument)


def load_set(argument: str) -> list[LabelledImage]:
    name, path = parse_set_argument(argument)
    if path.is_file():
        return from_manifest(path, name)
    if not path.is_dir():
        raise LabelledSetError(f"{path}: no such folder or manifest; pass a folder of class "
                               "sub-folders, a folder with MANIFEST.csv, or a CSV file "
                               "(path,label[,source])")
    if (path / MANIFEST_NAME).is_file() and _has_labels(path / MANIFEST_NAME):
        return from_manifest(path / MANIFEST_NAME, name)
    return from_folder(path, name)  # a manifest of another kind: the folders are the labels


def _has_labels(csv_path: Path) -> bool:
    try:
        with open(csv_path, newline="", encoding="utf-8") as handle:
            return {"path", "label"} <= set(csv.DictReader(handle).fieldnames or ())
    except (OSError, UnicodeDecodeError, csv.Error):
        return True  # from_manifest says what is wrong with it


def from_manifest(csv_path: Path, source: str | None = None) -> list[LabelledImage]:
    root = csv_path.parent
    default_source = source or root.name
    try:
        with open(csv_path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            columns = set(reader.fieldnames or ())
            if not {"path", "label"} <= columns:
                raise LabelledSetError(f"{csv_path}: a manifest needs the columns path and "
                                       f"label (it has {', '.join(sorted(columns)) or 'none'})")
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise LabelledSetError(f"{csv_path}: not a readable CSV manifest ({exc})") from None
    images = []
    for row in rows:
        # NAME= overrides a source column only when the manifest has none: a manifest that
        # names its sources (cxr-more: nih, kermany, ...) keeps them, prefixed by NAME if given.
        row_source = (row.get("source") or "").strip()
        if row_source:
            row_source = f"{source}/{row_source}" if source else row_source
        images.append(LabelledImage(root / row["path"], row["path"], row["label"].strip(),
                                    row_source or default_source))
    if not images:
        raise LabelledSetError(f"{csv_path}: the manifest lists no images")
    return images


def from_folder(root: Path, source: str | None = None) -> list[LabelledImage]:
    images = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for path in sorted(folder.rglob("*")):
            if (path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES
                    and not path.name.startswith(".")):
                images.append(LabelledImage(path, path.relative_to(root).as_posix(),
                                            folder.name, source or root.name))
    if not images:
        raise LabelledSetError(f"{root}: no images in class sub-folders (e.g. {root}/normal/, "
                               f"{root}/covid/) and no {MANIFEST_NAME}")
    return images


PARTS = ("test", "val")


def keep_part(images: list[LabelledImage], split_file: Path | None, part: str = "test"
                ) -> tuple[list[LabelledImage], list[str], list[str]]:
    """Drop the images the model was trained or tuned on (part "test"), or keep only those
    it was tuned on (part "val").

    A set that shares file names with the model's split file is the training data: only its
    test split is kept (as `bench drift --split auto` does), with its images the split file
    does not name (labels training left out, e.g. by `train --map nodule=drop`: never seen).
    Other sets are new data and kept whole. With part "val", a set keeps its validation-split
    images only, and sets the split file does not name are left out: they have none. Returns
    the images, one note per set that was reduced, and the sources the model trained on
    (those reduced to one part of the split).
    """
    if part not in PARTS:
        raise LabelledSetError(f"part {part!r}: choose one of {', '.join(PARTS)}")
    if split_file is None or not split_file.is_file():
        if part == "val":
            raise LabelledSetError("--part val needs the model's split file (training/"
                                   "split.csv beside the model, or --split-file)")
        return images, [], []
    parts = read_split_file(split_file)
    by_source: dict[str, list[LabelledImage]] = {}
    for image in images:
        by_source.setdefault(image.source, []).append(image)
    kept = []
    notes = ([] if part == "test" else
             ["--part val: validation images, on which the threshold and settings were "
              "chosen; these figures are for choosing, not held-out results"])
    trained = []
    for source, members in by_source.items():
        known = [m for m in members if m.name in parts]
        if not known:
            if part == "test":
                kept += members
            else:
                notes.append(f"{source}: not in the model's split file, so it has no "
                             "validation images: left out")
            continue
        if any(parts[m.name] == "train" for m in known):
            trained.append(source)
        if part == "val":
            chosen = [m for m in members if parts.get(m.name) == "val"]
            notes.append(f"{source}: {len(known)} of its {len(members)} images are in the "
                         f"model's split file: only its {len(chosen)} validation-split "
                         "images are used")
            kept += chosen
            continue
        test = [m for m in members if parts.get(m.name) == "test"]
        unseen = [m for m in members if m.name not in parts]
        notes.append(f"{source}: {len(known)} of its {len(members)} images are in the model's "
                     f"split file: only its {len(test)} test-split images are used"
                     + (f", and the {len(unseen)} it does not name" if unseen else ""))
        kept += [m for m in members if parts.get(m.name, "test") == "test"]
    return kept, notes, trained


def limit_per_group(images: list[LabelledImage], limit: int, seed: int = 0
                    ) -> list[LabelledImage]:
    """A seeded random `limit` per (source, label), kept in input order."""
    rng = np.random.default_rng(seed)
    groups: dict[tuple[str, str], list[int]] = {}
    for index, image in enumerate(images):
        groups.setdefault((image.source, image.label), []).append(index)
    chosen = sorted(i for members in groups.values()
                    for i in np.asarray(members)[rng.permutation(len(members))[:limit]])
    return [images[i] for i in chosen]


def load_sets(arguments: list[str], split_file: Path | None, limit: int | None = None,
              seed: int = 0, part: str = "test") -> tuple[list[LabelledImage], dict]:
    """Every set named on the command line, unseen images only (or the validation images,
    part "val"), and a record of the choice."""
    images: list[LabelledImage] = []
    for argument in arguments:
        images += load_set(argument)
    images, notes, trained = keep_part(images, split_file, part)
    if limit is not None:
        images = limit_per_group(images, limit, seed)
        notes.append(f"at most {limit} images per source and label (--limit, seed {seed})")
    if not images:
        raise LabelledSetError("no images left to evaluate")
    counts = Counter((image.source, image.label) for image in images)
    selection = {"sets": list(arguments),
                 "split_file": str(split_file) if split_file and split_file.is_file() else None,
                 "part": part, "images": len(images), "notes": notes,
                 # Sources whose other images trained the model: their test images are new
                 # X-rays from a hospital it has seen, not from one it never saw.
                 "trained_on_sources": trained,
                 "per_source": {source: {label: n for (s, label), n in sorted(counts.items())
                                         if s == source}
                                for source in dict.fromkeys(i.source for i in images)}}
    return images, selection
