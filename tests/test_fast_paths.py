"""The faster arithmetic gives the same answers as the formulas it replaced, on real images:
the guard's fine-detail measure (integer sums) and the 12/16-bit stretch (a lookup table)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageFilter

from conftest import CXR, REFERENCE, REPO_ROOT
from covid_edge.edge_runtime.guard import ImageChecks, fine_detail, grey_spread
from covid_edge.image_io import read_grayscale
from covid_edge.model_card import load_card
from covid_edge.preprocess import PreprocessSpec, load_pixels
from covid_edge.stretch import stretch_to_8bit

# The blurs as their names say, written out apart from guard.DETAIL_BLURS.
NAMED_BLURS = {"gaussian-2": ImageFilter.GaussianBlur(2), "box-3": ImageFilter.BoxBlur(3)}


def fine_detail_float32(pixels: np.ndarray, blur: str) -> float:
    """The measure as it was written when limits were first fitted (covid-edge 0.2.0)."""
    blurred = Image.fromarray(pixels).filter(NAMED_BLURS[blur])
    values = pixels.astype(np.float32)
    spread = float(values.std())
    if spread == 0.0:
        return 0.0
    return float(np.abs(values - np.asarray(blurred, dtype=np.float32)).mean()) / spread


def stretch_float64(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        return np.zeros(values.shape, dtype=np.uint8)
    return np.rint((values - lo) * (255.0 / (hi - lo))).astype(np.uint8)


def real_pictures() -> list[np.ndarray]:
    spec = PreprocessSpec()
    files = (sorted((CXR / "covid").glob("*"))[:25] + sorted((CXR / "normal").glob("*"))[:25]
             + sorted((REFERENCE / "photos").glob("*")))
    pictures = [load_pixels(path, spec) for path in files]
    rng = np.random.default_rng(0)
    pictures.append(rng.integers(0, 256, (224, 224), dtype=np.uint8))  # noise
    pictures.append(np.tile(np.arange(224, dtype=np.uint8), (224, 1)))  # smooth gradient
    pictures.append(np.full((224, 224), 128, dtype=np.uint8))  # blank
    return pictures


@pytest.mark.parametrize("card_path", ["models/model_card.json",
                                       "releases/0.2.0/model_card.json"])
def test_fine_detail_is_the_fitted_measure(card_path):
    """Each card's limits are held to the measure they were fitted with: the shipped release
    names the box blur, 0.2.0 names none and keeps the Gaussian."""
    card = load_card(REPO_ROOT / card_path)
    checks = ImageChecks.from_dict(card.get("ood_guard", {}).get("image_checks"))
    named = card["ood_guard"]["image_checks"].get("detail_blur")
    assert checks.detail_blur == (named or "gaussian-2")
    limits = [checks.detail_max, checks.detail_min]
    for pixels in real_pictures():
        expected = fine_detail_float32(pixels, checks.detail_blur)
        assert fine_detail(pixels, blur=checks.detail_blur) == expected
        assert fine_detail(pixels, grey_spread(pixels), checks.detail_blur) == expected
        for limit in filter(None, limits):  # the decisions, explicitly
            assert (fine_detail(pixels, blur=checks.detail_blur) > limit) == (expected > limit)


def test_stretch_table_gives_the_float64_bytes(tmp_path):
    source = sorted((CXR / "normal").glob("*"))[0]
    gray = np.asarray(read_grayscale(source), dtype=np.uint16)
    cases = [gray * 16 + 300, gray * 257, (gray.astype(np.int32) - 100) * 3,
             np.full((4, 4), 7, dtype=np.uint16), np.array([[0, 65535]], dtype=np.uint16),
             gray.astype(np.float32) / 7]
    for values in cases:
        assert np.array_equal(stretch_to_8bit(values), stretch_float64(values)), values.dtype
    # and through the reader, from a real 16-bit PNG
    path = tmp_path / "sixteen.png"
    Image.fromarray(cases[0].astype(np.uint16)).save(path)
    assert np.array_equal(np.asarray(read_grayscale(path)), stretch_float64(cases[0]))
