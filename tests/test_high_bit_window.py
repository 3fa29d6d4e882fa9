"""The 12/16-bit window (stretch.py, PreprocessSpec.high_bit_window): "percentile" reads a
normal export as "minmax" does, keeps a radiograph's contrast when a burned-in marker sits at
the top value, and release 0.2.0's card still reads as "minmax"."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from covid_edge.benchmarks import perturbations
from covid_edge.card_schema import CardSchemaError, validate
from covid_edge.image_io import read_image
from covid_edge.preprocess import PreprocessSpec
from covid_edge.stretch import robust_window, stretch_to_8bit, stretcher

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def xray(normal_xray) -> Image.Image:
    gray = read_image(normal_xray).gray
    return gray.resize((gray.width // 2, gray.height // 2))


def read(data: bytes, window: str) -> np.ndarray:
    return np.asarray(read_image(io.BytesIO(data), high_bit_depth=window).gray)


def png16(values: np.ndarray) -> bytes:
    return perturbations.encode(Image.fromarray(values.astype(np.uint16)), "PNG")


def with_marker(values: np.ndarray, top: int) -> np.ndarray:
    """A burned-in marker block (0.2% of the pixels) at the container's top value."""
    marked = values.copy()
    side = max(2, int(0.045 * min(values.shape)))
    marked[10:10 + side, 10:10 + side] = top
    return marked


def stretched(picture: np.ndarray) -> np.ndarray:
    """The picture's own range stretched to 0..255 (what either window gives without a marker)."""
    lo, hi = int(picture.min()), int(picture.max())
    return np.clip(np.rint((picture.astype(float) - lo) * 255 / (hi - lo)), 0, 255)


def test_16bit_export_reads_the_same_with_either_window(xray):
    data = perturbations.upscale_16bit(xray, None).data
    assert np.array_equal(read(data, "minmax"), read(data, "percentile"))


def test_hot_marker_keeps_its_contrast_only_under_percentile(xray):
    picture = np.asarray(xray)
    # 12-bit data in a 16-bit PNG (stored 16 v), as many DX exports hold it, plus a marker.
    data = png16(with_marker(picture.astype(np.uint16) * 16, 65535))
    body = (slice(picture.shape[0] // 4, None), slice(None))
    minmax, robust = read(data, "minmax"), read(data, "percentile")
    original_spread = float(np.std(picture[body]))
    assert np.std(minmax[body]) < 0.1 * original_spread, "min-max squeezes the radiograph"
    # The window is the picture's own range: the radiograph comes back as it was.
    assert np.array_equal(robust[body], stretched(picture)[body])
    assert (robust[10:14, 10:14] == 255).all(), "the marker saturates"


def test_dicom_without_voi_follows_the_window(xray):
    pytest.importorskip("pydicom")
    from pydicom import dcmread

    picture = np.asarray(xray)
    data = perturbations.dicom_12bit(Image.fromarray(picture), None).data
    ds = dcmread(io.BytesIO(data))
    # Data in a quarter of the 12-bit range, a marker at its top (4095), no VOI window.
    ds.PixelData = with_marker(picture.astype(np.uint16) + 300, 4095).tobytes()
    buffer = io.BytesIO()
    ds.save_as(buffer)
    marked = buffer.getvalue()
    body = (slice(picture.shape[0] // 4, None), slice(None))
    assert np.std(read(marked, "minmax")[body]) < 0.1 * np.std(picture[body])
    assert np.array_equal(read(marked, "percentile")[body], stretched(picture)[body])


def test_table_and_arithmetic_agree_outside_the_window():
    rng = np.random.default_rng(0)
    values = rng.integers(100, 4000, (64, 64)).astype(np.uint16)
    values[:2, :2] = 65535
    table = stretch_to_8bit(values, "percentile")
    levels, counts = np.unique(values, return_counts=True)
    lo, hi = robust_window(levels.astype(float), counts)
    arithmetic = stretcher(lo, hi, integer=False)(values.astype(np.float64))
    assert np.array_equal(table, arithmetic)
    assert hi < 65535 and (table[:2, :2] == 255).all()


def test_minmax_is_release_0_2_0s_stretch():
    rng = np.random.default_rng(1)
    values = rng.integers(37, 3001, (50, 70)).astype(np.uint16)
    old = np.rint((values.astype(np.float64) - values.min()) * (255.0 / (values.max()
                                                                          - values.min())))
    assert np.array_equal(stretch_to_8bit(values), old.astype(np.uint8))


def test_release_0_2_0_card_reads_as_minmax_and_new_specs_round_trip():
    card = json.loads((REPO / "releases" / "0.2.0" / "model_card.json").read_text())
    assert PreprocessSpec.from_dict(card["preprocessing"]).high_bit_window == "minmax"
    spec = PreprocessSpec(high_bit_window="percentile")
    described = spec.to_dict()
    assert described["high_bit_window"] == "percentile"
    assert "percentile" in described["high_bit_depth"]
    assert PreprocessSpec.from_dict(described) == spec
    with pytest.raises(ValueError):
        PreprocessSpec.from_dict({"high_bit_window": "gamma"})
    card["preprocessing"]["high_bit_window"] = "gamma"
    with pytest.raises(CardSchemaError):
        validate(card)


def test_the_spec_decides_how_training_and_the_device_read_a_file(xray, tmp_path):
    from covid_edge.preprocess import load_pixels

    path = tmp_path / "marked.png"
    path.write_bytes(png16(with_marker(np.asarray(xray).astype(np.uint16) * 16, 65535)))
    minmax = load_pixels(path, PreprocessSpec(high_bit_window="minmax"))
    robust = load_pixels(path, PreprocessSpec(high_bit_window="percentile"))
    assert np.std(robust) > 3 * np.std(minmax)


def test_float_pictures_get_the_same_window_from_bins(xray):
    marked = with_marker(np.asarray(xray).astype(np.uint16) * 16, 65535)
    exact = stretch_to_8bit(marked, "percentile")
    binned = stretch_to_8bit(marked.astype(np.float32), "percentile")
    assert np.abs(exact.astype(int) - binned).max() <= 1
    # ... and read from a 32-bit float TIFF, strip by strip.
    data = perturbations.encode(Image.fromarray(marked.astype(np.float32)), "TIFF")
    assert np.abs(read(data, "percentile").astype(int) - exact).max() <= 1
