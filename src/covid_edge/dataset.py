"""A labelled folder of X-rays: scanning it, finding near-duplicates, and a split that keeps
each duplicate group on one side (otherwise test scores are inflated by memorised copies).

TensorFlow-free: `bench drift` reads labelled folders on the device too.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

LABELS = ("normal", "covid")  # index 1 is the positive (screened-for) class
POSITIVE = "covid"
# DICOM files need the [dicom] extra (pydicom); image_io says so when it is missing.
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".dcm", ".dicom"}
SPLITS = ("train", "val", "test")

# 32x32 mean-pooled thumbnails, mean-centred; cosine similarity above 0.97 marks a near-duplicate.
# On ../shared/data/cxr this finds 442 files in groups, 409 of them COVID, which matches the
# dataset README (189 groups, 440 files, almost all COVID); at 0.95, distinct normal X-rays
# start to merge (1411 files).
FINGERPRINT_SIDE = 32
DUPLICATE_SIMILARITY = 0.97


@dataclass(frozen=True)
class Item:
    path: str   # relative to the data folder, with "/" separators
    label: str


def scan(data_dir: str | Path) -> list[Item]:
    """Every image under DATA_DIR/<label>/, sorted, for the labels covid-edge knows."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise FileNotFoundError(f"{data_dir}: no such folder")
    items = []
    for label in LABELS:
        folder = data_dir / label
        if not folder.is_dir():
            raise FileNotFoundError(
                f"{data_dir} needs one sub-folder per class: {', '.join(LABELS)}; "
                f"{folder.name}/ is missing")
        for path in sorted(folder.rglob("*")):
            # Dot-files are editor and macOS metadata (._x.jpg), never images.
            if (path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES
                    and not path.name.startswith(".")):
                items.append(Item(path.relative_to(data_dir).as_posix(), label))
    if not items:
        raise FileNotFoundError(f"{data_dir}: no images in {', '.join(LABELS)}/")
    return items


def label_indices(items: list[Item]) -> np.ndarray:
    return np.array([LABELS.index(item.label) for item in items], dtype=np.int64)


def content_hash(data_dir: str | Path, items: list[Item]) -> str:
    """sha256 over every (path, file sha256) pair: names the exact data a model saw."""
    digest = hashlib.sha256()
    for item in items:
        file_hash = hashlib.sha256((Path(data_dir) / item.path).read_bytes()).hexdigest()
        digest.update(f"{item.path}\t{item.label}\t{file_hash}\n".encode())
    return digest.hexdigest()


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


def group_split(labels: np.ndarray, groups: np.ndarray, fractions=(0.70, 0.15, 0.15),
                seed: int = 0) -> np.ndarray:
    """Assign whole groups to train/val/test so that each class is split by `fractions`.

    A group goes to the class of its majority; within a class, groups are shuffled with `seed`
    and dealt out until each split holds its share of that class's images.
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


def write_split(path: str | Path, items: list[Item], groups: np.ndarray, split: np.ndarray) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "group", "split"])
        for item, group, part in zip(items, groups, split):
            writer.writerow([item.path, item.label, int(group), part])


def read_split(path: str | Path) -> tuple[list[Item], np.ndarray, np.ndarray]:
    items, groups, split = [], [], []
    with open(path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            items.append(Item(row["path"], row["label"]))
            groups.append(int(row["group"]))
            split.append(row["split"])
    return items, np.array(groups), np.array(split, dtype=object)
