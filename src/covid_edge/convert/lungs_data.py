"""The lung segmentation pairs (../shared/data/lungs) as arrays the lung model trains on.

Images go through covid_edge.preprocess (the one preprocessing implementation, the same the
device runs); masks are read at their own resolution (256x256) for scoring, and resized
bilinearly to the model's size as soft training targets.

A folder can be packed once into a compressed .npz (`covid-edge train-lungs DATA --pack F`),
so that training elsewhere needs neither the JPEGs nor Pillow's decoding time; the pack
records the preprocessing spec and training refuses a pack made with another one.
"""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..preprocess import PreprocessSpec, load_pixels

# Collections in ../shared/data/lungs/MANIFEST.csv; the mask conventions differ by source
# (see its README), so every figure is reported per source.
SOURCES = ("montgomery", "shenzhen", "jsrt", "kermany-v7")
ADULT_SOURCES = ("montgomery", "shenzhen", "jsrt")
MASK_CONVENTIONS = {
    "montgomery": "visible lung fields, the lung behind the heart left out",
    "shenzhen": "visible lung fields, the lung behind the heart left out",
    "jsrt": "SCR lung fields: heart and mediastinum left out (blocky edges, upscaled 224->256)",
    "kermany-v7": "V7 lungs: include the lung behind the heart and below the diaphragm dome "
                  "(paediatric)",
}

# The outputs of a model trained with one output per convention (train-lungs
# --convention-heads): channel 0, the one everything downstream reads, is the adult convention
# (the lung behind the heart left out), channel 1 Kermany's V7 masks (included).
CONVENTION_HEADS = ("adult: the lung behind the heart left out",
                    "V7: the lung behind the heart included")
CONVENTION_HEAD_OF = {"montgomery": 0, "shenzhen": 0, "jsrt": 0, "kermany-v7": 1}


@dataclass
class LungData:
    names: np.ndarray      # (n,) str, image file name
    sources: np.ndarray    # (n,) str
    pixels: np.ndarray     # (n, h, w) uint8 at the model's input size
    targets: np.ndarray    # (n, h, w) uint8 0..255, the mask resized bilinearly (soft target)
    masks: np.ndarray      # (n, H, W) bool at the masks' own resolution (for scoring)
    spec: PreprocessSpec
    data_hash: str

    def subset(self, index: np.ndarray) -> "LungData":
        return LungData(self.names[index], self.sources[index], self.pixels[index],
                        self.targets[index], self.masks[index], self.spec, self.data_hash)

    def __len__(self) -> int:
        return len(self.names)


def read_manifest(data_dir: Path) -> list[dict]:
    manifest = data_dir / "MANIFEST.csv"
    if not manifest.is_file():
        raise FileNotFoundError(f"{data_dir}: no MANIFEST.csv (expected ../shared/data/lungs)")
    with open(manifest, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def read_mask(path: Path) -> Image.Image:
    with Image.open(path) as img:
        return img.convert("L")


def manifest_rows(data_dir: Path, limit_per_source: int | None = None) -> list[dict]:
    rows = read_manifest(data_dir)
    if limit_per_source:
        rows = [row for source in SOURCES
                for row in [r for r in rows if r["source"] == source][:limit_per_source]]
    return rows


def content_hash(data: str | Path, limit_per_source: int | None = None) -> str | None:
    """The data's content hash without reading the images (None for a pack: read it)."""
    path = Path(data)
    if path.is_file():
        return None
    digest = hashlib.sha256()
    for row in manifest_rows(path, limit_per_source):
        digest.update(row["sha256s"].encode())
    return digest.hexdigest()


def load_folder(data_dir: str | Path, spec: PreprocessSpec, progress=None,
                limit_per_source: int | None = None) -> LungData:
    data_dir = Path(data_dir)
    rows = manifest_rows(data_dir, limit_per_source)
    unknown = sorted({row["source"] for row in rows} - set(SOURCES))
    if unknown:
        raise ValueError(f"{data_dir}: unknown source(s) {unknown}; expected {SOURCES}")
    n = len(rows)
    pixels = np.empty((n, spec.height, spec.width), dtype=np.uint8)
    targets = np.empty((n, spec.height, spec.width), dtype=np.uint8)
    masks = None
    digest = hashlib.sha256()
    for i, row in enumerate(progress(rows, "reading lung pairs") if progress else rows):
        pixels[i] = load_pixels(data_dir / row["image"], spec)
        mask = read_mask(data_dir / row["mask"])
        if masks is None:
            masks = np.empty((n, mask.height, mask.width), dtype=bool)
        masks[i] = np.asarray(mask) > 127
        targets[i] = np.asarray(mask.resize((spec.width, spec.height), Image.Resampling.BILINEAR))
        digest.update(row["sha256s"].encode())
    return LungData(np.array([Path(r["image"]).name for r in rows]),
                    np.array([r["source"] for r in rows]), pixels, targets, masks, spec,
                    digest.hexdigest())


def save_pack(data: LungData, path: str | Path) -> None:
    np.savez_compressed(path, names=data.names, sources=data.sources, pixels=data.pixels,
                        targets=data.targets, masks=np.packbits(data.masks, axis=-1),
                        mask_shape=np.array(data.masks.shape),
                        spec=json.dumps(data.spec.to_dict()), data_hash=data.data_hash)


def load_pack(path: str | Path, spec: PreprocessSpec) -> LungData:
    with np.load(path, allow_pickle=False) as pack:
        packed_spec = PreprocessSpec.from_dict(json.loads(str(pack["spec"])))
        if packed_spec != spec:
            raise ValueError(f"{path}: packed with preprocessing {packed_spec}, not {spec}; "
                             "pack the folder again with this --image-size")
        shape = tuple(int(v) for v in pack["mask_shape"])
        masks = np.unpackbits(pack["masks"], axis=-1, count=shape[-1]).astype(bool)
        return LungData(pack["names"], pack["sources"], pack["pixels"], pack["targets"], masks,
                        spec, str(pack["data_hash"]))


def load(data: str | Path, spec: PreprocessSpec, progress=None,
         limit_per_source: int | None = None) -> LungData:
    """A lungs folder (with MANIFEST.csv) or a pack written by save_pack."""
    path = Path(data)
    if path.is_file() and path.suffix == ".npz":
        loaded = load_pack(path, spec)
        if limit_per_source:
            loaded = loaded.subset(_first_per_source(loaded.sources, limit_per_source))
        return loaded
    return load_folder(path, spec, progress, limit_per_source)


def _first_per_source(sources: np.ndarray, limit: int | None) -> np.ndarray:
    """Indices of each source's first `limit` pairs of a pack (all when None), in pack order:
    what --limit-per-source keeps of a folder's manifest."""
    if not limit:
        return np.arange(len(sources))
    return np.sort(np.concatenate([np.flatnonzero(sources == s)[:limit] for s in SOURCES]))


def sources_of(data: str | Path, limit_per_source: int | None = None) -> np.ndarray:
    """Each pair's source as load() would give them, without reading an image: enough to
    know the split before minutes of decoding."""
    path = Path(data)
    if path.is_file() and path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as pack:
            sources = pack["sources"]
        return sources[_first_per_source(sources, limit_per_source)]
    return np.array([row["source"] for row in manifest_rows(path, limit_per_source)])


def split(sources: np.ndarray, hold_out: str | None, val_fraction: float,
          seed: int, leave_out: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """train / val (a seeded share of each training source) / test (the held-out source).
    Sources in `leave_out` are in no part (an experiment on which sources train).

    Without a held-out source there is no test part: the shipped model trains on all four,
    and its figures are the per-source validation ones (the leave-one-source-out runs are
    the evaluation)."""
    rng = np.random.default_rng(seed)
    train, val = [], []
    for source in SOURCES:
        if source == hold_out or source in leave_out:
            continue
        index = rng.permutation(np.flatnonzero(sources == source))
        n_val = max(1, int(round(len(index) * val_fraction))) if len(index) > 1 else 0
        val.append(index[:n_val])
        train.append(index[n_val:])
    parts = {"train": np.sort(np.concatenate(train)), "val": np.sort(np.concatenate(val))}
    parts["test"] = np.flatnonzero(sources == hold_out) if hold_out else np.array([], dtype=int)
    return parts
