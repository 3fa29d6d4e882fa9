"""What happens to an X-ray between the hospital and the kiosk, as seeded perturbations.

Each perturbation takes the upright 8-bit grayscale picture and a numpy Generator and returns
a FILE (bytes and a suffix), not pixels: the shift suite hands that file to the device's own
reader, so a 16-bit PNG export, a 12-bit DICOM or an EXIF-rotated JPEG meets exactly the code
a user's file would. Only Pillow and numpy (pydicom for the DICOM one, the [dicom] extra).

The picture-level cores (`resampled`, `gamma_table`, `add_noise`, `padded_to_aspect`,
`framed`, `draw_marker`, `photograph`) are shared with training's invariance augmentation
(covid_edge.convert.invariance), which draws its own random settings around them.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont

LANCZOS = Image.Resampling.LANCZOS
BICUBIC = Image.Resampling.BICUBIC
BILINEAR = Image.Resampling.BILINEAR
EXIF_ORIENTATION = 0x0112


@dataclass(frozen=True)
class Perturbed:
    data: bytes
    suffix: str  # the file type it would have on disk (".png", ".jpg", ".dcm")


@dataclass(frozen=True)
class Perturbation:
    name: str
    group: str          # encoding, export, geometry, intensity, noise, overlay, capture
    description: str
    apply: Callable[[Image.Image, np.random.Generator], Perturbed]
    needs: str | None = None  # an optional module it needs (pydicom)


def encode(img: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, fmt, **options)
    return buffer.getvalue()


def png(img: Image.Image, compress_level: int = 6) -> Perturbed:
    return Perturbed(encode(img, "PNG", compress_level=compress_level), ".png")


# -- encoding -------------------------------------------------------------------------------

def jpeg(quality: int):
    def apply(img, rng):
        return Perturbed(encode(img, "JPEG", quality=quality), ".jpg")
    return apply


def resampled(img: Image.Image, size: tuple[int, int], down, up) -> Image.Image:
    """Resized to `size` with filter `down` and back to its own size with `up`."""
    return img.resize(size, down).resize(img.size, up)


def resample_chain(img, rng):
    """Downscaled to half by one program (bicubic), upscaled back by another (bilinear)."""
    half = (max(1, img.width // 2), max(1, img.height // 2))
    return png(resampled(img, half, BICUBIC, BILINEAR))


# -- exports --------------------------------------------------------------------------------

def upscale_16bit(img, rng, side: int = 2048):
    """A hospital export: upscaled so the long side is 2048 px, saved as 16-bit gray PNG
    (every 8-bit level v becomes 257 v, the full 16-bit range)."""
    scale = side / max(img.size)
    big = img.resize((round(img.width * scale), round(img.height * scale)), LANCZOS)
    values = np.asarray(big, dtype=np.uint16) * np.uint16(257)
    # Level 1: the same pixels, several times faster to write than the default 6.
    return png(Image.fromarray(values), compress_level=1)


def dicom_12bit(img, rng):
    """The same pixels as a 12-bit MONOCHROME2 DICOM (stored value 16 v, BitsStored 12), with
    no window: what a PACS export of a digitised film looks like."""
    from pydicom.dataset import FileMetaDataset, Dataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    values = np.asarray(img, dtype=np.uint16) * np.uint16(16)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=[hashlib.sha256(values.tobytes()).hexdigest()])
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.Rows, ds.Columns = values.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
    ds.PixelRepresentation = 0
    ds.PixelData = values.tobytes()
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return Perturbed(buffer.getvalue(), ".dcm")


def exif_rotated(img, rng):
    """Pixels stored on their side with an EXIF Orientation tag (6: rotate 90 degrees
    clockwise to view), as a phone or some PACS viewers save them; lossless PNG so that only
    the orientation is tested."""
    stored = img.transpose(Image.Transpose.ROTATE_90)  # counter-clockwise on disk
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6
    return Perturbed(encode(stored, "PNG", exif=exif), ".png")


# -- intensity, noise, blur ------------------------------------------------------------------

def gamma_table(value: float) -> list[int]:
    """Pillow `point` table of a gamma curve on 0..255."""
    return [int(round(255 * (i / 255) ** value)) for i in range(256)]


def gamma(value: float):
    lut = gamma_table(value)

    def apply(img, rng):
        return png(img.point(lut))
    return apply


def contrast(factor: float):
    def apply(img, rng):
        return png(ImageEnhance.Contrast(img).enhance(factor))
    return apply


def brightness(factor: float):
    def apply(img, rng):
        return png(ImageEnhance.Brightness(img).enhance(factor))
    return apply


def add_noise(pixels: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """uint8 (h, w) plus Gaussian noise of `sigma` grey levels, rounded and clipped."""
    noisy = np.asarray(pixels, dtype=np.float32) + rng.normal(0, sigma, pixels.shape)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


def gaussian_noise(sigma: float):
    def apply(img, rng):
        return png(Image.fromarray(add_noise(np.asarray(img), sigma, rng)))
    return apply


def blur(radius: float):
    def apply(img, rng):
        return png(img.filter(ImageFilter.GaussianBlur(radius)))
    return apply


# -- geometry -------------------------------------------------------------------------------

def rotate(img, rng, degrees: float = 5.0):
    """A film or detector a few degrees off: +-5 degrees, the corners filled black."""
    angle = degrees * rng.choice([-1.0, 1.0])
    return png(img.rotate(angle, BICUBIC, fillcolor=0))


def shift(img, rng, fraction: float = 0.05):
    """Off-centre by 5% of the size in a random direction, the gap filled black."""
    dx, dy = (np.round(fraction * np.array(img.size) * rng.choice([-1, 1], 2))).astype(int)
    return png(img.transform(img.size, Image.Transform.AFFINE, (1, 0, -dx, 0, 1, -dy),
                             fillcolor=0))


def padded_to_aspect(img: Image.Image, aspect: float, fill: int = 0) -> Image.Image:
    """Bars of grey `fill` left and right to a width/height of `aspect` (never narrower)."""
    width = max(img.width, round(img.height * aspect))
    framed = Image.new("L", (width, img.height), fill)
    framed.paste(img, ((width - img.width) // 2, 0))
    return framed


def pad_to_aspect(img, rng, aspect: float = 4 / 3):
    """Black bars to a landscape 4:3 frame, as a screen capture or a letterboxed export."""
    return png(padded_to_aspect(img, aspect))


def framed(img: Image.Image, fraction: float, fill: int = 0, resample=LANCZOS) -> Image.Image:
    """A border of `fraction` of the long side on every side, the picture shrunk inside."""
    border = round(fraction * max(img.size))
    inner = img.resize((img.width - 2 * border, img.height - 2 * border), resample)
    out = Image.new("L", img.size, fill)
    out.paste(inner, (border, border))
    return out


def black_frame(img, rng, fraction: float = 0.08):
    """A black border of 8% on every side, the picture shrunk inside it (a scanned film)."""
    return png(framed(img, fraction))


# -- overlays -------------------------------------------------------------------------------

def font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: one bitmap size
        return ImageFont.load_default()


def draw_marker(draw: ImageDraw.ImageDraw, corner: tuple[float, float], size: int,
                marker: str, fill: int = 255) -> None:
    """A radiographer's side marker: a letter in a square box, its top-left at `corner`."""
    box = [corner[0], corner[1], corner[0] + 1.6 * size, corner[1] + 1.6 * size]
    draw.rectangle(box, outline=fill, width=max(1, size // 10))
    draw.text((box[0] + 0.35 * size, box[1] + 0.2 * size), marker, fill=fill, font=font(size))


def burned_in_text(img, rng):
    """A side marker in one corner and a text line (projection, date) in another, white on
    the film, as a radiographer or a modality burns them in."""
    out = img.copy()
    draw = ImageDraw.Draw(out)
    side = max(img.size)
    size = max(8, side // 16)
    corners = [(0.04, 0.04), (0.80, 0.04), (0.04, 0.88), (0.60, 0.90)]
    order = rng.permutation(len(corners))
    mx, my = corners[order[0]]
    marker = ("L", "R")[int(rng.integers(2))]
    draw_marker(draw, (mx * img.width, my * img.height), size, marker)
    tx, ty = corners[order[1]]
    text = ("PORTABLE AP", "SUPINE", "ERECT PA")[int(rng.integers(3))] + \
        f" {int(rng.integers(1, 29)):02d}/{int(rng.integers(1, 13)):02d}/2020"
    draw.text((tx * img.width * 0.5, ty * img.height), text, fill=255,
              font=font(max(6, side // 28)))
    return png(out)


# -- capture ------------------------------------------------------------------------------

def _perspective_coefficients(source, target):
    """Pillow's PERSPECTIVE data: maps each output point (target) back to its input (source)."""
    matrix, vector = [], []
    for (x, y), (u, v) in zip(target, source):
        matrix.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        matrix.append([0, 0, 0, x, y, 1, -v * x, -v * y])
        vector += [u, v]
    return np.linalg.solve(np.array(matrix, dtype=np.float64), np.array(vector, np.float64))


def camera_capture(img, rng, frame=(800, 600)):
    """A Pi or phone camera photographing the film on a light box or a monitor: the film is
    a tilted quadrilateral on a dark surround (perspective), slightly out of focus, darker
    at the edges (vignetting), with a glare spot, a colour cast, sensor noise, and the
    camera's JPEG."""
    photo = photograph(img, rng, frame)
    return Perturbed(encode(photo, "JPEG", quality=int(rng.integers(80, 93))), ".jpg")


def photograph(img: Image.Image, rng: np.random.Generator, frame=(800, 600),
               defocus=(0.8, 1.8), glare=(30, 70)) -> Image.Image:
    """camera_capture's RGB picture before the camera's JPEG (`defocus`: the blur radius
    range, in pixels of `frame`; `glare`: the glare spot's peak range, in grey levels)."""
    width, height = frame
    # The film fills about 80% of the frame's height, keeping its aspect ratio.
    film_h = 0.8 * height * rng.uniform(0.9, 1.0)
    film_w = film_h * img.width / img.height
    cx, cy = width / 2 + rng.uniform(-0.05, 0.05) * width, height / 2 + rng.uniform(-0.04,
                                                                                     0.04) * height
    corners = np.array([[-film_w / 2, -film_h / 2], [film_w / 2, -film_h / 2],
                        [film_w / 2, film_h / 2], [-film_w / 2, film_h / 2]])
    # Keystone: each corner moves by up to 6% of the film's size.
    corners += rng.uniform(-0.06, 0.06, corners.shape) * [film_w, film_h]
    target = corners + [cx, cy]
    source = [(0, 0), (img.width, 0), (img.width, img.height), (0, img.height)]
    coefficients = _perspective_coefficients(source, target)
    film = img.convert("L").transform(frame, Image.Transform.PERSPECTIVE, tuple(coefficients),
                                      BICUBIC, fillcolor=int(rng.integers(15, 40)))
    film = film.filter(ImageFilter.GaussianBlur(rng.uniform(*defocus)))  # defocus
    x = np.asarray(film, dtype=np.float32)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    r2 = ((xx - width / 2) / (width / 2)) ** 2 + ((yy - height / 2) / (height / 2)) ** 2
    x *= 1.0 - rng.uniform(0.15, 0.35) * r2 / 2  # vignetting
    gx, gy = rng.uniform(0.2, 0.8) * width, rng.uniform(0.2, 0.8) * height
    glare_sigma = rng.uniform(0.05, 0.12) * width
    x += rng.uniform(*glare) * np.exp(-((xx - gx) ** 2 + (yy - gy) ** 2) / (2 * glare_sigma ** 2))
    cast = np.array([1.0, 1.0, 1.0]) + rng.uniform(-0.08, 0.08, 3)  # white balance off
    rgb = x[..., None] * cast[None, None, :]
    rgb += rng.normal(0, rng.uniform(2.0, 5.0), rgb.shape)  # sensor noise
    return Image.fromarray(np.clip(np.rint(rgb), 0, 255).astype(np.uint8))


CATALOGUE: tuple[Perturbation, ...] = (
    Perturbation("jpeg-q90", "encoding", "re-saved as JPEG quality 90", jpeg(90)),
    Perturbation("jpeg-q75", "encoding", "re-saved as JPEG quality 75 (a common default)",
                 jpeg(75)),
    Perturbation("jpeg-q50", "encoding", "re-saved as JPEG quality 50", jpeg(50)),
    Perturbation("jpeg-q30", "encoding", "re-saved as JPEG quality 30", jpeg(30)),
    Perturbation("jpeg-q10", "encoding", "re-saved as JPEG quality 10 (heavy artefacts)",
                 jpeg(10)),
    Perturbation("resample-chain", "encoding", "downscaled to half (bicubic), upscaled back "
                 "(bilinear)", resample_chain),
    Perturbation("export-16bit-2048", "export", "upscaled to 2048 px, saved as 16-bit PNG",
                 upscale_16bit),
    Perturbation("dicom-12bit", "export", "the same pixels as a 12-bit DICOM (no window)",
                 dicom_12bit, needs="pydicom"),
    Perturbation("exif-rotated", "export", "stored on its side with EXIF orientation 6",
                 exif_rotated),
    Perturbation("gamma-0.8", "intensity", "gamma 0.8 (brighter mid-tones)", gamma(0.8)),
    Perturbation("gamma-1.25", "intensity", "gamma 1.25 (darker mid-tones)", gamma(1.25)),
    Perturbation("contrast-0.8", "intensity", "contrast x0.8", contrast(0.8)),
    Perturbation("contrast-1.2", "intensity", "contrast x1.2", contrast(1.2)),
    Perturbation("brightness-0.9", "intensity", "brightness x0.9", brightness(0.9)),
    Perturbation("brightness-1.1", "intensity", "brightness x1.1", brightness(1.1)),
    Perturbation("noise-3", "noise", "Gaussian noise, sigma 3 grey levels", gaussian_noise(3)),
    Perturbation("noise-8", "noise", "Gaussian noise, sigma 8 grey levels", gaussian_noise(8)),
    Perturbation("blur-1", "noise", "Gaussian blur, radius 1 px", blur(1.0)),
    Perturbation("blur-2", "noise", "Gaussian blur, radius 2 px", blur(2.0)),
    Perturbation("rotate-5", "geometry", "rotated 5 degrees either way, corners black", rotate),
    Perturbation("shift-5pct", "geometry", "shifted 5% of the size, gap black", shift),
    Perturbation("pad-4x3", "geometry", "black bars to a 4:3 landscape frame", pad_to_aspect),
    Perturbation("black-frame", "geometry", "an 8% black border, picture shrunk inside",
                 black_frame),
    Perturbation("burned-in-text", "overlay", "a side marker and a text line burned in",
                 burned_in_text),
    Perturbation("camera-capture", "capture", "photographed on a light box or monitor: "
                 "perspective, defocus, vignetting, glare, colour cast, noise, JPEG",
                 camera_capture),
)

BY_NAME = {p.name: p for p in CATALOGUE}


def available(perturbation: Perturbation) -> bool:
    if perturbation.needs is None:
        return True
    import importlib.util

    return importlib.util.find_spec(perturbation.needs) is not None


def generator(seed: int, perturbation_index: int, image_index: int) -> np.random.Generator:
    """One stream per (perturbation, image): the same image gets the same perturbation
    whatever else runs, and in whatever order."""
    return np.random.default_rng([seed, perturbation_index, image_index])
