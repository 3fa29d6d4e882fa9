"""Where kiosk frames come from: a folder of images, the Raspberry Pi camera (picamera2) or a
USB/V4L2 camera (OpenCV). Each source is opened once, read once per frame and closed at the end.

Camera libraries are imported only when their source is asked for: picamera2 exists only on
Raspberry Pi OS (as an apt package tied to its libcamera), OpenCV is an optional heavy install.
"""

from __future__ import annotations

import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image

from ..formats import ACCEPTED_TEXT, IMAGE_SUFFIXES

DEFAULT_RESOLUTION = (1280, 960)
# Auto-exposure and white balance need a moment after start(); Picamera2's examples wait 1-2 s.
DEFAULT_WARMUP_S = 1.0

PICAMERA2_HELP = (
    "picamera2 is not installed in this Python. On Raspberry Pi OS (Bookworm) install it with "
    "apt, not pip: `sudo apt install -y python3-picamera2`, and run covid-edge from a venv made "
    "with `python3 -m venv --system-site-packages ...` so the venv sees the apt package "
    "(see docs/kiosk.md)")
OPENCV_HELP = (
    "USB/V4L2 cameras are read through OpenCV, which is not installed: "
    "`pip install opencv-python-headless` (on Raspberry Pi OS: `sudo apt install -y "
    "python3-opencv` with a --system-site-packages venv)")

# A folder frame is read whole (it is decoded as an upload would be): larger files are refused
# from their size, before reading, like an upload over serve's limit.
FOLDER_MAX_FILE_BYTES = 64 * 1024 * 1024

SOURCE_HELP = "folder:DIR, picamera2[:CAMERA_NUMBER] or v4l2:DEVICE (e.g. v4l2:/dev/video0)"


class CameraUnavailable(Exception):
    """A source that cannot be opened or stopped giving frames; the message says what to do."""


@dataclass
class Frame:
    label: str  # what the terminal line names: a file name, "picamera2 frame 3"
    picture: Image.Image | None = None  # a camera frame (RGB)
    data: bytes | None = None  # a file's bytes, decoded exactly as an upload would be
    error: str | None = None  # the source could not give this frame (the file is unreadable)
    path: Path | None = None  # the file a folder frame came from


class FrameSource(Protocol):
    description: str

    def open(self) -> None: ...

    def read(self) -> Frame: ...

    def close(self) -> None: ...


class FolderSource:
    """The images of a folder in sorted order, over and over (a demo slideshow, or a folder
    another capture tool writes into: it is listed again at the start of every pass).

    A file that cannot be shown (unreadable, too large, not an image) is reported once and then
    left out of later passes until it changes (size or modification time): a bad file costs
    one line, not a re-read every pass. A pass in which every file failed, or a folder left
    with no image, ends the source (CameraUnavailable): a folder with nothing to show is a
    source that stopped giving frames, not one to poll at full speed."""

    def __init__(self, folder: str | Path, max_file_bytes: int = FOLDER_MAX_FILE_BYTES):
        self.folder = Path(folder)
        self.max_file_bytes = max_file_bytes
        self.description = f"folder:{self.folder}"
        self._queue: list[Path] = []
        self._failed: dict[Path, tuple[int, int]] = {}
        # Files handed out in the current pass, and how many of them the loop marked failed.
        self._pass_reads = 0
        self._pass_failures = 0

    def open(self) -> None:
        if not self.folder.is_dir():
            raise CameraUnavailable(f"{self.folder}: no such folder")
        if not self._list(skip_failed=False):
            raise CameraUnavailable(f"{self.folder}: holds no image ({ACCEPTED_TEXT})")

    def _list(self, skip_failed: bool = True) -> list[Path]:
        try:
            entries = list(self.folder.iterdir())
        except OSError as exc:
            raise CameraUnavailable(f"{self.folder}: cannot be listed ({exc.strerror})") from None
        found = []
        for path in sorted(entries):
            if path.suffix.lower() not in IMAGE_SUFFIXES or path.name.startswith("."):
                continue
            signature = _signature(path)
            if signature is None:  # not a regular file (a pipe, a device) or gone
                continue
            if skip_failed and self._failed.get(path) == signature:
                continue
            found.append(path)
        return found

    def read(self) -> Frame:
        if not self._queue:
            self._next_pass()
        path = self._queue.pop(0)
        self._pass_reads += 1
        try:
            info = os.stat(path)
            if not stat.S_ISREG(info.st_mode):
                raise OSError(0, "not a regular file")
            if info.st_size > self.max_file_bytes:
                return Frame(label=path.name, path=path, error=(
                    f"file of {info.st_size / 2**20:.0f} MB is over the "
                    f"{self.max_file_bytes / 2**20:.0f} MB limit for one frame; not read"))
            with open(path, "rb") as handle:
                # Read at most the limit: a file growing while it is read stays bounded.
                data = handle.read(self.max_file_bytes + 1)
        except (OSError, MemoryError) as exc:
            # A file removed or unreadable between listing and reading: an unreadable frame,
            # which the loop reports and goes on.
            reason = getattr(exc, "strerror", None) or "out of memory"
            return Frame(label=path.name, path=path, error=f"cannot be read ({reason})")
        if len(data) > self.max_file_bytes:
            return Frame(label=path.name, path=path,
                         error=f"grew over the {self.max_file_bytes / 2**20:.0f} MB limit")
        return Frame(label=path.name, data=data, path=path)

    def _next_pass(self) -> None:
        """List the folder again for the next pass; raises CameraUnavailable when the last
        pass showed nothing or nothing is left to try."""
        if self._pass_reads and self._pass_failures >= self._pass_reads:
            # Checked on its own too: a bad file that keeps changing (rewritten, touched) is
            # listed again every pass and would fail forever.
            raise self._nothing_readable()
        self._pass_reads = self._pass_failures = 0
        self._queue = self._list()
        if not self._queue:
            if self._failed and self._list(skip_failed=False):
                raise self._nothing_readable()  # only files that already failed
            raise CameraUnavailable(f"{self.folder}: no image left in the folder")

    def _nothing_readable(self) -> CameraUnavailable:
        return CameraUnavailable(
            f"{self.folder}: none of its images can be read (each was reported unreadable); "
            f"add a readable image ({ACCEPTED_TEXT}) or fix those files")

    def mark_failed(self, frame: Frame) -> None:
        """Leave the frame's file out of later passes until it changes."""
        self._pass_failures += 1
        if frame.path is not None:
            signature = _signature(frame.path)
            if signature is not None:
                self._failed[frame.path] = signature

    def close(self) -> None:
        self._queue = []


def _signature(path: Path) -> tuple[int, int] | None:
    """(size, modification time) of a regular file; None for anything else."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    if not stat.S_ISREG(info.st_mode):
        return None
    return info.st_size, info.st_mtime_ns


class Picamera2Source:
    """The Raspberry Pi camera through picamera2: configure a still stream once, start, then
    capture_array() per frame; stop and close at the end."""

    def __init__(self, camera_num: int = 0, resolution: tuple[int, int] = DEFAULT_RESOLUTION,
                 warmup_s: float = DEFAULT_WARMUP_S):
        self.camera_num = camera_num
        self.resolution = resolution
        self.warmup_s = warmup_s
        self.description = f"picamera2:{camera_num}"
        self._camera = None
        self._frames = 0

    def open(self) -> None:
        try:
            from picamera2 import Picamera2
        except ImportError:
            raise CameraUnavailable(PICAMERA2_HELP) from None
        try:
            camera = Picamera2(self.camera_num)
        except Exception as exc:  # IndexError, RuntimeError from libcamera: no camera there
            raise CameraUnavailable(
                f"cannot open Raspberry Pi camera {self.camera_num} ({exc}); check the ribbon "
                "cable and that `rpicam-hello --list-cameras` lists it") from None
        self._camera = camera
        try:
            # RGB888 is libcamera's name for 8-bit pixels stored in [B, G, R] order.
            config = camera.create_still_configuration(
                main={"size": tuple(self.resolution), "format": "RGB888"})
            camera.configure(config)
            camera.start()
        except Exception as exc:
            self.close()
            raise CameraUnavailable(f"cannot start Raspberry Pi camera {self.camera_num} "
                                    f"({exc})") from None
        if self.warmup_s > 0:
            time.sleep(self.warmup_s)

    def read(self) -> Frame:
        try:
            array = self._camera.capture_array("main")
        except Exception as exc:
            raise CameraUnavailable(f"Raspberry Pi camera stopped giving frames ({exc})") from None
        self._frames += 1
        return Frame(label=f"picamera2 frame {self._frames}", picture=bgr_to_picture(array))

    def close(self) -> None:
        camera, self._camera = self._camera, None
        if camera is None:
            return
        try:
            camera.stop()
        finally:
            camera.close()


class V4L2Source:
    """A USB or other V4L2 camera through OpenCV's VideoCapture."""

    def __init__(self, device: str, resolution: tuple[int, int] = DEFAULT_RESOLUTION):
        self.device = device
        self.resolution = resolution
        self.description = f"v4l2:{device}"
        self._capture = None
        self._cv2 = None
        self._frames = 0

    def open(self) -> None:
        try:
            import cv2
        except ImportError:
            raise CameraUnavailable(OPENCV_HELP) from None
        device = int(self.device) if self.device.isdigit() else self.device
        capture = cv2.VideoCapture(device, cv2.CAP_V4L2)
        if not capture.isOpened():
            raise CameraUnavailable(
                f"cannot open camera {self.device}: check `v4l2-ctl --list-devices` and that "
                "this user is in the video group")
        capture.set(cv2.CAP_PROP_FRAME_WIDTH, self.resolution[0])
        capture.set(cv2.CAP_PROP_FRAME_HEIGHT, self.resolution[1])
        # Frames are seconds apart: a queue of old frames would show the past, keep one.
        capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        self._capture, self._cv2 = capture, cv2

    def read(self) -> Frame:
        ok, array = self._capture.read()
        if not ok or array is None:
            raise CameraUnavailable(f"camera {self.device} stopped giving frames")
        self._frames += 1
        return Frame(label=f"v4l2 frame {self._frames}", picture=bgr_to_picture(array))

    def close(self) -> None:
        capture, self._capture = self._capture, None
        if capture is not None:
            capture.release()


def bgr_to_picture(array: np.ndarray) -> Image.Image:
    """An (H, W, 3 or 4) uint8 frame in [B, G, R(, X)] order (picamera2 RGB888/XRGB8888,
    OpenCV) as an RGB picture. Colour is kept: the classifier turns it gray the way it does
    every file, after the out-of-distribution guard has measured how colourful it is."""
    array = np.asarray(array)
    if array.ndim == 2:
        return Image.fromarray(array.astype(np.uint8), mode="L")
    if array.ndim != 3 or array.shape[2] not in (3, 4):
        raise CameraUnavailable(f"unexpected camera frame of shape {array.shape}")
    rgb = np.ascontiguousarray(array[..., 2::-1])  # drop any padding byte, BGR -> RGB
    return Image.fromarray(rgb.astype(np.uint8), mode="RGB")


def parse_resolution(text: str) -> tuple[int, int]:
    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"{text!r} is not WIDTHxHEIGHT, e.g. 1280x960") from None
    if width <= 0 or height <= 0:
        raise ValueError(f"{text!r}: width and height must be positive")
    return width, height


def open_source(spec: str, resolution: tuple[int, int] = DEFAULT_RESOLUTION,
                warmup_s: float = DEFAULT_WARMUP_S) -> FrameSource:
    """A FrameSource for `folder:DIR`, `picamera2[:N]` or `v4l2:DEVICE` (not yet opened).
    Raises ValueError for text that names none of them."""
    kind, _, argument = spec.partition(":")
    kind = kind.lower()
    if kind == "folder":
        if not argument:
            raise ValueError("folder: needs a folder, e.g. folder:samples/")
        return FolderSource(argument)
    if kind == "picamera2":
        if argument and not argument.isdigit():
            raise ValueError(f"picamera2:{argument}: the camera number must be 0, 1, ...")
        return Picamera2Source(int(argument or 0), resolution, warmup_s)
    if kind == "v4l2":
        return V4L2Source(argument or "/dev/video0", resolution)
    raise ValueError(f"unknown source {spec!r}: use {SOURCE_HELP}")
