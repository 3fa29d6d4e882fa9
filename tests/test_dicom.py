"""DICOM input: real chest X-rays from ../shared written as DICOM with pydicom the ways hospital
systems store them (12-bit with rescale and window, MONOCHROME1, VOI LUT, JPEG and JPEG 2000
wrapped), pydicom's own bundled test files, and the errors for what cannot be read."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from conftest import REPO_ROOT, subprocess_env
from covid_edge.cli import main
from covid_edge.image_io import ImageReadError, looks_like_dicom, read_grayscale

pydicom = pytest.importorskip("pydicom", reason="DICOM support needs the [dicom] extra")
from pydicom.data import get_testdata_file  # noqa: E402
from pydicom.dataset import Dataset, FileMetaDataset  # noqa: E402
from pydicom.encaps import encapsulate  # noqa: E402
from pydicom.pixels import get_decoder  # noqa: E402
from pydicom.uid import (JPEG2000, DigitalXRayImageStorageForPresentation,  # noqa: E402
                         ExplicitVRLittleEndian, JPEG2000Lossless, JPEGBaseline8Bit,
                         JPEGLSLossless)

EXIT_OK, EXIT_UNREADABLE = 0, 1


# -- writing DICOM the way a modality would ---------------------------------------------------

def xray_pixels(path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("L"))


def dx_dataset(pixels: np.ndarray, photometric: str = "MONOCHROME2",
               bits_stored: int | None = None, **elements) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = DigitalXRayImageStorageForPresentation
    ds.Modality = "DX"
    ds.set_pixel_data(pixels, photometric, bits_stored or pixels.dtype.itemsize * 8)
    for name, value in elements.items():
        setattr(ds, name, value)
    return ds


def save(ds: Dataset, path) -> str:
    ds.save_as(path, enforce_file_format=True)
    return str(path)


def to_12_bit(pixels: np.ndarray) -> np.ndarray:
    """8-bit gray levels spread over 0..4095, as a 12-bit detector would store them."""
    return np.rint(pixels.astype(np.float64) * (4095 / 255)).astype(np.uint16)


def gray(path) -> np.ndarray:
    return np.asarray(read_grayscale(path))


def bundled(name: str) -> str:
    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"{name} is not bundled with this pydicom")
    return path


@pytest.fixture(scope="module")
def xray(covid_xray) -> np.ndarray:
    return xray_pixels(covid_xray)


# -- bit depths, rescale, window, VOI LUT, MONOCHROME1 ---------------------------------------

def test_8_bit_dicom_gives_the_original_pixels(tmp_path, xray):
    path = save(dx_dataset(xray), tmp_path / "xray.dcm")
    assert np.array_equal(gray(path), xray)


def test_12_bit_with_rescale_and_full_window_gives_the_original_back(tmp_path, xray):
    stored = to_12_bit(xray)
    # Modality values 2 * stored - 1024, range -1024..7166; a window spanning exactly that range
    # (LINEAR: centre c - 0.5, width w - 1, PS3.3 C.11.2.1.2.1).
    ds = dx_dataset(stored, bits_stored=12, RescaleSlope=2, RescaleIntercept=-1024,
                    WindowCenter=3071.5, WindowWidth=8191)
    result = gray(save(ds, tmp_path / "xray12.dcm"))
    assert result.shape == xray.shape
    assert np.abs(result.astype(int) - xray).max() <= 1


def test_window_centre_width_is_applied(tmp_path, xray):
    stored = to_12_bit(xray)
    # A window over gray levels 64..192 of the original: below is black, above is white.
    low, high = 64 * 4095 / 255, 192 * 4095 / 255
    ds = dx_dataset(stored, bits_stored=12, WindowCenter=(low + high) / 2 + 0.5,
                    WindowWidth=high - low + 1)
    result = gray(save(ds, tmp_path / "window.dcm")).astype(int)
    expected = np.clip((xray.astype(np.float64) - 64) * 255 / 128, 0, 255)
    assert np.abs(result - expected).max() <= 2
    assert (result[xray < 60] == 0).all() and (result[xray > 196] == 255).all()


def test_unused_high_bits_are_ignored(tmp_path, xray):
    """Bits 12-15 of 12-bit data may hold overlays or garbage; only Bits Stored count."""
    stored = to_12_bit(xray)
    ds = dx_dataset(stored, bits_stored=12, WindowCenter=2048, WindowWidth=4096)
    clean = gray(save(ds, tmp_path / "clean.dcm"))
    ds.PixelData = (stored | 0xF000).astype("<u2").tobytes()
    assert np.array_equal(gray(save(ds, tmp_path / "dirty.dcm")), clean)


def test_12_bit_without_window_is_stretched_like_a_16_bit_png(tmp_path, xray):
    stored = to_12_bit(xray)[:, :] // 2 + 100  # a detector using part of its range
    result = gray(save(dx_dataset(stored, bits_stored=12), tmp_path / "nowindow.dcm"))
    lo, hi = float(stored.min()), float(stored.max())
    expected = np.rint((stored - lo) * (255 / (hi - lo)))
    assert np.array_equal(result, expected.astype(np.uint8))


def test_monochrome1_comes_out_as_the_monochrome2_original(tmp_path, xray):
    stored = to_12_bit(xray)
    mono2 = gray(save(dx_dataset(stored, bits_stored=12), tmp_path / "mono2.dcm"))
    inverted = (4095 - stored).astype(np.uint16)  # MONOCHROME1: high values are dark
    mono1 = gray(save(dx_dataset(inverted, "MONOCHROME1", 12), tmp_path / "mono1.dcm"))
    assert np.array_equal(mono1, mono2)
    lo, hi = float(xray.min()), float(xray.max())  # no window: the data is stretched
    assert np.abs(mono2 - (xray - lo) * (255 / (hi - lo))).max() <= 1


def test_monochrome1_with_a_window(tmp_path, xray):
    stored = to_12_bit(xray)
    centre, width = 2000, 3000
    mono2 = gray(save(dx_dataset(stored, bits_stored=12, WindowCenter=centre,
                                 WindowWidth=width), tmp_path / "mono2.dcm")).astype(int)
    # The same window on the inverted scale: centre c' = 4095 - c + 1 for LINEAR windows.
    mono1 = gray(save(dx_dataset((4095 - stored).astype(np.uint16), "MONOCHROME1", 12,
                                 WindowCenter=4096 - centre, WindowWidth=width),
                      tmp_path / "mono1.dcm")).astype(int)
    assert np.abs(mono1 - mono2).max() <= 1
    assert (mono1 == mono2).mean() > 0.99


def test_voi_lut_sequence_is_applied_and_preferred_to_the_window(tmp_path, xray):
    stored = to_12_bit(xray)
    # A square-root curve, declared 16 bits per entry but reaching only 4095, a common quirk.
    curve = np.rint(4095 * np.sqrt(np.arange(4096) / 4095)).astype(np.uint16)
    item = Dataset()
    item.LUTDescriptor = [4096, 0, 16]
    item.LUTData = curve.tolist()
    item["LUTData"].VR = "US"
    ds = dx_dataset(stored, bits_stored=12, WindowCenter=100, WindowWidth=10)
    ds.VOILUTSequence = [item]
    result = gray(save(ds, tmp_path / "voilut.dcm")).astype(int)
    expected = 255 * np.sqrt(xray / 255.0)
    assert np.abs(result - expected).max() <= 1.5


def test_signed_ct_from_pydicom_is_min_max_stretched():
    ds = pydicom.dcmread(bundled("CT_small.dcm"))  # rescale to HU, no window
    hounsfield = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    lo, hi = hounsfield.min(), hounsfield.max()
    expected = np.rint((hounsfield - lo) * 255 / (hi - lo)).astype(np.uint8)
    assert np.array_equal(gray(bundled("CT_small.dcm")), expected)


def test_window_of_pydicoms_mr_follows_the_dicom_formula():
    ds = pydicom.dcmread(bundled("MR_small.dcm"))
    centre, width = float(ds.WindowCenter), float(ds.WindowWidth)
    x = ds.pixel_array.astype(np.float64)
    # PS3.3 C.11.2.1.2.1, written out independently of pydicom.
    expected = np.rint(np.clip((x - (centre - 0.5)) / (width - 1) + 0.5, 0, 1) * 255)
    assert np.abs(gray(bundled("MR_small.dcm")).astype(int) - expected).max() <= 1


@pytest.mark.parametrize("name", ["MR_small_RLE.dcm", "MR_small_jp2klossless.dcm",
                                  "MR_small_bigendian.dcm", "MR_small_implicit.dcm"])
def test_lossless_encodings_of_one_image_read_the_same(name):
    if name.endswith("jp2klossless.dcm") and not get_decoder(JPEG2000Lossless).is_available:
        pytest.skip("no JPEG 2000 decoder (Pillow without OpenJPEG)")
    assert np.array_equal(gray(bundled(name)), gray(bundled("MR_small.dcm")))


def test_colour_dicom_becomes_gray():
    image = read_grayscale(bundled("SC_rgb_dcmtk_+eb+cy+n1.dcm"))  # YBR_FULL
    assert image.mode == "L" and image.size == (100, 100)
    rgb = read_grayscale(bundled("SC_rgb_dcmtk_+eb+cr.dcm"))  # the same picture as RGB
    # 8-bit YBR cannot hold saturated colours exactly, so a few pixels differ by more.
    difference = np.abs(np.asarray(image, dtype=int) - np.asarray(rgb))
    assert difference.mean() < 1 and (difference <= 2).mean() >= 0.9


def test_colour_dicom_keeps_its_colourfulness_for_the_guard():
    from covid_edge.edge_runtime.guard import ImageChecks
    from covid_edge.image_io import read_image
    from covid_edge.preprocess import PreprocessSpec, resize_gray

    # A colour-Doppler ultrasound frame: gray would hide that it is no X-ray.
    doppler = read_image(bundled("examples_rgb_color.dcm"))
    assert doppler.gray.mode == "L" and doppler.size == (320, 240)
    assert doppler.colourfulness > 15
    reason = ImageChecks().reason(resize_gray(doppler.gray, PreprocessSpec()),
                                  doppler.colourfulness, doppler.size)
    assert reason.startswith("colour image")
    assert read_image(bundled("MR_small.dcm")).colourfulness is None  # monochrome: no colour


# -- compressed transfer syntaxes ------------------------------------------------------------

def test_jpeg_wrapped_in_dicom_reads_as_the_jpeg(tmp_path, covid_xray, xray):
    """Secondary captures often wrap the JPEG itself; Pillow decodes it, no extra needed."""
    ds = dx_dataset(xray)
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.PixelData = encapsulate([covid_xray.read_bytes()])
    assert np.array_equal(gray(save(ds, tmp_path / "jpeg.dcm")), xray)


def test_jpeg_2000_lossless_xray_round_trips(tmp_path, xray):
    if not get_decoder(JPEG2000Lossless).is_available:
        pytest.skip("no JPEG 2000 decoder (Pillow without OpenJPEG)")
    codestream = io.BytesIO()
    Image.fromarray(xray).save(codestream, "JPEG2000", no_jp2=True, irreversible=False)
    ds = dx_dataset(xray)
    ds.file_meta.TransferSyntaxUID = JPEG2000Lossless
    ds.PixelData = encapsulate([codestream.getvalue()])
    assert np.array_equal(gray(save(ds, tmp_path / "j2k.dcm")), xray)


def test_corrupt_jpeg_2000_data_is_a_clear_error(tmp_path, xray):
    ds = dx_dataset(xray)
    ds.file_meta.TransferSyntaxUID = JPEG2000
    ds.PixelData = encapsulate([b"\xff\x4f\xff\x51 not a codestream" * 8])
    with pytest.raises(ImageReadError, match="JPEG 2000") as error:
        read_grayscale(save(ds, tmp_path / "bad-j2k.dcm"))
    assert "gdcmconv --raw" in str(error.value)


def test_jpeg_ls_without_a_decoder_names_the_syntax_and_the_fix():
    if get_decoder(JPEGLSLossless).is_available:
        pytest.skip("a JPEG-LS decoder is installed here")
    with pytest.raises(ImageReadError) as error:
        read_grayscale(bundled("MR_small_jpeg_ls_lossless.dcm"))
    message = str(error.value)
    assert "JPEG-LS Lossless" in message and JPEGLSLossless in message
    assert "pip install pylibjpeg pylibjpeg-libjpeg" in message and "gdcmconv --raw" in message


def test_jpeg_ls_header_with_any_data_is_refused_before_decoding(tmp_path, xray):
    if get_decoder(JPEGLSLossless).is_available:
        pytest.skip("a JPEG-LS decoder is installed here")
    ds = dx_dataset(xray)
    ds.file_meta.TransferSyntaxUID = JPEGLSLossless
    ds.PixelData = encapsulate([b"\x00" * 64])
    with pytest.raises(ImageReadError, match="needs a decoder that is not installed"):
        read_grayscale(save(ds, tmp_path / "jls.dcm"))


# -- what is not a single radiograph ---------------------------------------------------------

def test_multi_frame_is_refused_with_a_way_out():
    with pytest.raises(ImageReadError, match=r"multi-frame DICOM \(2 frames"):
        read_grayscale(bundled("SC_rgb_rle_2frame.dcm"))


@pytest.mark.parametrize("name, reason", [
    ("rtplan.dcm", "holds no image"),
    ("MR_truncated.dcm", "corrupt"),
    ("meta_missing_tsyntax.dcm", "corrupt DICOM image"),
])
def test_dicom_without_a_readable_image(name, reason):
    with pytest.raises(ImageReadError, match=reason):
        read_grayscale(bundled(name))


def test_a_radiograph_header_without_pixels_is_not_told_to_be_a_radiograph(xray, tmp_path):
    ds = dx_dataset(xray)
    del ds.PixelData
    with pytest.raises(ImageReadError, match="no Pixel Data.*export it again") as caught:
        read_grayscale(save(ds, tmp_path / "header-only.dcm"))
    assert "pass a radiograph" not in str(caught.value)


def test_dcm_name_on_something_else(tmp_path):
    path = tmp_path / "notes.dcm"
    path.write_text("a text file with a .dcm name\n" * 20)
    with pytest.raises(ImageReadError, match="not a readable DICOM file"):
        read_grayscale(path)
    with pytest.raises(ImageReadError, match="no such file"):
        read_grayscale(tmp_path / "missing.dcm")


# -- recognising DICOM -----------------------------------------------------------------------

def test_dicom_is_recognised_by_its_signature_whatever_its_name(tmp_path, xray, covid_xray):
    path = save(dx_dataset(xray), tmp_path / "IM000001")  # PACS exports often have no suffix
    assert looks_like_dicom(path) and not looks_like_dicom(covid_xray)
    assert np.array_equal(gray(path), xray)
    upload = io.BytesIO((tmp_path / "IM000001").read_bytes())
    assert np.array_equal(np.asarray(read_grayscale(upload)), xray)


def test_file_without_preamble_is_read(tmp_path, xray):
    ds = dx_dataset(xray)
    del ds.file_meta  # ACR-NEMA style: the dataset alone, implicit VR
    ds.save_as(tmp_path / "old.dcm", implicit_vr=True, little_endian=True)
    assert not looks_like_dicom(io.BytesIO((tmp_path / "old.dcm").read_bytes()))
    assert np.array_equal(gray(tmp_path / "old.dcm"), xray)


def test_missing_pydicom_says_how_to_install_it(tmp_path, xray):
    path = save(dx_dataset(xray), tmp_path / "xray.dcm")
    child = ("import sys; sys.modules['pydicom'] = None\n"  # as if it were not installed
             "from covid_edge.image_io import ImageReadError, read_grayscale\n"
             "try:\n    read_grayscale(sys.argv[1])\n"
             "except ImageReadError as exc:\n    print('ERROR', exc)\n")
    done = subprocess.run([sys.executable, "-c", child, path], capture_output=True, text=True,
                          env=subprocess_env(), cwd=REPO_ROOT, timeout=60)
    assert "ERROR" in done.stdout and "'.[dicom]'" in done.stdout, (
        done.stdout + done.stderr)


# -- end to end through the CLI --------------------------------------------------------------

def test_classify_dicom_end_to_end(models_dir, tmp_path, covid_xray, xray):
    folder = tmp_path / "scans"
    folder.mkdir()
    save(dx_dataset(xray), folder / "chest.dcm")
    stored = (4095 - to_12_bit(xray)).astype(np.uint16)
    save(dx_dataset(stored, "MONOCHROME1", 12), folder / "chest-mono1.dcm")
    save(dx_dataset(to_12_bit(xray)[:2, :2], "MONOCHROME2", 12, NumberOfFrames=1),
         folder / "tiny.dicom")
    ds = dx_dataset(xray)
    ds.file_meta.TransferSyntaxUID = JPEGLSLossless
    ds.PixelData = encapsulate([b"\x00" * 64])
    save(ds, folder / "compressed.dcm")

    result = CliRunner().invoke(main, ["classify", str(folder), str(covid_xray), "--model",
                                       str(models_dir), "--json"])
    document = json.loads(result.stdout)
    by_name = {r["path"].rsplit("/", 1)[-1]: r for r in document["results"]}
    assert set(by_name) == {"chest.dcm", "chest-mono1.dcm", "tiny.dicom", "compressed.dcm",
                            covid_xray.name}  # the folder scan finds .dcm and .dicom
    reference = by_name[covid_xray.name]["probability"]
    assert by_name["chest.dcm"]["probability"] == pytest.approx(reference, abs=1e-6)
    # 12-bit data go through the card's window: a release with the percentile window (0.3.0)
    # clips the darkest and brightest 0.5%, which the 8-bit original does not: close, not equal.
    assert by_name["chest-mono1.dcm"]["probability"] == pytest.approx(reference, abs=0.05)
    assert by_name["tiny.dicom"]["error"] is None
    if not get_decoder(JPEGLSLossless).is_available:
        assert "JPEG-LS" in by_name["compressed.dcm"]["error"]
        assert result.exit_code == EXIT_UNREADABLE


def test_png_and_jpeg_users_never_load_pydicom(models_dir, covid_xray):
    from test_no_tensorflow import CHILD
    done = subprocess.run(
        [sys.executable, "-c", CHILD,
         json.dumps([["classify", str(covid_xray), "--model", str(models_dir), "--json"]]),
         json.dumps(["pydicom"])],
        capture_output=True, text=True, env=subprocess_env(), cwd=REPO_ROOT, timeout=120)
    report = json.loads(done.stdout.split("REPORT ", 1)[1])
    assert report == {"codes": [0], "loaded": []}
