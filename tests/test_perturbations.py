"""Each perturbation of the shift suite does what it claims, on a real X-ray, and is read back
by the device's own reader."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from covid_edge.benchmarks.perturbations import BY_NAME, CATALOGUE, available, generator
from covid_edge.image_io import read_image


@pytest.fixture(scope="module")
def xray(normal_xray) -> Image.Image:
    return read_image(normal_xray).gray


def apply(name: str, picture: Image.Image, image_index: int = 0):
    perturbation = BY_NAME[name]
    return perturbation.apply(picture, generator(0, CATALOGUE.index(perturbation), image_index))


def read_back(perturbed) -> np.ndarray:
    return np.asarray(read_image(io.BytesIO(perturbed.data)).gray)


@pytest.mark.parametrize("perturbation", [p for p in CATALOGUE if available(p)],
                         ids=lambda p: p.name)
def test_every_perturbation_is_seeded_and_readable(perturbation, xray):
    number = CATALOGUE.index(perturbation)
    first = perturbation.apply(xray, generator(7, number, 3))
    again = perturbation.apply(xray, generator(7, number, 3))
    assert first.data == again.data, "same seed, same image: the same file"
    decoded = read_image(io.BytesIO(first.data), target_size=(224, 224))
    assert decoded.gray.mode == "L" and min(decoded.size) > 0


def test_jpeg_q75_decodes_and_differs(xray):
    copy = apply("jpeg-q75", xray)
    assert copy.data[:3] == b"\xff\xd8\xff"
    pixels, original = read_back(copy).astype(int), np.asarray(xray, dtype=int)
    assert pixels.shape == original.shape
    difference = np.abs(pixels - original)
    assert 0 < difference.mean() < 4, "re-encoded, not replaced"


def test_16bit_export_round_trips_to_the_same_picture(xray):
    copy = apply("export-16bit-2048", xray)
    with Image.open(io.BytesIO(copy.data)) as stored:
        assert stored.mode.startswith("I;16") and max(stored.size) == 2048
        values = np.asarray(stored, dtype=np.int64)
    # Every 8-bit level v is stored as 257 v: the file holds the upscaled 8-bit picture.
    assert np.all(values % 257 == 0)
    back = Image.fromarray((values // 257).astype(np.uint8)).resize(xray.size,
                                                                   Image.Resampling.LANCZOS)
    assert np.abs(np.asarray(back, dtype=int) - np.asarray(xray, dtype=int)).mean() < 1.0


@pytest.mark.skipif(not available(BY_NAME["dicom-12bit"]), reason="needs pydicom")
def test_dicom_holds_the_same_pixels_in_12_bits(xray):
    import pydicom

    copy = apply("dicom-12bit", xray)
    ds = pydicom.dcmread(io.BytesIO(copy.data))
    assert (ds.BitsStored, ds.PhotometricInterpretation) == (12, "MONOCHROME2")
    assert np.array_equal(ds.pixel_array, np.asarray(xray, dtype=np.uint16) * 16)


def test_exif_rotation_is_undone_by_the_reader(xray):
    copy = apply("exif-rotated", xray)
    with Image.open(io.BytesIO(copy.data)) as stored:
        assert stored.size == (xray.height, xray.width) or xray.width == xray.height
        assert stored.getexif()[0x0112] == 6
        assert not np.array_equal(np.asarray(stored.convert("L")), np.asarray(xray))
    assert np.array_equal(read_back(copy), np.asarray(xray)), "upright again, pixel for pixel"


def test_camera_capture_is_seeded_and_changes_geometry(xray):
    first, other = apply("camera-capture", xray, 0), apply("camera-capture", xray, 1)
    assert first.data != other.data, "another image index, another capture"
    with Image.open(io.BytesIO(first.data)) as photo:
        assert photo.mode == "RGB" and photo.size == (800, 600)  # a camera frame, not the film
        rgb = np.asarray(photo, dtype=np.float64)
    # A colour cast: the channels are no longer equal.
    assert np.abs(rgb[..., 0] - rgb[..., 2]).mean() > 1.0
    # The film is a tilted quadrilateral inside a dark surround.
    gray = rgb.mean(axis=2)
    assert gray[:20].mean() < gray[250:350, 300:500].mean() - 40


def test_geometry_and_overlays_change_what_they_say(xray):
    padded = read_back(apply("pad-4x3", xray))
    assert padded.shape[1] > padded.shape[0] and padded[:, :5].max() == 0
    framed = read_back(apply("black-frame", xray))
    assert framed.shape == np.asarray(xray).shape and framed[:5].max() == 0
    text = read_back(apply("burned-in-text", xray)).astype(int)
    changed = np.abs(text - np.asarray(xray, dtype=int)) > 0
    assert 0 < changed.mean() < 0.1, "a marker and a line of text, not a new picture"
