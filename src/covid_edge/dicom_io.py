"""Reading a DICOM radiograph into the 8-bit grayscale picture a radiologist's viewer would show.

Hospitals store X-rays as DICOM, not PNG. The stored numbers are not display gray levels: they
go through the DICOM grayscale pipeline (PS3.4 Annex N.2.1) first, and this module follows it
with pydicom's own implementations:

    stored values -> Modality LUT (Rescale Slope/Intercept or a LUT)      pydicom apply_modality_lut
                  -> VOI LUT (the first VOI LUT, else the first window)   pydicom apply_voi_lut
                  -> MONOCHROME1 inverted (high values shown dark)
                  -> the VOI's output range mapped linearly onto 0..255

Without a VOI LUT or window, 8-bit unsigned data is used as stored (a secondary capture of a
JPEG gives back the JPEG's pixels) and deeper data is min-max stretched, the rule image_io uses
for 16-bit PNG/TIFF. Colour images (RGB, YBR, palette) are converted to RGB by pydicom and then
to gray with Pillow's ITU-R 601 luma, as any colour image is.

Decisions worth knowing:
- Multi-frame files are refused, not reduced to their first frame: a chest radiograph is one
  frame, while multi-frame objects (CT/MR stacks, fluoroscopy, tomosynthesis) are not what the
  model was trained on, and classifying frame 1 silently would hide that.
- A compressed transfer syntax pydicom cannot decode with what is installed (JPEG Lossless and
  JPEG-LS need pylibjpeg or GDCM; JPEG baseline and JPEG 2000 decode through Pillow) is
  refused with the transfer syntax's name and what to install or how to decompress the file.
- MONOCHROME1 is inverted once, whatever Presentation LUT Shape says: in DX objects INVERSE is
  the same statement as MONOCHROME1 (PS3.3, DX Image module), not a second inversion.

pydicom is an optional extra (the [dicom] extra), imported only when a file
is DICOM, so PNG/JPEG users never pay for it.
"""

from __future__ import annotations

import warnings
from contextlib import ExitStack
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image

from . import install_hint, limits
from .image_io import ImageReadError, UnsupportedImageKind

# What to install for each family of compressed transfer syntaxes (pydicom's decoder plugins).
_DECODER_PACKAGES = {
    "JPEG-LS": "pip install pylibjpeg pylibjpeg-libjpeg  (or pyjpegls)",
    "JPEG 2000": "pip install pylibjpeg pylibjpeg-openjpeg",
    "JPEG": "pip install pylibjpeg pylibjpeg-libjpeg",
    "RLE": "pip install pylibjpeg pylibjpeg-rle",
}
# The grayscale pipeline runs on strips of this many rows (float64 working arrays stay small).
STRIP_ROWS = 256
_DECOMPRESS_HINT = ("or decompress the file first, e.g. `gdcmconv --raw IN.dcm OUT.dcm` (GDCM) "
                    "or `dcmdjpeg IN.dcm OUT.dcm` / `dcmdjpls IN.dcm OUT.dcm` (DCMTK)")


def read_dicom(path: str | Path | BinaryIO, max_pixels: int,
               max_bytes: int | None = None, *, high_bit_depth: str = "minmax",
               hold: ExitStack | None = None) -> Image.Image:
    """Read a single-frame DICOM image as an 8-bit PIL image: grayscale ("L") for monochrome
    data, "RGB" for colour (RGB, YBR, palette), so that the caller can still tell that a
    colour ultrasound or photo is no X-ray.

    Memory is bounded before the pixels are decoded: the file's size, then the pixel count
    and the bytes of Rows x Columns x BitsAllocated x SamplesPerPixel (covid_edge.limits).
    Raises ImageReadError (never a pydicom exception) with a message a user can act on.
    OSErrors (missing file, permission) propagate so that image_io words them like any image's.
    `high_bit_depth`: the window for deep data without a VOI ("minmax" or "percentile",
    covid_edge.stretch).
    """
    pydicom = _import_pydicom()
    from pydicom.errors import InvalidDicomError

    if not hasattr(path, "read"):
        path = Path(path)
    budget = limits.MAX_DECODE_BYTES if max_bytes is None else max_bytes
    try:
        # A DICOM file is parsed whole, Pixel Data included: cap it before reading.
        limits.check_file_size(_size_of(path), budget)
    except limits.BudgetExceeded as exc:
        raise ImageReadError(str(exc)) from None
    try:
        # A DICOM file is read whole before its header tells the decode's cost (and compressed
        # pixel data decodes to many times the file): it reserves the whole budget.
        with limits.reserved(budget, hold), warnings.catch_warnings():
            # pydicom warns about every small standard violation; real-world files have many.
            warnings.simplefilter("ignore")
            try:
                ds = pydicom.dcmread(path)
            except InvalidDicomError:
                ds = _read_without_preamble(pydicom, path)
            _check_image(ds, max_pixels)
            _ensure_transfer_syntax(ds)
            _check_budget(ds, budget)
            stored = _decode(ds)
            return _to_display_image(stored, ds, high_bit_depth)
    except ImageReadError:
        raise
    except OSError:
        raise
    except (InvalidDicomError, EOFError) as exc:
        raise ImageReadError(f"not a readable DICOM file ({_first_line(exc)})") from None
    except (AttributeError, KeyError, TypeError, ValueError, NotImplementedError,
            RuntimeError) as exc:
        # Missing or contradictory image attributes, truncated pixel data.
        raise ImageReadError(f"corrupt or unsupported DICOM image: {_first_line(exc)}") from None


def _size_of(source) -> int:
    if hasattr(source, "seek"):
        start = source.tell()
        size = source.seek(0, 2)
        source.seek(start)
        return size
    return Path(source).stat().st_size


def _check_budget(ds, budget: int) -> None:
    """The decode's memory from the header, and for native (uncompressed) pixel data, that
    the bytes present are the bytes the header describes: 16-bit data labelled BitsAllocated 8
    would otherwise be decoded as garbage."""
    rows, columns = int(ds.Rows), int(ds.Columns)
    bits, samples = int(ds.BitsAllocated), int(ds.SamplesPerPixel)
    if bits not in (1, 8, 16, 32, 64) or samples not in (1, 3):
        raise ImageReadError(f"corrupt DICOM image: BitsAllocated {bits}, SamplesPerPixel "
                             f"{samples}")
    bits_stored = int(ds.get("BitsStored") or bits)
    if not 1 <= bits_stored <= bits:
        raise ImageReadError(f"corrupt DICOM image: BitsStored {bits_stored} with "
                             f"BitsAllocated {bits}")
    try:
        limits.check(limits.dicom_cost(rows, columns, bits, samples),
                     f"{columns}x{rows} {bits}-bit DICOM", budget)
    except limits.BudgetExceeded as exc:
        raise ImageReadError(str(exc)) from None
    if ds.file_meta.TransferSyntaxUID.is_compressed:
        return
    expected = (rows * columns * samples * bits + 7) // 8
    present = len(ds.PixelData)
    # Pixel Data is padded to an even length.
    if present not in (expected, expected + 1):
        raise ImageReadError(
            f"corrupt or mislabelled DICOM image: Pixel Data holds {present} bytes, but "
            f"{columns}x{rows} x {samples} sample(s) x {bits} bits allocated make {expected}; "
            "the header does not describe the pixels")


def _import_pydicom():
    try:
        import pydicom
    except ImportError:
        raise UnsupportedImageKind(
            f"is a DICOM file; reading DICOM needs pydicom: {install_hint('dicom')}") from None
    return pydicom


def _read_without_preamble(pydicom, path):
    """Older PACS exports (ACR-NEMA style) lack the preamble and file meta; pydicom reads them
    with force=True."""
    from pydicom.errors import InvalidDicomError

    if hasattr(path, "seek"):
        path.seek(0)
    ds = pydicom.dcmread(path, force=True)
    if "PixelData" not in ds or "Rows" not in ds:
        raise InvalidDicomError("no DICM signature and no image in it")
    return ds


def _ensure_transfer_syntax(ds) -> None:
    """Without a Transfer Syntax UID in the file meta, the pixel data is encoded as the
    dataset itself was (all pydicom could have read)."""
    from pydicom.uid import (ExplicitVRBigEndian, ExplicitVRLittleEndian,
                             ImplicitVRLittleEndian)

    if "TransferSyntaxUID" in ds.file_meta:
        return
    implicit_vr, little_endian = ds.original_encoding
    if implicit_vr is None:
        raise ImageReadError("corrupt DICOM file: no transfer syntax and no way to tell it")
    ds.file_meta.TransferSyntaxUID = (
        ImplicitVRLittleEndian if implicit_vr else
        ExplicitVRLittleEndian if little_endian else ExplicitVRBigEndian)


def _check_image(ds, max_pixels: int) -> None:
    if "PixelData" not in ds:
        kind = ds.get("Modality") or ds.get("SOPClassUID", "")
        name = getattr(kind, "name", kind)
        # A CR or DX object without pixels is a header the archive sent alone (or a report):
        # asking for a radiograph file would then read as nonsense.
        advice = ("export it again with its image" if str(name) in ("CR", "DX") else
                  "pass a radiograph (CR/DX) file")
        raise ImageReadError(f"DICOM file holds no image ({name or 'no Pixel Data'}: no Pixel "
                             f"Data); {advice}")
    missing = [name for name in ("Rows", "Columns", "BitsAllocated", "SamplesPerPixel")
               if ds.get(name) is None]
    if missing:
        raise ImageReadError(f"corrupt DICOM image: Pixel Data without {', '.join(missing)}")
    rows, columns = int(ds.Rows), int(ds.Columns)
    if rows * columns > max_pixels:
        raise ImageReadError(f"{columns}x{rows} pixels is over the {max_pixels // 1_000_000} MP "
                             "limit (far larger than any X-ray); downscale it first")
    frames = int(ds.get("NumberOfFrames") or 1)
    if frames > 1:
        raise UnsupportedImageKind(
            f"multi-frame DICOM ({frames} frames, modality {ds.get('Modality', 'unknown')}): "
            "covid-edge classifies single chest radiographs; export the one frame you mean, "
            "e.g. with pydicom (`pydicom.pixels.pixel_array(path, index=0)`) or "
            "`dcmj2pnm --frame 1 --write-16-bit-png IN.dcm OUT.png` (DCMTK)")


def _decode(ds) -> np.ndarray:
    from pydicom.pixels import get_decoder

    syntax = ds.file_meta.TransferSyntaxUID
    if syntax.is_compressed:
        try:
            decoder = get_decoder(syntax)
        except NotImplementedError:
            raise UnsupportedImageKind(_no_decoder_message(syntax)) from None
        if not decoder.is_available:
            raise UnsupportedImageKind(_no_decoder_message(syntax))
    try:
        return ds.pixel_array  # YBR colour comes back as RGB
    except RuntimeError as exc:
        if not syntax.is_compressed:
            raise
        # A decoder is installed but refused this stream (12-bit JPEG in Pillow, bad data).
        raise ImageReadError(
            f"cannot decode its {syntax.name} pixel data ({_first_line(exc)}); "
            f"{_install_hint(syntax)}, {_DECOMPRESS_HINT}") from None


def _no_decoder_message(syntax) -> str:
    return (f"compressed as {syntax.name} ({syntax}), which needs a decoder that is not "
            f"installed: {_install_hint(syntax)}, {_DECOMPRESS_HINT}")


def _install_hint(syntax) -> str:
    name = syntax.name
    for family, command in _DECODER_PACKAGES.items():
        if family in name:
            return f"`{command}` or `pip install python-gdcm`"
    return "`pip install python-gdcm`"


def _to_display_image(stored: np.ndarray, ds, high_bit_depth: str = "minmax") -> Image.Image:
    from pydicom.pixels import apply_color_lut

    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if photometric == "PALETTE COLOR":
        return _color_to_rgb(apply_color_lut(stored, ds))
    if stored.ndim == 3:  # RGB, or YBR already converted to RGB by pydicom
        return _color_to_rgb(stored)
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise UnsupportedImageKind(f"unsupported Photometric Interpretation {photometric!r}")

    transform, low, high = _grayscale_pipeline(stored, ds, high_bit_depth)
    out = np.zeros(stored.shape, dtype=np.uint8)
    if high <= low:
        return Image.fromarray(out)
    # Strip by strip: the pipeline is pixel-wise, and float64 working arrays of a whole 15 MP
    # radiograph would take hundreds of MB (covid_edge.limits counts none of them).
    for top in range(0, stored.shape[0], STRIP_ROWS):
        values = transform(stored[top:top + STRIP_ROWS])
        if photometric == "MONOCHROME1":
            # Inverted within the display range, before quantizing, so a MONOCHROME1 file gives
            # exactly the picture of the MONOCHROME2 file it was made from.
            values = (low + high) - values
        scaled = np.rint((values - low) * (255.0 / (high - low)))
        out[top:top + STRIP_ROWS] = np.clip(scaled, 0, 255).astype(np.uint8)
    return Image.fromarray(out)


def _grayscale_pipeline(stored: np.ndarray, ds, high_bit_depth: str = "minmax"):
    """Modality LUT then VOI LUT/window: (a function from a strip of stored values to display
    values, the low and high ends of the display range)."""
    from pydicom.pixels import apply_modality_lut

    def modality(strip: np.ndarray) -> np.ndarray:
        return apply_modality_lut(strip, ds)

    voi = _voi_transform(modality(stored[:1]), ds)
    if voi is not None:
        to_display, low, high = voi
        return (lambda strip: to_display(modality(strip))), low, high
    has_modality_transform = ds.get("ModalityLUTSequence") or (
        "RescaleSlope" in ds and "RescaleIntercept" in ds
        and (float(ds.RescaleSlope), float(ds.RescaleIntercept)) != (1.0, 0.0))
    bits = int(ds.get("BitsStored") or ds.BitsAllocated)

    def as_float(strip: np.ndarray) -> np.ndarray:
        return np.asarray(modality(strip), dtype=np.float64)

    if bits <= 8 and int(ds.get("PixelRepresentation", 0)) == 0 and not has_modality_transform:
        # Already display levels (a secondary capture of a JPEG gives the JPEG back).
        return as_float, 0.0, float(2 ** bits - 1)
    if high_bit_depth != "minmax":
        from .stretch import window_of

        # The window is found on the stored integers (a histogram, exact) and taken through
        # the Modality LUT, which is monotonic for radiographs (Rescale Slope/Intercept).
        lo, hi, *_ = window_of([stored[top:top + STRIP_ROWS]  # views, not copies
                                for top in range(0, stored.shape[0], STRIP_ROWS)],
                               high_bit_depth)
        ends = as_float(np.array([lo, hi]).astype(stored.dtype))
        return as_float, float(ends.min()), float(ends.max())
    low, high = np.inf, -np.inf
    for top in range(0, stored.shape[0], STRIP_ROWS):
        values = as_float(stored[top:top + STRIP_ROWS])
        low, high = min(low, float(values.min())), max(high, float(values.max()))
    return as_float, low, high


def _voi_transform(sample: np.ndarray, ds):
    """The first VOI LUT (preferred, as pydicom does) or window, as (function of modality
    values, low, high); None when there is none or it is invalid (a zero window width, say),
    in which case the caller stretches the data. `sample`: modality values to try it on."""
    from pydicom.pixels import apply_voi, apply_windowing

    try:
        lut = ds.get("VOILUTSequence")
        if lut and "LUTDescriptor" in lut[0] and "LUTData" in lut[0]:
            entries, first_mapped, _ = (int(n) for n in lut[0].LUTDescriptor)
            entries = entries or 2 ** 16
            # The display range is what the LUT itself spans: its bit depth is often declared
            # as 16 for a table that only reaches 4095.
            table = apply_voi(np.arange(first_mapped, first_mapped + entries, dtype=np.int64),
                              ds)

            def through_lut(values: np.ndarray) -> np.ndarray:
                return apply_voi(np.rint(values).astype(np.int64), ds).astype(np.float64)

            through_lut(sample)
            return through_lut, float(table.min()), float(table.max())
        if "WindowCenter" in ds and "WindowWidth" in ds:
            # The window's output range (PS3.3 C.11.2.1.2) follows from Bits Stored, Pixel
            # Representation and the rescale; pydicom knows the rules, so ask it at the
            # extremes instead of restating them.
            with np.errstate(over="ignore"):
                extremes = apply_windowing(np.array([-1e30, 1e30]), ds)
            low, high = float(extremes.min()), float(extremes.max())
            if high <= low:
                return None

            def windowed(values: np.ndarray) -> np.ndarray:
                return np.asarray(apply_windowing(values, ds), dtype=np.float64)

            windowed(sample)
            return windowed, low, high
    except (ValueError, NotImplementedError, IndexError, TypeError):
        return None
    return None


def _color_to_rgb(rgb: np.ndarray) -> Image.Image:
    if rgb.dtype != np.uint8:
        # 16-bit colour (rare): keep the relative levels, stretched as gray data would be.
        rgb = rgb.astype(np.float64)
        low, high = float(rgb.min()), float(rgb.max())
        rgb = np.zeros_like(rgb) if high <= low else (rgb - low) * (255.0 / (high - low))
        rgb = np.rint(rgb).astype(np.uint8)
    return Image.fromarray(np.ascontiguousarray(rgb[..., :3]), mode="RGB")


def _first_line(exc: Exception, limit: int = 240) -> str:
    """pydicom's messages span lines (one per decoder plugin); one line reads better."""
    text = " ".join(str(exc).split())
    if not text:
        return type(exc).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."
