"""Classifying images that arrive as bytes (uploads) or pictures (camera frames), shared by the
web server and the kiosk loop.

One `Classifier` serves every request: a TFLite interpreter is not thread-safe, so inference
runs under a lock, while decoding and resizing (the slow part for a large X-ray) run outside it.
Pixels go through the same `read_grayscale` + `resize_gray` as `covid-edge classify`, so an
uploaded file gets exactly the verdict the command line gives for it.
"""

from __future__ import annotations

import importlib.util
import io
import threading
import time
import warnings
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

import numpy as np

from ..edge_runtime.classifier import Classifier, Prediction
from ..edge_runtime.explain import (DEFAULT_DISPLAY, VERDICT, Explanation, explain_pixels,
                                    overlay, png_bytes, render)
from ..edge_runtime.display import decision_rule
from ..edge_runtime.explain_lungs import attach_lungs
from ..edge_runtime.guard import NOT_CHEST_XRAY
from ..formats import (ACCEPTED_FORMATS, ACCEPTED_MEDIA_TYPES, ACCEPTED_TEXT, describe_refused,
                       pillow_open_formats, read_head)
from ..jpeg_frame import unreadable_jpeg_reason
from ..image_io import (DecodedImage, ImageReadError, UnsupportedImageKind,
                        decompression_bomb_message, looks_like_dicom, read_image, thumbnail_of)
from ..preprocess import resize_gray

# What the upload page and the API accept, by what the bytes are (not by the file name): the
# list of covid_edge.formats, the command line's. DICOM is recognised by its signature and
# read by covid_edge.dicom_io (the dicom extra).
__all__ = ["ACCEPTED_FORMATS", "ACCEPTED_MEDIA_TYPES", "ACCEPTED_TEXT"]
# The preview shown beside a verdict: big enough for a 7-inch screen, small enough to inline.
PREVIEW_MAX_SIDE = 512
PREVIEW_JPEG_QUALITY = 85
# What an explanation request can get back: the whole figure of `covid-edge explain` (title,
# colour bar, legend, disclaimer) or the heatmap over the X-ray alone, for a page that draws
# its own legend.
EXPLAIN_VIEWS = ("figure", "overlay")


class UnsupportedImage(Exception):
    """Bytes that are not an image of an accepted format (HTTP 415)."""


class CorruptImage(Exception):
    """An accepted format that cannot be decoded: truncated, corrupt, too many pixels (HTTP 422)."""


@dataclass
class ImageResult:
    prediction: Prediction
    image_format: str | None
    width: int  # of the picture as received, before any resizing
    height: int
    # The picture shown beside the verdict (the page, the kiosk); None where nobody shows it
    # (the JSON API), which saves a request a JPEG encode.
    preview_jpeg: bytes | None
    # What the model saw (uint8, model-size): the prediction page hands it back to
    # /api/v1/explain, so that the heatmap is of exactly these pixels without storing the upload.
    model_pixels: np.ndarray | None = None

    def image_info(self) -> dict:
        return {"format": self.image_format, "width": self.width, "height": self.height}


@dataclass
class ExplainResult:
    """An occlusion map of an upload, or the guard's refusal (then explanation and png are None)."""
    check: Prediction  # the ordinary classification, which ran the out-of-distribution guard
    explanation: Explanation | None
    png: bytes | None
    image_format: str | None
    width: int
    height: int
    total_ms: float

    @property
    def refused(self) -> bool:
        return self.explanation is None

    def image_info(self) -> dict:
        return {"format": self.image_format, "width": self.width, "height": self.height}


def identify(data: bytes | io.IOBase) -> tuple[str, tuple[int, int] | None]:
    """(format name, (width, height)) from the header alone (DICOM: size None, known after
    decoding); raises UnsupportedImage or CorruptImage."""
    stream = _stream(data)
    if looks_like_dicom(stream):
        if importlib.util.find_spec("pydicom") is None:
            from .. import install_hint

            raise UnsupportedImage("DICOM uploads need the dicom extra on this device: "
                                   f"{install_hint('dicom')}; or send PNG or JPEG")
        return "DICOM", None
    try:
        with warnings.catch_warnings():
            # read_grayscale enforces covid-edge's own pixel limit; Pillow's warning is noise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(stream, formats=pillow_open_formats(read_head(stream))) as img:
                image_format, size = img.format, img.size
    except Image.DecompressionBombError as exc:
        raise CorruptImage(decompression_bomb_message(exc)) from None
    except UnidentifiedImageError:
        stream.seek(0)
        raise UnsupportedImage(unreadable_jpeg_reason(stream)
                               or describe_refused(stream.read(32))) from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise CorruptImage(f"corrupt or truncated image: {exc}") from None
    if image_format not in ACCEPTED_FORMATS:  # MPO
        raise UnsupportedImage(describe_refused(b"", image_format))
    return image_format, size


def _stream(data):
    """Uploads arrive as bytes or, once spooled to disk, as a file object: read both alike."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        return io.BytesIO(data)
    data.seek(0)
    return data


def lossless_png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(pixels, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def preview_jpeg(gray: Image.Image) -> bytes:
    # What gray.copy().thumbnail(...) gives, without a full-size copy of a large upload.
    preview = thumbnail_of(gray, PREVIEW_MAX_SIDE)
    buffer = io.BytesIO()
    preview.save(buffer, format="JPEG", quality=PREVIEW_JPEG_QUALITY)
    return buffer.getvalue()


class SharedClassifier:
    """One loaded model shared by threads; safe to call from many requests at once."""

    def __init__(self, classifier: Classifier):
        self.classifier = classifier
        self._lock = threading.Lock()

    @property
    def threshold(self) -> float:
        return self.classifier.threshold

    def classify_bytes(self, data: bytes, name: str = "upload",
                       preview: bool = True) -> ImageResult:
        """Decode an uploaded file and classify it exactly as `Classifier.classify_file` does a
        file on disk; with `preview`, also the JPEG shown beside the verdict, made here in the
        calling (worker) thread while the decoded picture is at hand. Raises UnsupportedImage /
        CorruptImage."""
        start = time.perf_counter()
        image_format, (width, height), decoded, pixels = self._decode(data)
        # classify_pixels in its two stages: the guard's image and lung checks touch no
        # classifier interpreter state (the lung model has its own lock), so concurrent
        # requests run them side by side; only inference waits for the shared interpreter.
        prepared = self.classifier.prepare_pixels(
            pixels, name, colourfulness=decoded.colourfulness, size=decoded.size,
            gray=decoded.gray)
        with self._lock:
            prediction = self.classifier.finish(prepared)
        prediction.total_ms = (time.perf_counter() - start) * 1000.0
        return ImageResult(prediction, image_format, width, height,
                           preview_jpeg(decoded.gray) if preview else None, pixels)

    def explain_bytes(self, data: bytes, name: str = "upload", view: str = "figure",
                      display: int = DEFAULT_DISPLAY, target: str | None = None
                      ) -> ExplainResult:
        """Occlusion map of an uploaded file, as `covid-edge explain` draws it (`view` figure)
        or the heatmap over the X-ray alone (`overlay`), of the evidence for `target`
        (explain.resolve_target: a label, "verdict", or None for the default). Pictures the
        out-of-distribution guard refuses get no map. Raises UnsupportedImage / CorruptImage,
        ValueError for a bad view or target.

        The guard and the ~170 inferences of the map hold the lock (the interpreter is not
        thread-safe); decoding before and drawing after do not."""
        if view not in EXPLAIN_VIEWS:
            raise ValueError(f"view must be one of {', '.join(EXPLAIN_VIEWS)}, got {view!r}")
        if target not in (None, VERDICT, *self.classifier.labels):
            raise ValueError(f"no class {target!r}: choose {VERDICT} or one of "
                             f"{', '.join(self.classifier.labels)}")
        start = time.perf_counter()
        image_format, (width, height), decoded, pixels = self._decode(data)
        explanation = None
        with self._lock:
            check = self.classifier.classify_pixels(
                pixels, name, colourfulness=decoded.colourfulness, size=decoded.size,
                gray=decoded.gray)
            if check.verdict != NOT_CHEST_XRAY:
                explanation = attach_lungs(self.classifier,
                                           explain_pixels(self.classifier, pixels,
                                                          target=target))
        png = None
        if explanation is not None:
            shown = Image.fromarray(explanation.pixels) if explanation.cropped else decoded.gray
            picture = (render(explanation, decoded.gray, name, display) if view == "figure"
                       else overlay(shown, explanation.heatmap,
                                    explanation.colour_scale, display, explanation.lung_mask))
            png = png_bytes(picture)
        return ExplainResult(check, explanation, png, image_format, width, height,
                             (time.perf_counter() - start) * 1000.0)

    def _decode(self, data: bytes) -> tuple[str, tuple[int, int], DecodedImage, np.ndarray]:
        """(format, (width, height) as received, decoded picture, model-size pixels)."""
        image_format, size = identify(data)
        spec = self.classifier.spec
        try:
            decoded = read_image(_stream(data), target_size=(spec.width, spec.height),
                                 high_bit_depth=spec.high_bit_window)
        except UnsupportedImageKind as exc:  # well formed, of a kind not read: 415
            raise UnsupportedImage(str(exc)) from None
        except ImageReadError as exc:
            raise CorruptImage(str(exc)) from None
        except MemoryError:
            raise CorruptImage("not enough memory to decode it; downscale it first") from None
        if spec.crop:  # the lung model's interpreter is shared: hold the lock
            with self._lock:
                pixels, _ = self.classifier.pixels_from_gray(decoded.gray)
        else:
            pixels = resize_gray(decoded.gray, spec)
        return image_format, size or decoded.gray.size, decoded, pixels

    def classify_picture(self, picture: Image.Image, name: str = "frame") -> ImageResult:
        """Classify a picture already in memory (a camera frame, in colour). It is handed over
        as an uncompressed BMP so that it takes the very path of a file, colour measurement for
        the out-of-distribution guard included; encoding a BMP is a copy, not a compression."""
        buffer = io.BytesIO()
        picture.save(buffer, format="BMP")
        result = self.classify_bytes(buffer.getvalue(), name)
        result.image_format = None  # a camera frame, not a BMP anyone sent
        return result

    def model_info(self) -> dict:
        """Which model answers, for pages, API responses and the kiosk feed."""
        classifier = self.classifier
        described = classifier.describe()
        card = classifier.card
        return {
            "name": described["name"],
            "version": described["version"],
            "variant": described["variant"],
            "file": classifier.model_path.name,
            "input_shape": described["input_shape"],
            "input_dtype": described["input_dtype"],
            "labels": list(classifier.labels),
            "positive_label": classifier.positive_label,
            "output_kind": classifier.scheme.output_kind,
            "decision_rule": decision_rule(classifier.scheme),
            "threshold": classifier.threshold,
            "threshold_rule": card.get("threshold_rule"),
            # runtime_label names the Edge TPU too when the model runs on one.
            "runtime": getattr(classifier, "runtime_label", classifier.runtime.label),
            "threads": classifier.num_threads,
            "guard": getattr(classifier, "guard", None) is not None,
        }
