"""The one list of image formats covid-edge accepts, shared by `classify`, `serve` and `kiosk`.

Pillow can open dozens of formats; an X-ray classifier needs five. Opening only these plugins
(`Image.open(..., formats=...)`) means a GIF, WebP or PostScript file never reaches a decoder
that was not meant for it: EPS in particular is rendered by Ghostscript, an external program,
and is never handed to it. Anything else is refused by name, with what to send instead.
"""

from __future__ import annotations

import importlib
from typing import BinaryIO

# Pillow's format names. DICOM is not a Pillow format: image_io sends it to dicom_io.
PILLOW_FORMATS = ("PNG", "JPEG", "BMP", "TIFF")
ACCEPTED_FORMATS = PILLOW_FORMATS + ("DICOM",)
ACCEPTED_TEXT = "PNG, JPEG, TIFF, BMP or DICOM"
ACCEPTED_MEDIA_TYPES = ("image/png", "image/jpeg", "image/tiff", "image/bmp",
                        "application/dicom")
# File names a folder or glob is searched for (a file named on the command line is read
# whatever its name: the content decides).
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".dcm",
                            ".dicom"})
# Picture formats people keep beside their X-rays that covid-edge does not read: a folder's
# files of these are counted and named when it is searched, not passed over in silence.
UNREAD_IMAGE_SUFFIXES = frozenset({".gif", ".webp", ".heic", ".heif", ".avif", ".jp2", ".j2k",
                                   ".jxl", ".psd"})

# Each accepted format's Pillow plugin, and the first bytes that plugin accepts (its _accept).
_PILLOW_PLUGINS = {"PNG": "PngImagePlugin", "JPEG": "JpegImagePlugin", "BMP": "BmpImagePlugin",
                   "TIFF": "TiffImagePlugin"}
_ACCEPTED_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "PNG"), (b"\xff\xd8\xff", "JPEG"), (b"BM", "BMP"),
    (b"MM\x00\x2a", "TIFF"), (b"II\x2a\x00", "TIFF"), (b"MM\x2a\x00", "TIFF"),
    (b"II\x00\x2a", "TIFF"), (b"MM\x00\x2b", "TIFF"), (b"II\x2b\x00", "TIFF"),
)


def pillow_open_formats(head: bytes) -> tuple[str, ...]:
    """PILLOW_FORMATS in the order to hand `Image.open(..., formats=...)`: the one the file's
    first bytes announce first, its plugin imported.

    Why: Image.open imports all of Pillow's ~50 plugins (50-150 ms here, a fifth of a cold
    one-image `classify`) as soon as a listed format's plugin is not loaded yet. Importing the
    announced one is enough to open the file; where the bytes announce none, all four are
    imported, so Pillow's own plugins still decide what opens, as before.
    """
    announced = next((name for signature, name in _ACCEPTED_SIGNATURES
                      if head.startswith(signature)), None)
    for name in (announced,) if announced else PILLOW_FORMATS:
        importlib.import_module(f"PIL.{_PILLOW_PLUGINS[name]}")
    if announced is None:
        return PILLOW_FORMATS
    return (announced,) + tuple(name for name in PILLOW_FORMATS if name != announced)


# Formats people do send, recognised by their first bytes so that the refusal can name them.
# (Only a message depends on this table; acceptance depends on PILLOW_FORMATS alone.)
_SIGNATURES = (
    (b"GIF87a", "GIF"), (b"GIF89a", "GIF"),
    (b"%!PS", "PostScript/EPS"), (b"\xc5\xd0\xd3\xc6", "EPS"), (b"%PDF", "PDF"),
    (b"\x00\x00\x00\x0cjP  ", "JPEG 2000"), (b"\xff\x4f\xff\x51", "JPEG 2000"),
    (b"8BPS", "Photoshop PSD"), (b"\x00\x00\x01\x00", "ICO"), (b"icns", "ICNS"),
    (b"qoif", "QOI"), (b"DDS ", "DDS"),
)


def describe_refused(head: bytes | None, pillow_format: str | None = None) -> str:
    """The one-line refusal for a file that is not of an accepted format; `head` is the file's
    first bytes (None: they could not be read), `pillow_format` what Pillow called it when it
    could open it (MPO)."""
    name = pillow_format or _sniff(head or b"")
    if name == "MPO":
        return ("a multi-picture JPEG (MPO, from a 3D camera or some phones) is not accepted: "
                f"save the picture as a plain JPEG or PNG ({ACCEPTED_TEXT})")
    if head == b"" and not pillow_format:  # a failed copy or download, not a wrong format
        return f"empty file (0 bytes): not an image; copy or save it again ({ACCEPTED_TEXT})"
    what = f"{name} images are not accepted" if name else "not an image covid-edge can read"
    return f"{what}: use {ACCEPTED_TEXT}"


def _sniff(head: bytes) -> str | None:
    for signature, name in _SIGNATURES:
        if head.startswith(signature):
            return name
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    if len(head) >= 2 and head[0:1] == b"P" and head[1:2] in b"1234567" and head[1:2]:
        return "PNM (PBM/PGM/PPM)"
    if head[4:12] in (b"ftypheic", b"ftypheix", b"ftypmif1", b"ftypavif"):
        return "HEIF/AVIF"
    return None


def read_head(source: BinaryIO, size: int = 32) -> bytes:
    """The first bytes of an open binary file, leaving its position where it was."""
    try:
        start = source.tell()
        source.seek(0)
        head = source.read(size)
        source.seek(start)
        return head
    except (OSError, ValueError):
        return b""
