"""A labelled folder of X-rays: scanning it, finding near-duplicates, and a split that keeps
each duplicate group on one side (otherwise test scores are inflated by memorised copies).

TensorFlow-free: `bench drift` reads labelled folders on the device too.
"""

from __future__ import annotations

import csv
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# The one list of file names searched for; DICOM files need the [dicom] extra (pydicom),
# and image_io says so when it is missing.
from .formats import IMAGE_SUFFIXES

# Release 0.2.0's classes: what a two-folder data root (covid/, normal/) gives, in card order.
LABELS = ("normal", "covid")
POSITIVE = "covid"  # the screened-for class unless `train --positive` says otherwise
DROP = "drop"  # a --map target: leave these images out
SPLITS = ("train", "val", "test")
MANIFEST = "MANIFEST.csv"

# 32x32 mean-pooled thumbnails, mean-centred; cosine similarity above 0.97 marks a near-duplicate.
# On ../shared/data/cxr this finds 442 files in groups, 409 of them COVID, which matches the
# dataset README (189 groups, 440 files, almost all COVID); at 0.95, distinct normal X-rays
# start to merge (1411 files).
FINGERPRINT_SIDE = 32
DUPLICATE_SIMILARITY = 0.97


@dataclass(frozen=True)
class Item:
    path: str   # relative to its data root, with "/" separators
    label: str
    source: str = ""  # the hospital or collection (a manifest's `source` column, else the root)
    root: str = ""    # which data root (its name in run.json "data_dirs"); "" = the only one


def _is_image(path: Path) -> bool:
    # Dot-files are editor and macOS metadata (._x.jpg), never images.
    return (path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES
            and not path.name.startswith("."))


def folder_labels(data_dir: str | Path) -> list[str]:
    """The class sub-folders of DATA_DIR that hold images, sorted."""
    data_dir = Path(data_dir)
    return sorted(folder.name for folder in data_dir.iterdir()
                  if folder.is_dir() and not folder.name.startswith(".")
                  and any(_is_image(path) for path in folder.rglob("*")))


def scan(data_dir: str | Path, labels=None, root: str = "") -> list[Item]:
    """Every image of DATA_DIR, sorted: from DATA_DIR/MANIFEST.csv when it has `path` and
    `label` columns (its `source` column names each image's hospital), else from the class
    sub-folders DATA_DIR/<label>/ (source: the folder's name). `labels` keeps only those
    classes (None: every class found). `root` tags the items with their data root's name."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise FileNotFoundError(f"{data_dir}: no such folder")
    default_source = data_dir.resolve().name
    manifest = data_dir / MANIFEST
    items = []
    if manifest.is_file():
        with open(manifest, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        if rows and {"path", "label"} <= set(rows[0]):
            for row in rows:
                if labels is None or row["label"] in labels:
                    items.append(Item(row["path"], row["label"],
                                      row.get("source") or default_source, root))
            missing = [item.path for item in items[:50] if not (data_dir / item.path).is_file()]
            if missing:
                raise FileNotFoundError(f"{manifest} names files that are not there "
                                        f"(e.g. {missing[0]})")
    if not items:
        wanted = folder_labels(data_dir) if labels is None else list(labels)
        if labels is not None:
            absent = [label for label in wanted if not (data_dir / label).is_dir()]
            if absent:
                raise FileNotFoundError(
                    f"{data_dir} needs one sub-folder per class: {', '.join(wanted)}; "
                    f"{', '.join(name + '/' for name in absent)} missing")
        for label in wanted:
            for path in sorted((data_dir / label).rglob("*")):
                if _is_image(path):
                    items.append(Item(path.relative_to(data_dir).as_posix(), label,
                                      default_source, root))
    if not items:
        raise FileNotFoundError(f"{data_dir}: no images; it needs one sub-folder per class "
                                "(DATA_DIR/<class>/*.png|jpg|...) or a MANIFEST.csv with path "
                                "and label columns")
    return sorted(items, key=lambda item: item.path)


def relabel(items: list[Item], mapping: dict[str, str]) -> list[Item]:
    """Apply --map OLD=NEW (NEW may be "drop"): merged classes keep their images' sources."""
    kept = []
    for item in items:
        label = mapping.get(item.label, item.label)
        if label != DROP:
            kept.append(Item(item.path, label, item.source, item.root))
    return kept


def class_order(found, positive: str = POSITIVE) -> tuple[str, ...]:
    """Labels in card order: the other classes sorted, the positive class last
    ((normal, covid) for release 0.2.0's two folders; (normal, pneumonia, covid) for three)."""
    found = set(found)
    if positive not in found:
        raise ValueError(f"no images of the positive class {positive!r} (classes found: "
                         f"{', '.join(sorted(found)) or 'none'})")
    return tuple(sorted(found - {positive})) + (positive,)


def label_indices(items: list[Item], labels=LABELS) -> np.ndarray:
    return np.array([labels.index(item.label) for item in items], dtype=np.int64)


def source_indices(items: list[Item]) -> np.ndarray:
    _, index = np.unique([f"{item.root}/{item.source}" for item in items], return_inverse=True)
    return index.astype(np.int64)


def content_hash(data_dirs, items: list[Item]) -> str:
    """sha256 over every (path, label, file sha256): names the exact data a model saw.
    `data_dirs`: the one data folder, or {root name: folder} for several."""
    digest = hashlib.sha256()
    for item in items:
        file_hash = hashlib.sha256(item_path(data_dirs, item).read_bytes()).hexdigest()
        root = f"{item.root}:" if item.root else ""
        digest.update(f"{root}{item.path}\t{item.label}\t{file_hash}\n".encode())
    return digest.hexdigest()


def item_path(data_dirs, item: Item) -> Path:
    """Where an item's file is: `data_dirs` is one folder or {root name: folder}."""
    if isinstance(data_dirs, dict):
        return Path(data_dirs[item.root]) / item.path
    return Path(data_dirs) / item.path


def fingerprints(pixels: np.ndarray) -> np.ndarray:
    """(n, h, w) uint8 -> (n, 32*32) unit vectors that ignore brightness and contrast."""
    n, height, width = pixels.shape
    side = FINGERPRINT_SIDE
    bh, bw = height // side, width // side
    cropped = pixels[:, : bh * side, : bw * side].astype(np.float32)
    small = cropped.reshape(n, side, bh, side, bw).mean(axis=(2, 4)).reshape(n, -1)
    small -= small.mean(axis=1, keepdims=True)
    small /= np.linalg.norm(small, axis=1, keepdims=True) + 1e-6
    return small


def duplicate_groups(pixels: np.ndarray, threshold: float = DUPLICATE_SIMILARITY,
                     chunk: int = 2048) -> np.ndarray:
    """A group id per image; near-identical images share one (union-find over similar pairs)."""
    vectors = fingerprints(pixels)
    n = len(vectors)
    parent = np.arange(n)

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for start in range(0, n, chunk):
        similarity = vectors[start:start + chunk] @ vectors.T
        rows, cols = np.nonzero(similarity > threshold)
        for row, col in zip(rows + start, cols):
            if row < col:
                a, b = root(row), root(col)
                if a != b:
                    parent[max(a, b)] = min(a, b)
    roots = np.array([root(i) for i in range(n)])
    _, group_ids = np.unique(roots, return_inverse=True)
    return group_ids


# File names that carry a patient (../shared/data/cxr-more/README.md): NIH <patient>_<follow-up>,
# Kermany pneumonia person<N>_..., Kermany normals IM-<patient>-<image>. Images of one patient
# must stay on one side of the split, like duplicates.
PATIENT_PATTERNS = (re.compile(r"^(nih-\d+)_\d+$"), re.compile(r"^(kermany-person\d+)_"),
                    re.compile(r"^(kermany-(?:NORMAL2-)?IM-\d+)-\d+$"))


def patient_key(item: Item) -> str | None:
    stem = Path(item.path).stem
    for pattern in PATIENT_PATTERNS:
        match = pattern.match(stem)
        if match:
            return f"{item.root}/{match.group(1)}"
    return None


def with_patients(items: list[Item], groups: np.ndarray) -> np.ndarray:
    """Duplicate groups merged with patient groups: one group id for every image of a patient
    and for every near-duplicate (renumbered 0..k-1 in order of first appearance). Items with
    no patient in their name keep their groups, so 0.2.0's split is drawn as before."""
    parent: dict = {}

    def root(key):
        while parent.setdefault(key, key) != key:
            parent[key] = parent[parent[key]]
            key = parent[key]
        return key

    for item, group in zip(items, groups):
        patient = patient_key(item)
        if patient is not None:
            a, b = root(("group", int(group))), root(("patient", patient))
            if a != b:
                parent[b] = a
    roots = [root(("group", int(group))) for group in groups]
    if len(set(roots)) == len(np.unique(groups)):
        return groups  # nothing merged: keep the numbering
    _, first = np.unique(np.array([str(r) for r in roots]), return_index=True)
    order = {str(roots[i]): rank for rank, i in enumerate(sorted(first))}
    return np.array([order[str(r)] for r in roots], dtype=np.int64)


def group_split(labels: np.ndarray, groups: np.ndarray, fractions=(0.70, 0.15, 0.15),
                seed: int = 0) -> np.ndarray:
    """Assign whole groups to train/val/test so that each stratum is split by `fractions`.

    `labels` are the strata: class indices, or class x source (`strata`). A group goes to the
    stratum of its majority; within a stratum, groups are shuffled with `seed` and dealt out
    until each split holds its share of that stratum's images.
    """
    rng = np.random.default_rng(seed)
    split = np.empty(len(labels), dtype=object)
    group_ids = np.unique(groups)
    majority = {g: np.bincount(labels[groups == g]).argmax() for g in group_ids}
    for label in np.unique(labels):
        class_groups = np.array([g for g in group_ids if majority[g] == label])
        rng.shuffle(class_groups)
        sizes = np.array([(groups == g).sum() for g in class_groups])
        total = sizes.sum()
        boundaries = np.cumsum(fractions)[:-1] * total
        running = np.cumsum(sizes) - sizes  # images already dealt before this group
        for g, dealt in zip(class_groups, running):
            split[groups == g] = SPLITS[int(np.searchsorted(boundaries, dealt, side="right"))]
    return split


def strata(items: list[Item], labels) -> np.ndarray:
    """One stratum per (class, source): each hospital's share of each class is split alike."""
    classes = label_indices(items, labels)
    sources = source_indices(items)
    return classes * (int(sources.max()) + 1) + sources


def write_split(path: str | Path, items: list[Item], groups: np.ndarray, split: np.ndarray) -> None:
    """split.csv; the source and root columns only where there are several (0.2.0's layout
    otherwise)."""
    several = len({(item.root, item.source) for item in items}) > 1
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "group", "split"]
                        + (["source", "root"] if several else []))
        for item, group, part in zip(items, groups, split):
            writer.writerow([item.path, item.label, int(group), part]
                            + ([item.source, item.root] if several else []))


def reuse_split(path: str | Path, items: list[Item]) -> tuple[np.ndarray, np.ndarray]:
    """(groups, split) for items from an earlier run's split.csv, which must name exactly these
    images with these labels."""
    earlier, groups, split = read_split(path)
    where = {(item.root, item.path): index for index, item in enumerate(earlier)}
    missing = [item for item in items if (item.root, item.path) not in where]
    if missing or len(items) != len(earlier):
        example = f" (e.g. {missing[0].path})" if missing else ""
        raise ValueError(f"{path} splits {len(earlier)} images, this run has {len(items)}, "
                         f"{len(missing)} of them not in the file{example}: give the same data "
                         "folders and --map options as the run that wrote it")
    order = np.array([where[(item.root, item.path)] for item in items])
    relabelled = [item.path for item, index in zip(items, order)
                  if earlier[index].label != item.label]
    if relabelled:
        raise ValueError(f"{path} labels {len(relabelled)} images differently "
                         f"(e.g. {relabelled[0]}): give the same --map options")
    return groups[order], split[order]


def read_split(path: str | Path) -> tuple[list[Item], np.ndarray, np.ndarray]:
    items, groups, split = [], [], []
    with open(path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            items.append(Item(row["path"], row["label"], row.get("source") or "",
                              row.get("root") or ""))
            groups.append(int(row["group"]))
            split.append(row["split"])
    return items, np.array(groups), np.array(split, dtype=object)
