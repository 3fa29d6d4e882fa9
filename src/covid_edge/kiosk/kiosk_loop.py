"""The kiosk loop: take a frame, classify it, report it; again every `interval` seconds.

Reports go to sinks: the terminal always, and `covid-edge serve` when one is running (the loop
POSTs each result to the server's /api/v1/kiosk/frames, and the server's /kiosk page shows the
latest). The two run as separate processes so either can restart without the other, and the
loop keeps working, terminal only, while no server listens. Only the standard library talks
HTTP here: the loop needs no web framework.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable

from .camera import Frame, FrameSource
from .inference import CorruptImage, ImageResult, SharedClassifier, UnsupportedImage

FRAMES_PATH = "/api/v1/kiosk/frames"
POST_TIMEOUT_S = 3.0

Sink = Callable[[dict, bytes | None], None]


@dataclass
class KioskSummary:
    frames: int = 0  # frames classified: what --count counts
    unreadable: int = 0  # reported, but not frames: a bad file is not a picture shown
    verdicts: dict = field(default_factory=dict)

    @property
    def reported(self) -> int:
        """Records so far, readable or not: the number of the last one."""
        return self.frames + self.unreadable


def frame_record(number: int, frame: Frame, result: ImageResult | None, error: str | None,
                 shared: SharedClassifier, source: str, interval_s: float) -> dict:
    """What one frame produced, as printed with --json and posted to the server."""
    model = shared.model_info()
    record = {
        "frame": number,
        "source": source,
        "label": frame.label,
        "captured_at": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
        "verdict": None,
        "probability": None,
        "probabilities": None,
        "raw_probability": None,
        "raw_probabilities": None,
        "reason": None,
        "threshold": shared.threshold,
        "positive_label": model["positive_label"],
        "labels": model["labels"],
        "latency_ms": None,
        "total_ms": None,
        "runtime": model["runtime"],
        "model": {key: model[key] for key in ("name", "version", "variant")},
        "interval_s": interval_s,
        "error": error,
    }
    if result is not None:
        prediction = result.prediction
        # The raw (uncalibrated) values let the terminal say when an int8 output saturated,
        # as classify's table does (display.probability_text).
        record.update(verdict=prediction.verdict, probability=prediction.probability,
                      probabilities=getattr(prediction, "probabilities", None),
                      raw_probability=getattr(prediction, "raw_probability", None),
                      raw_probabilities=getattr(prediction, "raw_probabilities", None),
                      reason=getattr(prediction, "reason", None),
                      latency_ms=prediction.latency_ms, total_ms=prediction.total_ms)
    return record


def classify_frame(shared: SharedClassifier, frame: Frame) -> tuple[ImageResult | None,
                                                                    str | None]:
    if frame.error is not None:
        return None, frame.error
    try:
        if frame.data is not None:
            if not frame.data:
                return None, "empty or unreadable file"
            return shared.classify_bytes(frame.data, frame.label), None
        return shared.classify_picture(frame.picture, frame.label), None
    except (UnsupportedImage, CorruptImage) as exc:
        return None, str(exc)
    except MemoryError:
        return None, "not enough memory to decode it"
    except Exception as exc:  # noqa: BLE001 - one bad frame must not end the kiosk
        return None, f"cannot be classified ({type(exc).__name__}: {exc})"


def run_kiosk(shared: SharedClassifier, source: FrameSource, sinks: list[Sink],
              interval_s: float = 2.0, count: int | None = None,
              stop: threading.Event | None = None,
              summary: KioskSummary | None = None) -> KioskSummary:
    """Open `source`, then classify a frame every `interval_s` seconds (measured start to start)
    until `count` frames, `stop` is set, or the source fails (CameraUnavailable propagates).
    Unreadable frames are reported (and numbered) but do not count towards `count`. The source
    is always closed, also on Ctrl-C. `summary`, when given, is filled as the loop goes, so the
    caller still has the counts when the source fails."""
    stop = stop or threading.Event()
    summary = summary if summary is not None else KioskSummary()
    source.open()
    try:
        next_start = time.monotonic()
        while not stop.is_set() and (count is None or summary.frames < count):
            frame = source.read()
            number = summary.reported + 1
            result, error = classify_frame(shared, frame)
            record = frame_record(number, frame, result, error, shared, source.description,
                                  interval_s)
            _count(summary, record)
            if error and hasattr(source, "mark_failed"):
                # Reported once, not re-read every pass; a folder source ends when a whole
                # pass failed, rather than spinning on files it cannot show.
                source.mark_failed(frame)
            preview = result.preview_jpeg if result is not None else None
            for sink in sinks:
                sink(record, preview)
            if count is not None and summary.frames >= count:
                break
            next_start = _wait(stop, next_start, interval_s)
    finally:
        source.close()
    return summary


def _count(summary: KioskSummary, record: dict) -> None:
    if record["error"]:
        summary.unreadable += 1
    else:
        summary.frames += 1
        summary.verdicts[record["verdict"]] = summary.verdicts.get(record["verdict"], 0) + 1


def _wait(stop: threading.Event, next_start: float, interval_s: float) -> float:
    """Sleep until the next slot; returns its start. A slow frame does not make the next ones
    bunch up: missed slots are skipped."""
    next_start += interval_s
    now = time.monotonic()
    if next_start < now:
        next_start = now
    stop.wait(next_start - now)
    return next_start


class ServerPublisher:
    """POSTs each frame to a running `covid-edge serve`; never raises, so a missing or
    restarting server only costs the live page, not the loop. `notes` receives one line each
    time the connection state changes."""

    def __init__(self, base_url: str, notes: Callable[[str], None],
                 timeout_s: float = POST_TIMEOUT_S):
        self.base_url = base_url.rstrip("/")
        self.notes = notes
        self.timeout_s = timeout_s
        self.connected: bool | None = None  # None: not tried yet
        self.posted = 0

    def __call__(self, record: dict, preview: bytes | None) -> None:
        payload = dict(record)
        if preview is not None:
            payload["preview_jpeg_base64"] = base64.b64encode(preview).decode("ascii")
        request = urllib.request.Request(
            self.base_url + FRAMES_PATH, data=json.dumps(payload).encode("utf-8"),
            headers={"Content-Type": "application/json"}, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                response.read()
        except urllib.error.HTTPError as exc:
            self._failed(f"{self.base_url} refused the frame (HTTP {exc.code}: "
                         f"{_error_text(exc)})")
            return
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            self._failed(f"no covid-edge serve at {self.base_url} ({reason}): results go to "
                         "this terminal only; retrying with every frame")
            return
        self.posted += 1
        if not self.connected:
            self.notes(f"live page: {self.base_url}/kiosk")
        self.connected = True

    def _failed(self, message: str) -> None:
        if self.connected is not False:
            self.notes(message)
        self.connected = False


def _error_text(exc: urllib.error.HTTPError) -> str:
    try:
        return json.loads(exc.read().decode("utf-8"))["error"]
    except Exception:
        return exc.reason
