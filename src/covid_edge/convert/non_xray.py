"""Real images that are not chest X-rays, for measuring the out-of-distribution guard.

No download: everything comes from folders the caller names (e.g. ../shared/reference/photos),
from files that ship inside installed packages, or is drawn here:

- scikit-image's bundled sample images (skimage/data: photographs, a page of text, coins, the
  moon, a retina, a CT phantom, ...; the [train] extra installs scikit-image);
- pydicom's bundled test DICOMs that are real medical images but no chest X-ray (a CT slice,
  MR slices, two ultrasound frames; pydicom comes with the [dicom] extra);
- matplotlib's sample data (an MRI head slice);
- synthetic frames: black, white, grey, noise, a gradient, and rendered documents;
- a grayscale copy of every colour image, so that the feature test is measured on its own
  (the colour check alone would otherwise catch every photograph).

There is no X-ray of another body part (a hand, a knee) among them: nothing offline has one.

`build_tuning` collects a second, separate set from other files (scikit-learn's two sample
photos, matplotlib's other sample pictures and terrain data, charts and patterns drawn here).
`covid-edge convert` tunes the guard on that set only, so the set above is only measured on.
No file or picture is in both (a test checks it).

numpy and Pillow, plus matplotlib for the tuning set's charts and hill shading; no TensorFlow,
so tests use it as they are.
"""

from __future__ import annotations

import gzip
import importlib.util
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..formats import IMAGE_SUFFIXES
from ..image_io import ImageReadError, read_image

# skimage/data files that are not pictures or need a download are skipped by suffix; these are
# the pictures of the same scene twice or the same pattern twice, kept out to avoid counting one
# image as two.
SKIMAGE_SKIP = {"motorcycle_right.png", "chessboard_RGB.png", "multipage.tif",
                "multipage_rgb.tif", "no_time_for_that_tiny.gif"}
# Real medical images that are not chest radiographs (uncompressed: no extra decoders needed).
PYDICOM_FILES = ("CT_small.dcm", "MR_small.dcm", "examples_overlay.dcm", "image_dfl.dcm",
                 "examples_palette.dcm", "examples_rgb_color.dcm")  # the last two: ultrasound
DOCUMENT_TEXT = (
    "PATIENT DISCHARGE SUMMARY",
    "Name: ____________________   Date of birth: __/__/____",
    "Admitted with fever and cough; treated and discharged in good condition.",
    "Medication: paracetamol 500 mg as needed, no more than four times a day.",
    "Follow-up: outpatient clinic in two weeks. Return if breathing worsens.",
    "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod",
    "tempor incididunt ut labore et dolore magna aliqua. Ut enim ad minim veniam,",
    "quis nostrud exercitation ullamco laboris nisi ut aliquip ex ea commodo.",
)


@dataclass(frozen=True)
class NonXray:
    path: Path
    source: str  # where it comes from, for the model card
    gray_copy: bool = False  # a grayscale copy made here of a colour image

    @property
    def name(self) -> str:
        return self.path.name


def package_dir(package: str, *parts: str) -> Path | None:
    """A folder inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0]).joinpath(*parts)
    return folder if folder.is_dir() else None


def images_in(folder: Path) -> list[Path]:
    return sorted(p for p in Path(folder).iterdir()
                  if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def synthetic_frames(folder: Path, size: int = 512, seed: int = 0) -> list[Path]:
    """Blank and near-blank frames a camera or a broken export can produce, and documents."""
    rng = np.random.default_rng(seed)
    frames = {
        "blank-black.png": np.zeros((size, size), np.uint8),
        "blank-white.png": np.full((size, size), 255, np.uint8),
        "blank-grey.png": np.full((size, size), 128, np.uint8),
        "blank-grey-sensor-noise.png": np.clip(rng.normal(128, 3, (size, size)), 0, 255)
        .astype(np.uint8),
        "noise-uniform.png": rng.integers(0, 256, (size, size), dtype=np.uint8),
        "gradient-vertical.png": np.repeat(np.linspace(0, 255, size, dtype=np.float32)[:, None],
                                           size, axis=1).astype(np.uint8),
    }
    paths = []
    for name, pixels in frames.items():
        paths.append(folder / name)
        Image.fromarray(pixels, mode="L").save(paths[-1])
    for name, inverted, width, height in (("document-a4.png", False, 620, 877),
                                          ("document-a4-inverted.png", True, 620, 877),
                                          ("document-screenshot.png", False, 800, 600)):
        paths.append(folder / name)
        render_document(width, height, inverted).save(paths[-1])
    return paths


def render_document(width: int, height: int, inverted: bool = False) -> Image.Image:
    page = Image.new("L", (width, height), 0 if inverted else 255)
    draw = ImageDraw.Draw(page)
    ink = 255 if inverted else 0
    try:
        font = ImageFont.load_default(size=max(12, width // 45))
    except (TypeError, OSError):  # Pillow without FreeType: the small bitmap font
        font = ImageFont.load_default()
    y, line = 30, max(18, width // 30)
    while y < height - 40:
        for text in DOCUMENT_TEXT:
            draw.text((30, y), text, fill=ink, font=font)
            y += line
            if y >= height - 40:
                break
        y += line
    draw.rectangle((30, height - 35, width - 30, height - 30), fill=ink)
    return page


def matplotlib_images(folder: Path) -> list[Path]:
    sample = package_dir("matplotlib", "mpl-data", "sample_data")
    if sample is None:
        return []
    paths = []  # (its grace_hopper.jpg is also among ../shared/reference/photos)
    mri = sample / "s1045.ima.gz"
    if mri.is_file():  # 256x256 16-bit big-endian MRI head slice, raw
        values = np.frombuffer(gzip.decompress(mri.read_bytes()), dtype=">u2")
        if values.size == 256 * 256:
            values = values.reshape(256, 256).astype(np.float64)
            scaled = np.rint(255 * (values - values.min()) / max(np.ptp(values), 1))
            paths.append(folder / "matplotlib-mri-s1045.png")
            Image.fromarray(scaled.astype(np.uint8), mode="L").save(paths[-1])
    return paths


def gray_copies(images: list[NonXray], folder: Path) -> list[NonXray]:
    """A grayscale PNG of each colour image (colourfulness > 0), at most 512 px a side."""
    copies = []
    for image in images:
        try:
            decoded = read_image(image.path, target_size=(512, 512))
        except ImageReadError:
            continue
        if not decoded.colourfulness:
            continue
        gray = decoded.gray.copy()
        gray.thumbnail((512, 512))
        target = folder / f"gray-{image.path.stem}.png"
        gray.save(target)
        copies.append(NonXray(target, f"{image.source} (grayscale copy)", gray_copy=True))
    return copies


def build(folder: str | Path, extra_dirs: list[str | Path] = (), seed: int = 0
          ) -> list[NonXray]:
    """Collect and draw the non-X-ray set into `folder` (made images only; the others are
    used where they lie)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    images: list[NonXray] = []
    for extra in extra_dirs:
        images += [NonXray(p, f"{extra} (--non-xray)") for p in images_in(Path(extra))]
    skimage_data = package_dir("skimage", "data")
    if skimage_data is not None:
        images += [NonXray(p, "scikit-image sample data") for p in images_in(skimage_data)
                   if p.name not in SKIMAGE_SKIP]
    pydicom_files = package_dir("pydicom", "data", "test_files")
    if pydicom_files is not None:
        images += [NonXray(pydicom_files / name, "pydicom test files (CT/MR/ultrasound)")
                   for name in PYDICOM_FILES if (pydicom_files / name).is_file()]
    images += [NonXray(p, "matplotlib sample data") for p in matplotlib_images(folder)]
    images += [NonXray(p, "synthetic (drawn by covid-edge)") for p in synthetic_frames(folder,
                                                                                      seed=seed)]
    images = _unique(images)
    return images + gray_copies(images, folder)


def _unique(images: list[NonXray]) -> list[NonXray]:
    """The same file found twice (e.g. a photo in two packages) counts once."""
    from ..model_card import sha256_file

    seen, unique = set(), []
    for image in images:
        digest = sha256_file(image.path)
        if digest not in seen:
            seen.add(digest)
            unique.append(image)
    return unique


def sources(images: list[NonXray]) -> dict[str, int]:
    return dict(Counter(image.source for image in images))


def build_tuning(folder: str | Path, seed: int = 1) -> list[NonXray]:
    """The tuning set: non-X-ray images from files and drawings the evaluation set does not
    use (see the module docstring)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    images: list[NonXray] = []
    sklearn_images = package_dir("sklearn", "datasets", "images")
    photos = []
    if sklearn_images is not None:
        photos = [p for p in (sklearn_images / "china.jpg", sklearn_images / "flower.jpg")
                  if p.is_file()]
        images += [NonXray(p, "scikit-learn sample images") for p in photos]
        images += [NonXray(p, "scikit-learn sample images (grayscale crops)")
                   for p in photo_crops(photos, folder)]
    sample = package_dir("matplotlib", "mpl-data", "sample_data")
    if sample is not None:
        images += [NonXray(sample / name, "matplotlib sample data")
                   for name in ("Minduka_Present_Blue_Pack.png", "logo2.png")
                   if (sample / name).is_file()]
        images += [NonXray(p, "matplotlib sample data (terrain, drawn as gray)")
                   for p in terrain_pictures(sample, folder)]
        images += [NonXray(p, "charts drawn with matplotlib") for p in charts(folder, seed)]
    images += [NonXray(p, "patterns (drawn by covid-edge)") for p in patterns(folder, seed)]
    return _unique(images)


def _to_uint8(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    return np.rint(255 * (values - values.min()) / max(float(np.ptp(values)), 1e-9)
                   ).astype(np.uint8)


def _save(folder: Path, name: str, pixels: np.ndarray | Image.Image) -> Path:
    image = pixels if isinstance(pixels, Image.Image) else Image.fromarray(pixels)
    image.save(folder / name)
    return folder / name


def photo_crops(photos: list[Path], folder: Path) -> list[Path]:
    """Two square grayscale crops of each photo: gray, textured and photographic, the kind of
    picture the colour check cannot catch."""
    paths = []
    for photo in photos:
        gray = Image.open(photo).convert("L")
        width, height = gray.size
        side = min(width, height) * 3 // 4
        for index, (left, top) in enumerate(((0, 0), (width - side, height - side))):
            paths.append(_save(folder, f"crop{index}-{photo.stem}.png",
                               gray.crop((left, top, left + side, top + side))))
    return paths


def terrain_pictures(sample: Path, folder: Path) -> list[Path]:
    """matplotlib's elevation data as grayscale pictures: height, hill shading, bathymetry."""
    paths = []
    dem = sample / "jacksboro_fault_dem.npz"
    if dem.is_file():
        with np.load(dem) as data:
            elevation = data["elevation"].astype(np.float64)
        paths.append(_save(folder, "terrain-elevation.png", _to_uint8(elevation)))
        from matplotlib.colors import LightSource

        shaded = LightSource(azdeg=315, altdeg=45).hillshade(elevation, vert_exag=0.05)
        paths.append(_save(folder, "terrain-hillshade.png", _to_uint8(shaded)))
    topobathy = sample / "topobathy.npz"
    if topobathy.is_file():
        with np.load(topobathy) as data:
            picture = Image.fromarray(_to_uint8(data["topo"]))
        paths.append(_save(folder, "terrain-topobathy.png",
                           picture.resize((480, 364), Image.Resampling.BICUBIC)))
    return paths


def charts(folder: Path, seed: int) -> list[Path]:
    """What a kiosk camera pointed at a screen might see: a line, bar and scatter chart and an
    image with a colour bar, rendered by matplotlib."""
    from ..plots import _pyplot

    plt = _pyplot()
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 10, 200)
    paths = []
    for kind in ("line", "bar", "scatter", "field"):
        fig, axis = plt.subplots(figsize=(6.4, 4.8), dpi=100)
        if kind == "line":
            axis.plot(t, np.sin(t))
            axis.plot(t, np.cos(t))
        elif kind == "bar":
            axis.bar(range(8), rng.integers(1, 10, 8))
        elif kind == "scatter":
            axis.scatter(rng.normal(size=200), rng.normal(size=200), s=8)
        else:
            fig.colorbar(axis.imshow(_smooth_noise(rng, 128), cmap="gray"))
        axis.set_title(f"{kind} chart")
        paths.append(folder / f"chart-{kind}.png")
        fig.savefig(paths[-1])
        plt.close(fig)
    return paths


def _smooth_noise(rng: np.random.Generator, size: int) -> np.ndarray:
    from PIL import ImageFilter

    noise = Image.fromarray(_to_uint8(rng.normal(size=(size, size))))
    return _to_uint8(np.asarray(noise.filter(ImageFilter.GaussianBlur(size / 25))))


def patterns(folder: Path, seed: int, size: int = 256) -> list[Path]:
    """Smooth blotches, rings, a checkerboard and overlapping rectangles."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[-1:1:size * 1j, -1:1:size * 1j]
    paths = [_save(folder, "pattern-smooth-noise.png", _smooth_noise(rng, size)),
             _save(folder, "pattern-rings.png", _to_uint8(np.sin(12 * np.hypot(x, y)))),
             _save(folder, "pattern-checkerboard.png",
                   _to_uint8((np.indices((size, size)) // (size // 8)).sum(axis=0) % 2))]
    canvas = Image.new("L", (size, size), 90)
    draw = ImageDraw.Draw(canvas)
    for _ in range(12):
        left, right = sorted(rng.integers(0, size, 2))
        top, bottom = sorted(rng.integers(0, size, 2))
        draw.rectangle((left, top, right, bottom), fill=int(rng.integers(0, 256)))
    paths.append(_save(folder, "pattern-rectangles.png", canvas))
    return paths
