"""A stand-in for Raspberry Pi's `picamera2` package, for machines without a Pi camera.

It implements the part of the Picamera2 API that covid-edge's picamera2 source calls, with the
real library's rules: a camera number that does not exist raises IndexError; configure() takes
a configuration made by create_*_configuration() and only while stopped; capture_array() only
after start(); RGB888 arrays are (height, width, 3) uint8 in [B, G, R] order at the configured
size. Every call is logged in CALLS so tests can check the call pattern.

Tests set SCENE (PIL images the "camera" sees, in turn) and, to simulate a camera failing,
FAIL_AFTER (frames before capture_array raises like libcamera's frontend timeout).
"""

from __future__ import annotations

import numpy as np

SENSOR_SIZE = (4608, 2592)  # Camera Module 3
CAMERAS = 1
SCENE: list = []
FAIL_AFTER: int | None = None
CALLS: list[str] = []


def reset() -> None:
    global FAIL_AFTER
    SCENE.clear()
    CALLS.clear()
    FAIL_AFTER = None


class Picamera2:
    def __init__(self, camera_num: int = 0, tuning=None):
        CALLS.append(f"Picamera2({camera_num})")
        if camera_num >= CAMERAS:
            raise IndexError("list index out of range")
        self.camera_config = None
        self.started = False
        self.closed = False
        self._captured = 0

    def create_still_configuration(self, main=None, lores=None, raw=None, transform=None,
                                   colour_space=None, buffer_count=1, controls=None,
                                   display=None, encode=None, queue=True, sensor=None,
                                   use_case="still"):
        CALLS.append("create_still_configuration")
        main = dict(main or {})
        main.setdefault("format", "BGR888")
        main.setdefault("size", SENSOR_SIZE)
        if main["format"] not in ("RGB888", "BGR888", "XRGB8888", "XBGR8888", "YUV420"):
            raise ValueError(f"unknown format {main['format']}")
        return {"use_case": use_case, "main": main, "lores": lores, "raw": raw,
                "buffer_count": buffer_count}

    def configure(self, camera_config=None):
        CALLS.append("configure")
        if self.started:
            raise RuntimeError("Camera must be stopped before configuring")
        if not isinstance(camera_config, dict) or "main" not in camera_config:
            raise RuntimeError("configure() needs a configuration from create_*_configuration()")
        self.camera_config = camera_config

    def start(self, config=None, show_preview=False):
        CALLS.append("start")
        if self.closed:
            raise RuntimeError("Camera is closed")
        if config is not None:
            self.configure(config)
        if self.camera_config is None:
            raise RuntimeError("Camera has not been configured")
        self.started = True

    def capture_array(self, name="main", wait=None, signal_function=None):
        CALLS.append("capture_array")
        if not self.started:
            raise RuntimeError("Camera must be started before capturing")
        if FAIL_AFTER is not None and self._captured >= FAIL_AFTER:
            raise RuntimeError("Camera frontend has timed out!")
        if not SCENE:
            raise RuntimeError("stand-in: the test set no SCENE")
        stream = self.camera_config[name]
        width, height = stream["size"]
        picture = SCENE[self._captured % len(SCENE)].convert("RGB")
        if picture.size != (width, height):
            picture = picture.resize((width, height))
        self._captured += 1
        rgb = np.asarray(picture, dtype=np.uint8)
        if stream["format"] == "RGB888":  # libcamera's RGB888 is [B, G, R] in memory
            return np.ascontiguousarray(rgb[..., ::-1])
        if stream["format"] == "BGR888":
            return rgb
        raise RuntimeError(f"stand-in: capture of {stream['format']} is not implemented")

    def stop(self):
        CALLS.append("stop")
        self.started = False

    def close(self):
        CALLS.append("close")
        if self.started:
            self.stop()
        self.closed = True
