"""Reading X-ray files as they are found in the wild into one 8-bit grayscale picture.

Everything a user can throw at `classify` passes through `read_grayscale`, so every way a file
can be bad ends here as an `ImageReadError` with a message a person can act on.
"""

from __future__ import annotations

import errno
import math
import os
import re
import stat
import struct
import warnings
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, UnidentifiedImageError

from . import limits
from .formats import PILLOW_FORMATS, describe_refused, pillow_open_formats, read_head
from .jpeg_frame import unreadable_jpeg_reason

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


class UnsupportedImageKind(ImageReadError):
    """A file that is well formed but of a kind covid-edge does not read: a format, a JPEG
    process, several pictures in one file, a colour space, a DICOM encoding without a
    decoder. The server answers it 415 (send another kind), a damaged file 422."""


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


def decompression_bomb_message(exc: Exception, max_pixels: int = MAX_PIXELS) -> str:
    """Pillow refuses a header that claims more than twice its own pixel limit before
    covid-edge's check can: the same words as that check, with the size the header claims."""
    claimed = re.search(r"\((\d+) pixels\)", str(exc))
    size = f"{int(claimed.group(1)) / 1e6:,.0f} MP" if claimed else "its size"
    return (f"refused as a decompression bomb: its header claims {size}, over the "
            f"{max_pixels // 1_000_000} MP limit (a damaged file, or a scan far larger than any "
            "X-ray); downscale it first")


def read_grayscale(path: str | Path | BinaryIO, target_size: tuple[int, int] | None = None,
                   max_pixels: int = MAX_PIXELS, *, high_bit_depth: str = "minmax") -> Image.Image:
    """Open `path` (or a binary file object, e.g. an upload held in a BytesIO) and return an
    upright 8-bit grayscale ("L") image. See `read_image`."""
    return read_image(path, target_size, max_pixels, high_bit_depth=high_bit_depth).gray


def read_image(path: str | Path | BinaryIO, target_size: tuple[int, int] | None = None,
               max_pixels: int = MAX_PIXELS, max_bytes: int | None = None, *,
               high_bit_depth: str = "minmax", hold: ExitStack | None = None) -> DecodedImage:
    """Open `path` (or a binary file object, e.g. an upload held in a BytesIO): an upright
    8-bit grayscale ("L") image, with the file's colourfulness and size.

    Only the formats of covid_edge.formats are opened (PNG, JPEG, BMP, TIFF; DICOM by name or
    signature, through covid_edge.dicom_io with the [dicom] extra: Modality and VOI LUT,
    MONOCHROME1 inversion). A path must name a regular file: a pipe or device is refused by
    its type before it is opened, so it cannot hang the reader.

    Memory is bounded before anything is decoded: the pixel count against `max_pixels`, and
    the bytes that decoding and conversion will take (mode and size from the header) against
    `max_bytes` (covid_edge.limits.MAX_DECODE_BYTES by default).

    `target_size` (width, height) lets a large JPEG be decoded at a reduced scale in the DCT
    domain (Pillow's draft mode), which makes a 4000-pixel X-ray decode several times faster.

    `high_bit_depth`: how 12/16-bit data without a DICOM VOI becomes 8 bit, "minmax" or
    "percentile" (covid_edge.stretch); the model card's preprocessing names it
    (PreprocessSpec.high_bit_depth), so callers that classify pass the spec's.

    Threads decoding at once share one budget (covid_edge.limits.DECODING): a decode holds
    its cost until it is done, or, given `hold`, until the caller closes that ExitStack, for a
    caller that keeps the full-size picture a while (the folder pipeline resizes it).
    """
    if not hasattr(path, "read"):
        path = Path(path)
        _check_regular_file(path)
    try:
        if looks_like_dicom(path):
            # Imported here: pydicom is an optional extra that PNG/JPEG users never load.
            from .dicom_io import read_dicom
            picture = read_dicom(path, max_pixels, max_bytes, high_bit_depth=high_bit_depth,
                                 hold=hold)
            if picture.mode == "RGB":
                return DecodedImage(picture.convert("L"), colourfulness(picture), picture.size)
            return DecodedImage(picture, None, picture.size)
        with warnings.catch_warnings():
            # We enforce our own pixel limit below; Pillow's warning would only be noise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path, formats=pillow_open_formats(_head(path) or b"")) as img:
                if img.format not in PILLOW_FORMATS:  # MPO: the JPEG plugin's other face
                    raise UnsupportedImageKind(describe_refused(b"", img.format))
                _refuse_what_is_not_one_picture(img)
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
                cost = limits.decode_cost(img.mode, *img.size)
                limits.check(cost, f"{img.size[0]}x{img.size[1]} "
                             f"{limits.describe_mode(img.mode)}", max_bytes)
                with limits.reserved(cost, hold):
                    # Rotation is applied to the 8-bit result: a copy of one byte per pixel
                    # rather than of the decoded picture (pixel conversions do not care about
                    # the order). A PNG's getexif() decodes the picture (an eXIf chunk may
                    # follow the pixel data): it counts as the decode.
                    rotation = _EXIF_TRANSPOSE.get(img.getexif().get(_EXIF_ORIENTATION))
                    img.load()
                    colour = None if colour_lost else colourfulness(img)
                    gray = (img.getchannel(0) if img.mode == "YCbCr"
                            else _to_8bit_gray(img, high_bit_depth))
                    if gray is not img:  # the decoded picture goes before another decode starts
                        img.close()
                if rotation is not None:
                    gray = gray.transpose(rotation)
                rotated = rotation in _QUARTER_TURNS
                return DecodedImage(gray, colour, (height, width) if rotated else (width, height))
    except ImageReadError:
        raise
    except limits.BudgetExceeded as exc:
        raise ImageReadError(str(exc)) from None
    except FileNotFoundError:
        raise ImageReadError("no such file") from None
    except IsADirectoryError:
        raise ImageReadError("is a folder, not an image file") from None
    except PermissionError:
        raise ImageReadError("permission denied") from None
    except UnidentifiedImageError:
        raise UnsupportedImageKind(unreadable_jpeg_reason(path)
                                   or describe_refused(_head(path))) from None
    except Image.DecompressionBombError as exc:
        raise ImageReadError(decompression_bomb_message(exc, max_pixels)) from None
    except MemoryError:
        raise ImageReadError("not enough memory to decode it; downscale it first") from None
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, ZeroDivisionError) as exc:
        # Pillow reports truncated and corrupt data as OSError ("image file is truncated");
        # malformed headers surface as the others. A lossless JPEG fails here too.
        reason = unreadable_jpeg_reason(path)
        if reason:
            raise UnsupportedImageKind(reason) from None
        raise ImageReadError(f"corrupt or truncated image: {_one_line(exc)}") from None


# Colour spaces Pillow opens but cannot turn into RGB or gray (TIFF's CIELAB).
_UNCONVERTIBLE_MODES = {"LAB": "CIELAB colour", "HSV": "HSV colour"}
_NEW_SUBFILE_TYPE = 254  # TIFF tag; bit 0 set: a reduced-resolution copy of another page


def _refuse_what_is_not_one_picture(img: Image.Image) -> None:
    """A file of several pictures (a multi-page TIFF, an animated PNG) is refused rather than
    read as its first, as a multi-frame DICOM is: which page is the radiograph is not ours to
    guess. So is a colour space with no conversion to gray, by name rather than as a
    "corrupt" file."""
    if _holds_another_picture(img):
        kind = (f"an animated PNG with {img.n_frames} pictures" if img.format == "PNG"
                else f"a {img.format} file with more than one picture")
        raise UnsupportedImageKind(f"{kind}: covid-edge reads one picture per file; save the "
                                   "X-ray as a file of its own")
    if img.mode in _UNCONVERTIBLE_MODES:
        raise UnsupportedImageKind(f"{_UNCONVERTIBLE_MODES[img.mode]} {img.format}: no "
                                   "conversion to gray; save it as grayscale or RGB")


def _holds_another_picture(img: Image.Image) -> bool:
    """Whether a second full picture follows the first, from headers only: the PNG's animation
    chunk, or the TIFF's pointer to a second page and that page's own header (never a count:
    walking every page of a crafted TIFF costs seconds). A scanner's reduced-resolution
    thumbnail page is no second picture, and neither is a pointer to a page that cannot be
    read: such a file is read as its first page, as before."""
    if not getattr(img, "is_animated", False):
        return False
    if img.format != "TIFF":
        return True
    try:
        with warnings.catch_warnings():  # Pillow's "Corrupt EXIF data" about a damaged page
            warnings.simplefilter("ignore")
            img.seek(1)
        thumbnail = int(img.tag_v2.get(_NEW_SUBFILE_TYPE, 0)) & 1
    except Exception:  # noqa: BLE001 - a damaged page raises TypeError, ValueError, OSError...
        thumbnail = True
    img.seek(0)
    return not thumbnail


# EXIF orientation (tag 0x0112) -> the transposition that makes the picture upright, as
# ImageOps.exif_transpose applies it.
_EXIF_ORIENTATION = 0x0112
_EXIF_TRANSPOSE = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
                   4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
                   6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
                   8: Image.Transpose.ROTATE_90}
_QUARTER_TURNS = {Image.Transpose.TRANSPOSE, Image.Transpose.ROTATE_270,
                  Image.Transpose.TRANSVERSE, Image.Transpose.ROTATE_90}


def _check_regular_file(path: Path) -> None:
    """Refuse by type, from os.stat, what must not be opened: a named pipe would block the
    reader forever, a device would stream without end. Also the size cap."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise ImageReadError("no such file") from None
    except PermissionError:
        raise ImageReadError("permission denied") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ImageReadError("symbolic link loop") from None
        if exc.errno == errno.ENAMETOOLONG:
            raise ImageReadError("file name too long") from None
        raise ImageReadError(f"cannot read it: {exc.strerror or exc}") from None
    if stat.S_ISDIR(info.st_mode):
        raise ImageReadError("is a folder, not an image file")
    if not stat.S_ISREG(info.st_mode):
        kind = ("a named pipe (FIFO)" if stat.S_ISFIFO(info.st_mode) else
                "a socket" if stat.S_ISSOCK(info.st_mode) else
                "a device" if stat.S_ISCHR(info.st_mode) or stat.S_ISBLK(info.st_mode) else
                "not a regular file")
        raise ImageReadError(f"is {kind}, not an image file; refused without opening it")
    try:
        limits.check_file_size(info.st_size)
    except limits.BudgetExceeded as exc:
        raise ImageReadError(str(exc)) from None


def _head(source: Path | BinaryIO) -> bytes | None:
    """The first bytes, for the refusal's wording; None when they cannot be read."""
    if hasattr(source, "read"):
        return read_head(source)
    try:
        with open(source, "rb") as handle:
            return handle.read(32)
    except OSError:
        return None


def _one_line(exc: BaseException, limit: int = 200) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."


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
    thumbnail = thumbnail_of(img, COLOURFULNESS_THUMBNAIL)
    if thumbnail.mode in ("RGBA", "PA") or (thumbnail.mode == "P"
                                            and "transparency" in thumbnail.info):
        rgba = thumbnail.convert("RGBA")  # as shown: on black, like the gray picture
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        thumbnail = Image.alpha_composite(background, rgba)
    rgb = np.asarray(thumbnail.convert("RGB"), dtype=np.float64)
    red, green, blue = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    rg, yb = red - green, 0.5 * (red + green) - blue
    return float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))


def thumbnail_of(img: Image.Image, side: int) -> Image.Image:
    """What `img.copy().thumbnail((side, side), BILINEAR)` gives, without the full-size copy:
    the same size rule (aspect kept, Pillow's rounding) and the same resize."""
    width, height = img.size
    if side >= width and side >= height:
        return img
    aspect = width / height

    def round_aspect(number: float, key) -> int:
        return max(min(math.floor(number), math.ceil(number), key=key), 1)

    x = y = side
    if x / y >= aspect:
        x = round_aspect(y * aspect, key=lambda n: abs(aspect - n / y))
    else:
        y = round_aspect(x / aspect, key=lambda n: 0 if n == 0 else abs(aspect - x / n))
    if (x, y) == img.size:
        return img
    return img.resize((x, y), Image.Resampling.BILINEAR, reducing_gap=2.0)


# Conversions run on horizontal strips of this many rows, so that their working arrays (float64
# for a 16-bit stretch, RGBA for compositing) stay small whatever the picture's size.
STRIP_ROWS = 256


def _by_strips(img: Image.Image, convert) -> Image.Image:
    """An "L" image made strip by strip from `img` with `convert` (a pixel-wise conversion,
    so the result equals converting the whole picture at once)."""
    out = Image.new("L", img.size)
    for top in range(0, img.height, STRIP_ROWS):
        box = (0, top, img.width, min(img.height, top + STRIP_ROWS))
        out.paste(convert(img.crop(box)), box[:2])
    return out


def _strips(img: Image.Image):
    for top in range(0, img.height, STRIP_ROWS):
        yield np.asarray(img.crop((0, top, img.width, min(img.height, top + STRIP_ROWS))))


def _to_8bit_gray(img: Image.Image, high_bit_depth: str = "minmax") -> Image.Image:
    if img.mode == "L":
        return img
    if img.mode in HIGH_BIT_DEPTH_MODES:
        # 12- and 16-bit radiographs rarely use the full range: stretch what is there.
        from .stretch import check_window, stretcher, window_of
        check_window(high_bit_depth)
        lo, hi = (float(v) for v in img.getextrema())
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise ImageReadError("floating-point image with infinite or NaN values")
        if hi <= lo:
            return Image.new("L", img.size, 0)
        span = (lo, hi)
        if high_bit_depth != "minmax":
            lo, hi, *_ = window_of(_strips(img), high_bit_depth, span)
        # Integer modes go through a lookup table made once (stretch.py: the same bytes).
        convert = stretcher(lo, hi, integer=img.mode != "F", span=span)

        def stretch(strip: Image.Image) -> Image.Image:
            return Image.fromarray(convert(np.asarray(strip)), mode="L")

        return _by_strips(img, stretch)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        # Transparent pixels are shown on black, as an X-ray viewer would.
        def on_black(strip: Image.Image) -> Image.Image:
            rgba = strip.convert("RGBA")
            background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
            return Image.alpha_composite(background, rgba).convert("L")

        return _by_strips(img, on_black)
    return img.convert("L")
