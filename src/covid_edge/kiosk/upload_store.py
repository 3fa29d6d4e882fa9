"""`serve --save-uploads DIR`: keeping uploads with their predictions, within a quota.

Each upload is stored once under its sha256 (the same X-ray posted twenty times is one file),
with its latest prediction as JSON beside it. Pictures the out-of-distribution guard refused
are not kept unless asked (`--save-refused`): they are usually not X-rays at all, and a folder
of selfies is not what anyone meant to collect. When the quota (files or MB) is reached, new
uploads are still answered but no longer stored, and the log says so once.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from .. import DISCLAIMER
from ..edge_runtime.guard import NOT_CHEST_XRAY
from .http_limits import note

DEFAULT_MAX_FILES = 1000
DEFAULT_MAX_MB = 1024.0
SIDECAR_SUFFIX = ".json"
_SUFFIXES = {"JPEG": "jpg", "TIFF": "tif", "DICOM": "dcm"}


@dataclass(frozen=True)
class StoreSettings:
    max_files: int = DEFAULT_MAX_FILES
    max_bytes: int = int(DEFAULT_MAX_MB * 1024 * 1024)
    keep_refused: bool = False


class UploadStore:
    def __init__(self, folder: Path, settings: StoreSettings | None = None):
        self.folder = Path(folder)
        self.settings = settings or StoreSettings()
        self.folder.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        # What is there already counts against the quota (a restart does not reset it).
        images = [p for p in self.folder.iterdir()
                  if p.is_file() and not p.name.endswith(SIDECAR_SUFFIX)]
        self.files = len(images)
        self.bytes = sum(p.stat().st_size for p in images)

    def save(self, upload: BinaryIO, result) -> str | None:
        """Store `upload` (a file object) with `result`'s prediction; returns the stored name,
        or None when it is not kept (refused by the guard, or the quota is full)."""
        if result.prediction.verdict == NOT_CHEST_XRAY and not self.settings.keep_refused:
            return None
        digest = _sha256(upload)
        name = f"{digest}.{_SUFFIXES.get(result.image_format, (result.image_format or 'bin').lower())}"
        path = self.folder / name
        with self._lock:
            if not path.exists():
                size = _size(upload)
                if (self.files + 1 > self.settings.max_files
                        or self.bytes + size > self.settings.max_bytes):
                    note("upload-quota", f"--save-uploads quota reached ({self.files} files, "
                                         f"{self.bytes / 2**20:.0f} MB in {self.folder}): new "
                                         "uploads are answered but not stored")
                    return None
                upload.seek(0)
                partial = path.with_name(path.name + ".part")
                with open(partial, "wb") as handle:
                    shutil.copyfileobj(upload, handle, 1 << 20)
                partial.replace(path)
                self.files += 1
                self.bytes += size
            sidecar = {**result.prediction.to_dict(), "image": result.image_info(),
                       "disclaimer": DISCLAIMER}
            (self.folder / f"{name}{SIDECAR_SUFFIX}").write_text(
                json.dumps(sidecar, indent=2) + "\n", encoding="utf-8")
        return name


def _sha256(upload: BinaryIO) -> str:
    upload.seek(0)
    digest = hashlib.sha256()
    for block in iter(lambda: upload.read(1 << 20), b""):
        digest.update(block)
    return digest.hexdigest()


def _size(upload: BinaryIO) -> int:
    return upload.seek(0, 2)
