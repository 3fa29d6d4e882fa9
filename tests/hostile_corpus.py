"""A corpus of hostile inputs, generated at test time (nothing big is stored in the repo).

Each entry is a file a prankster, a broken scanner or an unlucky user could hand covid-edge,
with the words its one-line error must contain (None: it must be answered with a verdict,
"not a chest X-ray" included). `build(folder)` writes them and returns the entries; the
special files (pipes, link loops, devices, names that are not UTF-8) are made by
`build_special`. Used by tests/test_hostile.py and scripts/hostile_load.py.

The decompression bombs are written row by row through zlib, so that making a 10000 x 10000
16-bit PNG costs a few MB and well under a second, not the 200 MB it decodes to.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class Hostile:
    name: str
    category: str
    expect: str | None  # a word of the one-line error; None: a verdict is expected


def png(width: int, height: int, bit_depth: int = 8, colour_type: int = 0,
        chunks: list[tuple[bytes, bytes]] = ()) -> bytes:
    """A valid PNG of zeros, any size, streamed through zlib row by row."""
    channels = {0: 1, 2: 3, 4: 2, 6: 4}[colour_type]
    # Every row is a zero filter byte and zero samples: the stream is all zeros, fed in 4 MB
    # pieces of one shared buffer.
    remaining = height * (1 + width * channels * bit_depth // 8)
    block = bytes(min(remaining, 4 << 20))
    packer = zlib.compressobj(1)
    parts = []
    while remaining:
        piece = block[:min(remaining, len(block))]
        parts.append(packer.compress(piece))
        remaining -= len(piece)
    compressed = b"".join(parts) + packer.flush()

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body)))

    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + b"".join(chunk(k, v) for k, v in chunks)
            + chunk(b"IDAT", compressed) + chunk(b"IEND", b""))


def _saved(picture: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _jpeg_claiming(width: int, height: int) -> bytes:
    """A small JPEG whose frame header (SOF0) claims width x height."""
    data = bytearray(_saved(Image.new("L", (16, 16), 128), "JPEG"))
    at = data.index(b"\xff\xc0")
    data[at + 5:at + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def _tiff_claiming(width: int, height: int) -> bytes:
    data = bytearray(_saved(Image.new("L", (8, 8), 7), "TIFF"))
    picture = Image.open(io.BytesIO(bytes(data)))
    picture.close()
    # Patch the ImageWidth (256) and ImageLength (257) SHORT/LONG entries of the first IFD.
    offset = struct.unpack("<I", data[4:8])[0]
    count = struct.unpack("<H", data[offset:offset + 2])[0]
    for i in range(count):
        entry = offset + 2 + 12 * i
        tag, kind = struct.unpack("<HH", data[entry:entry + 4])
        if tag in (256, 257):
            value = width if tag == 256 else height
            data[entry + 2:entry + 4] = struct.pack("<H", 4)  # LONG
            data[entry + 8:entry + 12] = struct.pack("<I", value)
    return bytes(data)


def _dicom(rows: int, columns: int, bits_allocated: int, pixel_bytes: bytes) -> bytes:
    from pydicom.dataset import FileMetaDataset
    from pydicom.dataset import Dataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.Rows, ds.Columns = rows, columns
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = bits_allocated, bits_allocated, bits_allocated - 1
    ds.SamplesPerPixel, ds.PixelRepresentation = 1, 0
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelData = pixel_bytes
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def build(folder: Path, xray: Path | None = None, large: bool = False) -> list[Hostile]:
    """Write the corpus into `folder`; `xray` (a real chest X-ray JPEG) seeds the truncated
    and re-encoded variants. `large` adds a 26 MP 16-bit DICOM just under the memory budget
    (52 MB to write: for scripts/hostile_load.py, not the unit suite)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(13)
    good = xray.read_bytes() if xray is not None else _saved(
        Image.fromarray(rng.integers(0, 256, (256, 256), dtype=np.uint8)), "JPEG")
    good_png = _saved(Image.open(io.BytesIO(good)).convert("L"), "PNG")
    small = Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8), "RGB")
    tiny = Image.new("L", (4, 4), 7)
    entries: list[tuple[str, str, str | None, bytes]] = [
        # memory: decoded bytes, not only pixels
        ("bomb-16bit-10000.png", "memory", "budget", png(10000, 10000, 16, 0)),
        ("bomb-rgba-10000.png", "memory", "budget", png(10000, 10000, 8, 6)),
        ("bomb-gray-alpha-10000.png", "memory", "budget", png(10000, 10000, 8, 4)),
        ("bomb-16bit-rgb-7000.png", "memory", "budget", png(7000, 7000, 16, 2)),
        ("claims-60000x60000.png", "memory", "bomb", _patched_ihdr(png(8, 8), 60000, 60000)),
        ("claims-12000x9000.png", "memory", "limit", _patched_ihdr(png(8, 8), 12000, 9000)),
        ("claims-65000x65000.jpg", "memory", "bomb", _jpeg_claiming(65000, 65000)),
        ("claims-50000x50000.tif", "memory", "bomb", _tiff_claiming(50000, 50000)),
        ("ztxt-bomb.png", "memory", "too large", png(64, 64, 8, 0, chunks=[
            (b"zTXt", b"Comment\x00\x00" + zlib.compress(b"A" * 50_000_000, 1))])),
        # damaged files
        ("truncated.jpg", "damaged", "truncated", good[:len(good) // 2]),
        ("truncated.png", "damaged", "truncated", good_png[:len(good_png) // 2]),
        ("empty.png", "damaged", "not an image", b""),
        ("random.png", "damaged", "not an image", rng.bytes(4096)),
        ("text.jpg", "damaged", "not an image", b"patient 12: follow-up in two weeks\n"),
        ("png-header-only.png", "damaged", "not an image", good_png[:33]),
        # formats outside the list
        ("picture.gif", "format", "GIF", _saved(small, "GIF")),
        ("picture.webp", "format", "WebP", b"RIFF\x24\x00\x00\x00WEBPVP8 " + rng.bytes(32)),
        ("picture.ppm", "format", "PNM", _saved(small, "PPM")),
        ("picture.eps", "format", "EPS", b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n"
                                         b"newpath 0 0 moveto 10 10 lineto stroke showpage\n"),
        ("picture.mpo", "format", "MPO", _saved(small, "MPO", save_all=True,
                                                append_images=[small])),
        ("picture.ico", "format", "ICO", _saved(small, "ICO")),
        ("document.pdf", "format", "PDF", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj<<>>endobj\n"),
        # several pictures in one file, or a colour space with no way to gray: refused by name,
        # never read as their first page or called corrupt
        ("two-pages.tif", "format", "more than one picture",
         _saved(small, "TIFF", save_all=True, append_images=[small])),
        ("30000-pages.tif", "format", "more than one picture",  # refused from two headers
         _tiff_of_pages(30000)),
        ("animated.png", "format", "animated PNG", _saved(small, "PNG", save_all=True,
                                                         append_images=[small.rotate(90)])),
        ("cielab.tif", "format", "CIELAB", _saved(small.convert("LAB"), "TIFF")),
        # odd but valid: answered, never an error; the two largest pictures the budget lets
        # through (the worst case for peak memory)
        ("rgb-6000x6000-near-budget.png", "memory", None, png(6000, 6000, 8, 2)),
        ("gray-10000x10000.png", "memory", None, png(10000, 10000, 8, 0)),
        ("rgba-4500x4700-near-budget.png", "memory", None, png(4500, 4700, 8, 6)),
        ("one-pixel.png", "valid", None, _saved(Image.new("L", (1, 1)), "PNG")),
        ("wide-1x4000.png", "valid", None, _saved(Image.new("L", (4000, 1), 9), "PNG")),
        ("float-with-nan.tif", "valid", None, _float_tiff_with_nan()),
        # a second page that is a scanner's thumbnail, or a pointer to a page that is not
        # there: read as the one picture they hold, as before
        ("thumbnail-page.tif", "valid", None, _saved(small, "TIFF", save_all=True,
                                                      append_images=[tiny], tiffinfo={254: 1})),
        ("next-page-past-the-end.tif", "valid", None, _tiff_pointing_past_its_end(small)),
    ]
    try:
        import pydicom  # noqa: F401
        entries += [
            ("bits8-over-16bit-data.dcm", "dicom", "Pixel Data holds",
             _dicom(64, 64, 8, np.arange(64 * 64, dtype=np.uint16).tobytes())),
            ("claims-9000x9000.dcm", "dicom", "budget", _dicom(9000, 9000, 16, b"\x00" * 64)),
            ("short-pixel-data.dcm", "dicom", "Pixel Data holds", _dicom(64, 64, 16, b"\x00" * 10)),
        ]
        if large:
            ramp = (np.arange(5000 * 5200, dtype=np.uint32) % 4096).astype(np.uint16)
            entries.append(("dicom-16bit-5200x5000-near-budget.dcm", "memory", None,
                            _dicom(5000, 5200, 16, ramp.tobytes())))
    except ImportError:
        pass
    for name, _, _, data in entries:
        (folder / name).write_bytes(data)
    return [Hostile(name, category, expect) for name, category, expect, _ in entries]


def _patched_ihdr(data: bytes, width: int, height: int) -> bytes:
    data = bytearray(data)
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def _tiff_of_pages(count: int) -> bytes:
    """A TIFF of `count` 1x1 gray pages (Pillow's own multi-page writer takes seconds for
    thousands): counting its pages is what a reader must not do per upload."""
    tags = ((256, 3, 1), (257, 3, 1), (258, 3, 8), (259, 3, 1), (262, 3, 1), (273, 4, None),
            (278, 3, 1), (279, 4, 1))
    page_bytes = 2 + 2 + 12 * len(tags) + 4  # the pixel (padded), then the page's directory
    parts = [b"II*\x00", struct.pack("<I", 8 + 2)]
    for page in range(count):
        at = 8 + page * page_bytes
        following = at + page_bytes + 2 if page + 1 < count else 0
        parts.append(b"\x80\x00" + struct.pack("<H", len(tags)))
        for tag, kind, value in tags:
            value = at if value is None else value
            parts.append(struct.pack("<HHI", tag, kind, 1)
                         + (struct.pack("<HH", value, 0) if kind == 3
                            else struct.pack("<I", value)))
        parts.append(struct.pack("<I", following))
    return b"".join(parts)


def _tiff_pointing_past_its_end(picture: Image.Image) -> bytes:
    """A one-page TIFF whose pointer to the next page points past the end of the file."""
    data = bytearray(_saved(picture, "TIFF"))
    offset = struct.unpack("<I", data[4:8])[0]
    entries = struct.unpack("<H", data[offset:offset + 2])[0]
    next_pointer = offset + 2 + 12 * entries
    data[next_pointer:next_pointer + 4] = struct.pack("<I", len(data) + 5000)
    return bytes(data)


def _float_tiff_with_nan() -> bytes:
    values = np.linspace(0, 1, 64 * 64, dtype=np.float32).reshape(64, 64)
    values[3, 3] = np.nan
    return _saved(Image.fromarray(values, mode="F"), "TIFF")


def build_special(folder: Path, sample: Path) -> list[Hostile]:
    """Entries that are not plain files: a named pipe called x.png, a symbolic link loop, a
    dangling link, a link to a device, a folder named like an image, a name that is not UTF-8
    (a copy of `sample`, answered normally)."""
    folder.mkdir(parents=True, exist_ok=True)
    made = []
    fifo = folder / "pipe.png"
    if hasattr(os, "mkfifo"):
        os.mkfifo(fifo)
        made.append(Hostile(fifo.name, "special", "named pipe"))
    os.symlink("loop-b.png", folder / "loop-a.png")
    os.symlink("loop-a.png", folder / "loop-b.png")
    made.append(Hostile("loop-a.png", "special", "link loop"))
    os.symlink("absent.png", folder / "dangling.png")
    made.append(Hostile("dangling.png", "special", "no such file"))
    if Path("/dev/zero").exists():
        os.symlink("/dev/zero", folder / "zero.png")
        made.append(Hostile("zero.png", "special", "device"))
    (folder / "folder.png").mkdir()
    made.append(Hostile("folder.png", "special", "folder"))
    odd = os.fsdecode(b"scan-\xff\xfe.jpg")
    (folder / odd).write_bytes(sample.read_bytes())
    made.append(Hostile(odd, "special", None))
    return made
