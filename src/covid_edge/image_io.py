"""Reading X-ray files as they are found in the wild into one 8-bit grayscale picture.

Everything a user can throw at `classify` passes through `read_grayscale`, so every way a file
can be bad ends here as an `ImageReadError` with a message a person can act on.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# A 4300x3500 digital radiograph is 15 MP; 100 MP leaves room for scans of film while refusing
# decompression bombs (a few kB of PNG that would inflate to gigabytes).
MAX_PIXELS = 100_000_000

# Pillow opens these and we can turn them into 8-bit grayscale.
HIGH_BIT_DEPTH_MODES = {"I;16", "I;16B", "I;16L", "I;16N", "I", "F"}

# Colourfulness is measured on a thumbnail this size: enough for a global statistic, ~1 ms.
COLOURFULNESS_THUMBNAIL = 64

DICOM_SUFFIXES = {".dcm", ".dicom"}
# PS3.10 7.1: a 128-byte preamble, then the four bytes "DICM".
_DICOM_MAGIC_OFFSET, _DICOM_MAGIC = 128, b"DICM"


class ImageReadError(Exception):
    """A file that cannot be read as an image; the message says why and what to do."""


@dataclass(frozen=True)
class DecodedImage:
    """What reading a file gives: the grayscale picture the model sees, and what the
    out-of-distribution guard needs to know about the file before colour is thrown away."""

    gray: Image.Image
    # Hasler-Suesstrunk colourfulness (0 = gray; about 15 "slightly", 33 "moderately"
    # colourful); None when the file's colour could not be measured cheaply.
    colourfulness: float | None
    size: tuple[int, int]  # (width, height) as stored, after EXIF rotation


def looks_like_dicom(source: str | Path | BinaryIO) -> bool:
    """A .dcm/.dicom name, or the DICM signature at byte 128 whatever the name (PACS exports
    often have none). Kept here, without pydicom, so that only DICOM files load it."""
    if hasattr(source, "read"):  # an upload held in memory: peek, then rewind
        try:
            start = source.tell()
            source.seek(_DICOM_MAGIC_OFFSET)
            magic = source.read(len(_DICOM_MAGIC))
            source.seek(start)
        except (OSError, ValueError):
            return False
        return magic == _DICOM_MAGIC
    path = Path(source)
    if path.suffix.lower() in DICOM_SUFFIXES:
        return True
    try:
        with open(path, "rb") as handle:
            handle.seek(_DICOM_MAGIC_OFFSET)
            return handle.read(len(_DICOM_MAGIC)) == _DICOM_MAGIC
    except OSError:
        return False  # Pillow's path below words missing or unreadable files


def read_grayscale(path: str | Path | BinaryIO, target_size: tuple[int, int] | None = None,
                   max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Open `path` (or a binary file object, e.g. an upload held in a BytesIO) and return an
    upright 8-bit grayscale ("L") image. See `read_image`."""
    return read_image(path, target_size, max_pixels).gray


def read_image(path: str | Path | BinaryIO, target_size: tuple[int, int] | None = None,
               max_pixels: int = MAX_PIXELS) -> DecodedImage:
    """Open `path` (or a binary file object, e.g. an upload held in a BytesIO): an upright
    8-bit grayscale ("L") image, with the file's colourfulness and size.

    DICOM files (by name or signature) go through covid_edge.dicom_io: Modality and VOI LUT,
    MONOCHROME1 inversion; they need the [dicom] extra.

    `target_size` (width, height) lets a large JPEG be decoded at a reduced scale in the DCT
    domain (Pillow's draft mode), which makes a 4000-pixel X-ray decode several times faster.
    """
    if not hasattr(path, "read"):
        path = Path(path)
    try:
        if looks_like_dicom(path):
            # Imported here: pydicom is an optional extra that PNG/JPEG users never load.
            from .dicom_io import read_dicom
            picture = read_dicom(path, max_pixels)
            if picture.mode == "RGB":
                return DecodedImage(picture.convert("L"), colourfulness(picture), picture.size)
            return DecodedImage(picture, None, picture.size)
        with warnings.catch_warnings():
            # We enforce our own pixel limit below; Pillow's warning would only be noise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                width, height = img.size
                if width * height > max_pixels:
                    raise ImageReadError(
                        f"{width}x{height} pixels is over the {max_pixels // 1_000_000} MP limit "
                        "(a decompression bomb or a scan far larger than any X-ray); "
                        "downscale it first")
                colour_lost = False
                if target_size is not None and img.format == "JPEG":
                    # Keep at least twice the target so the final resize still filters properly.
                    # A colour JPEG is decoded as YCbCr: its Y plane is bit for bit what a
                    # grayscale decode gives, and Cb/Cr still tell a colour photo apart.
                    mode = _jpeg_draft_mode(img)
                    colour_lost = mode == "L" and img.mode != "L"
                    img.draft(mode, (2 * target_size[0], 2 * target_size[1]))
                decoded_size = img.size
                img = ImageOps.exif_transpose(img)  # also forces the decode
                size = (height, width) if img.size != decoded_size else (width, height)
                colour = None if colour_lost else colourfulness(img)
                if img.mode == "YCbCr":
                    return DecodedImage(img.getchannel(0), colour, size)
                return DecodedImage(_to_8bit_gray(img), colour, size)
    except ImageReadError:
        raise
    except FileNotFoundError:
        raise ImageReadError("no such file") from None
    except IsADirectoryError:
        raise ImageReadError("is a folder, not an image file") from None
    except PermissionError:
        raise ImageReadError("permission denied") from None
    except UnidentifiedImageError:
        raise ImageReadError(
            "not an image format covid-edge can read (use PNG, JPEG, BMP, TIFF or DICOM)"
        ) from None
    except Image.DecompressionBombError as exc:
        raise ImageReadError(f"refused as a decompression bomb: {exc}") from None
    except (OSError, SyntaxError, ValueError) as exc:
        # Pillow reports truncated and corrupt data as OSError ("image file is truncated").
        raise ImageReadError(f"corrupt or truncated image: {exc}") from None


def _jpeg_draft_mode(img: Image.Image) -> str:
    if img.mode != "RGB" or img.info.get("adobe_transform") == 0:
        # Gray JPEGs stay gray; an Adobe JPEG stored as RGB cannot be decoded to YCbCr.
        return "L"
    return "YCbCr"


def colourfulness(img: Image.Image) -> float:
    """Hasler & Suesstrunk (2003), "Measuring colourfulness in natural images", on a thumbnail:
    sqrt(sd_rg^2 + sd_yb^2) + 0.3 sqrt(mean_rg^2 + mean_yb^2), rg = R - G, yb = (R + G)/2 - B."""
    if img.mode in ("L", "LA", "1") or img.mode in HIGH_BIT_DEPTH_MODES:
        return 0.0
    thumbnail = img.copy()
    thumbnail.thumbnail((COLOURFULNESS_THUMBNAIL, COLOURFULNESS_THUMBNAIL),
                        Image.Resampling.BILINEAR)
    if thumbnail.mode in ("RGBA", "PA") or (thumbnail.mode == "P"
                                            and "transparency" in thumbnail.info):
        rgba = thumbnail.convert("RGBA")  # as shown: on black, like the gray picture
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        thumbnail = Image.alpha_composite(background, rgba)
    rgb = np.asarray(thumbnail.convert("RGB"), dtype=np.float64)
    red, green, blue = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    rg, yb = red - green, 0.5 * (red + green) - blue
    return float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))


def _to_8bit_gray(img: Image.Image) -> Image.Image:
    if img.mode == "L":
        return img
    if img.mode in HIGH_BIT_DEPTH_MODES:
        # 12- and 16-bit radiographs rarely use the full range: stretch what is there.
        values = np.asarray(img, dtype=np.float64)
        lo, hi = float(values.min()), float(values.max())
        if hi <= lo:
            return Image.fromarray(np.zeros(values.shape, dtype=np.uint8), mode="L")
        scaled = np.rint((values - lo) * (255.0 / (hi - lo)))
        return Image.fromarray(scaled.astype(np.uint8), mode="L")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        # Transparent pixels are shown on black, as an X-ray viewer would.
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return Image.alpha_composite(background, rgba).convert("L")
    return img.convert("L")
