"""The latest kiosk frame, held in memory by the server for the live /kiosk page.

Only the newest frame is kept: the page shows what the camera sees now, and nothing about a
frame outlives the server process.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class FeedEntry:
    seq: int
    received_at: float
    record: dict
    preview_jpeg: bytes | None


class KioskFeed:
    def __init__(self):
        self._lock = threading.Lock()
        self._latest: FeedEntry | None = None

    def publish(self, record: dict, preview_jpeg: bytes | None) -> int:
        with self._lock:
            seq = (self._latest.seq if self._latest else 0) + 1
            self._latest = FeedEntry(seq, time.time(), record, preview_jpeg)
            return seq

    def latest(self) -> FeedEntry | None:
        with self._lock:
            return self._latest
