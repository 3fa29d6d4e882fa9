"""Reading X-ray files as found in the wild: formats, bit depths, orientation, size, and every
way a file can be bad. Real X-rays from ../shared, re-saved in other forms."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from covid_edge.image_io import MAX_PIXELS, ImageReadError, read_grayscale
from covid_edge.preprocess import PreprocessSpec, load_pixels, preprocess_file, to_model_input

SPEC = PreprocessSpec()  # 224 x 224 x 3, as the released model


@pytest.fixture(scope="module")
def xray(covid_xray) -> np.ndarray:
    """A real chest X-ray as uint8 (H, W), decoded once."""
    with Image.open(covid_xray) as img:
        return np.asarray(img.convert("L"))


def gray(path) -> np.ndarray:
    return np.asarray(read_grayscale(path))


# -- formats and modes ----------------------------------------------------------------------

def test_a_file_is_opened_with_its_own_plugin_only(tmp_path, xray):
    """Pillow's Image.open imports all of its plugins (a fifth of a cold `classify`) when a
    listed format's plugin is not loaded; covid-edge imports the one the bytes announce. A
    PNG named .jpg and a TIFF named .png still open: the bytes decide, not the name."""
    import subprocess
    import sys

    Image.fromarray(xray, mode="L").save(tmp_path / "png.jpg", format="PNG")
    Image.fromarray(xray, mode="L").save(tmp_path / "tiff.png", format="TIFF")
    Image.fromarray(xray, mode="L").save(tmp_path / "plain.jpg", quality=95)
    code = (
        "import sys\n"
        "from covid_edge.image_io import read_grayscale\n"
        f"for name in ('plain.jpg', 'png.jpg', 'tiff.png'):\n"
        f"    assert read_grayscale({str(tmp_path)!r} + '/' + name).size == {xray.shape[::-1]!r}\n"
        "plugins = sorted(m for m in sys.modules if m.startswith('PIL.') and "
        "m.endswith('ImagePlugin'))\n"
        "print(' '.join(plugins))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    plugins = set(done.stdout.split())
    assert {"PIL.JpegImagePlugin", "PIL.PngImagePlugin", "PIL.TiffImagePlugin"} <= plugins
    assert "PIL.PdfImagePlugin" not in plugins and len(plugins) < 10, plugins


@pytest.mark.parametrize("suffix", [".png", ".bmp", ".tif", ".tiff"])
def test_lossless_formats_give_back_the_same_pixels(tmp_path, xray, suffix):
    path = tmp_path / f"xray{suffix}"
    Image.fromarray(xray, mode="L").save(path)
    result = read_grayscale(path)
    assert result.mode == "L"
    np.testing.assert_array_equal(np.asarray(result), xray)


def test_jpeg_is_decoded_as_pillow_decodes_it(covid_xray, xray):
    np.testing.assert_array_equal(gray(covid_xray), xray)


def test_suffix_does_not_matter_only_content(tmp_path, xray):
    path = tmp_path / "really_a_png.jpg"
    Image.fromarray(xray).save(path, format="PNG")
    np.testing.assert_array_equal(gray(path), xray)


def _stretched(values: np.ndarray) -> np.ndarray:
    values = values.astype(np.float64)
    return np.rint((values - values.min()) * 255.0 / (values.max() - values.min()))


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16_bit_gray_is_stretched_to_8_bit(tmp_path, xray, suffix):
    # A 12-bit detector's range inside a 16-bit file, made from the real X-ray.
    deep = (xray.astype(np.uint16) * 16 + 300)
    path = tmp_path / f"deep{suffix}"
    Image.fromarray(deep).save(path)
    with Image.open(path) as img:
        assert img.mode.startswith("I")  # really stored as more than 8 bits
    result = gray(path)
    assert result.dtype == np.uint8
    assert np.abs(result.astype(int) - _stretched(xray)).max() <= 1
    assert result.min() == 0 and result.max() == 255


def test_flat_16_bit_image_is_black_not_a_crash(tmp_path):
    path = tmp_path / "flat.png"
    Image.fromarray(np.full((64, 48), 4000, dtype=np.uint16)).save(path)
    result = gray(path)
    assert result.shape == (64, 48) and not result.any()


def test_rgb_xray_equals_its_gray_original(tmp_path, xray):
    path = tmp_path / "rgb.png"
    Image.fromarray(np.stack([xray] * 3, axis=-1), mode="RGB").save(path)
    np.testing.assert_array_equal(gray(path), xray)


def test_rgba_transparent_pixels_are_shown_on_black(tmp_path, xray):
    alpha = np.full(xray.shape, 255, dtype=np.uint8)
    alpha[:, : xray.shape[1] // 2] = 0
    path = tmp_path / "rgba.png"
    Image.fromarray(np.dstack([xray, xray, xray, alpha]), mode="RGBA").save(path)
    result = gray(path)
    assert not result[:, : xray.shape[1] // 2].any()
    np.testing.assert_array_equal(result[:, xray.shape[1] // 2:], xray[:, xray.shape[1] // 2:])


@pytest.mark.parametrize("mode", ["1", "P", "LA", "CMYK", "I", "F"])
def test_other_pillow_modes_become_8_bit_gray(tmp_path, xray, mode):
    suffix = ".jpg" if mode == "CMYK" else ".tif"
    path = tmp_path / f"mode_{mode}{suffix}"
    Image.fromarray(xray).convert(mode).save(path)
    result = read_grayscale(path)
    assert result.mode == "L" and result.size == (xray.shape[1], xray.shape[0])


# -- orientation and size -------------------------------------------------------------------

def test_exif_orientation_is_applied(tmp_path, xray):
    # A non-square crop, so that a missed rotation shows in the shape as well as the pixels.
    crop = xray[:, 40:200]
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: the viewer must rotate 90 degrees clockwise
    Image.fromarray(crop).save(path, exif=exif, quality=95)
    with Image.open(path) as img:
        stored = np.asarray(img.convert("L"))
    result = gray(path)
    assert result.shape == (crop.shape[1], crop.shape[0])
    np.testing.assert_array_equal(result, np.rot90(stored, k=-1))


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_large_xray_is_read_and_resized(tmp_path, covid_xray, xray, suffix):
    path = tmp_path / f"large{suffix}"
    big = Image.fromarray(xray).resize((4000, 3200), Image.Resampling.BICUBIC)
    big.save(path, **({"quality": 92} if suffix == ".jpg" else {"compress_level": 1}))
    pixels = load_pixels(path, SPEC)
    assert pixels.shape == (SPEC.height, SPEC.width) and pixels.dtype == np.uint8
    # The same X-ray at its original size: the large copy must look like it (draft-mode JPEG
    # decoding and Pillow's reducing_gap make it close, not equal).
    original = load_pixels(covid_xray, SPEC).astype(int)
    assert np.abs(pixels.astype(int) - original).mean() < 6


def test_preprocess_file_matches_the_spec(covid_xray):
    spec = PreprocessSpec(height=96, width=128, channels=3)
    x = preprocess_file(covid_xray, spec)
    assert x.shape == (96, 128, 3) and x.dtype == np.float32
    # pixel 0 -> -128/127.5 and pixel 255 -> 127/127.5: the int8-friendly MobileNetV2 range.
    assert -128 / 127.5 - 1e-6 <= x.min() and x.max() <= 127 / 127.5 + 1e-6
    np.testing.assert_array_equal(x[..., 0], x[..., 2])
    np.testing.assert_array_equal(x, to_model_input(load_pixels(covid_xray, spec), spec))


# -- bad files ------------------------------------------------------------------------------

def _read_error(path) -> str:
    with pytest.raises(ImageReadError) as caught:
        read_grayscale(path)
    return str(caught.value)


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_truncated_file(tmp_path, xray, suffix):
    whole = tmp_path / f"whole{suffix}"
    Image.fromarray(xray).save(whole)
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    assert "truncated" in _read_error(cut) or "corrupt" in _read_error(cut)


def test_text_file_named_png(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("patient 12: follow-up in two weeks\n")
    assert "not an image" in _read_error(path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    _read_error(path)


def test_missing_file(tmp_path):
    assert "no such file" in _read_error(tmp_path / "absent.png")


def test_folder(tmp_path):
    assert "folder" in _read_error(tmp_path)


def _png_claiming(tmp_path, width: int, height: int):
    """A small real PNG whose header claims width x height: what a decompression bomb looks
    like to a reader before it inflates the data."""
    path = tmp_path / f"claims_{width}x{height}.png"
    Image.new("L", (8, 8)).save(path)
    data = bytearray(path.read_bytes())
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))
    return path


def test_decompression_bomb_is_refused(tmp_path):
    """Past Pillow's own hard limit its refusal comes first: worded as ours, with the size."""
    message = _read_error(_png_claiming(tmp_path, 20000, 20000))
    assert "decompression bomb" in message
    assert "claims 400 MP, over the 100 MP limit" in message and "downscale" in message
    assert "DOS attack" not in message  # Pillow's own words


def test_image_over_our_pixel_limit_is_refused(tmp_path):
    # 108 MP: under Pillow's hard limit (179 MP), over ours.
    width, height = 12000, 9000
    assert width * height > MAX_PIXELS
    message = _read_error(_png_claiming(tmp_path, width, height))
    assert "MP limit" in message


def test_an_empty_file_is_called_empty_not_a_wrong_format(tmp_path):
    """A 0-byte file is a failed copy or download: the fix is to copy it again, not to convert
    it. A file with bytes that are no image keeps the format message."""
    empty = tmp_path / "scan.png"
    empty.write_bytes(b"")
    with pytest.raises(ImageReadError, match=r"empty file \(0 bytes\)"):
        read_grayscale(empty)
    text = tmp_path / "notes.png"
    text.write_text("hello\n")
    with pytest.raises(ImageReadError) as caught:
        read_grayscale(text)
    assert "not an image covid-edge can read" in str(caught.value)
    assert "empty" not in str(caught.value)
