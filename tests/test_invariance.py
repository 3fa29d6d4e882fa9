"""Training's invariance augmentation (convert/invariance.py) on real X-rays at model size:
seeded, the training loop's dtype and range, each transform changes the picture, and p = 0
is today's Augmenter draw for draw."""

from __future__ import annotations

import numpy as np
import pytest

from covid_edge.convert.augment import Augmenter
from covid_edge.convert.invariance import TRANSFORMS, InvarianceAugmenter, augmenter
from covid_edge.preprocess import PreprocessSpec, load_pixels


@pytest.fixture(scope="module")
def pixels(some_xrays) -> np.ndarray:
    spec = PreprocessSpec()
    return np.stack([load_pixels(path, spec) for path in some_xrays])


def test_seeded_runs_repeat_and_seeds_differ(pixels):
    aug = InvarianceAugmenter(p=1.0)
    first = aug(pixels, np.random.default_rng(3))
    again = aug(pixels, np.random.default_rng(3))
    other = aug(pixels, np.random.default_rng(4))
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)


def test_output_is_what_the_training_loop_takes(pixels):
    out = InvarianceAugmenter(p=1.0)(pixels, np.random.default_rng(0))
    assert out.dtype == np.float32 and out.shape == pixels.shape
    assert out.min() >= 0 and out.max() <= 255
    assert np.array_equal(out, np.rint(out)), "whole grey levels, as a decoded file has"


@pytest.mark.parametrize("name", TRANSFORMS)
def test_each_transform_changes_the_picture_and_keeps_its_shape(name, pixels):
    aug = InvarianceAugmenter(p=1.0)
    rng = np.random.default_rng(11)
    for image in pixels[:3]:
        out = aug.apply(name, image, rng)
        assert out.dtype == np.uint8 and out.shape == image.shape
        assert np.abs(out.astype(int) - image).mean() > 0.01, f"{name} left the picture as it was"
    # Not square: the transforms take (h, w), not (side, side).
    tall = pixels[0][:, 16:-16]
    assert aug.apply(name, tall, rng).shape == tall.shape


def test_p0_is_todays_augmenter_draw_for_draw(pixels):
    base = Augmenter(corner_erase_p=0.5)
    assert augmenter(base, 0.0) is base  # what train.py gets with --invariance 0
    wrapped = InvarianceAugmenter(base=base, p=0.0)
    assert np.array_equal(wrapped(pixels, np.random.default_rng(5)),
                          base(pixels, np.random.default_rng(5)))


def test_p_is_the_share_of_images_changed(pixels):
    still = Augmenter(max_rotation_deg=0.0, max_shift=0.0, zoom_range=(1.0, 1.0),
                      max_contrast=0.0, max_brightness=0.0, corner_erase_p=0.0)
    assert np.array_equal(still(pixels, np.random.default_rng(0)), pixels)
    aug = InvarianceAugmenter(base=still, p=0.5)
    out = aug(np.repeat(pixels[:2], 40, axis=0), np.random.default_rng(2))
    changed = int(sum(not np.array_equal(o, i) for o, i in zip(out, np.repeat(pixels[:2], 40,
                                                                               axis=0))))
    assert 25 <= changed <= 55, changed  # 40 expected; binomial sd ~4.5


def test_bad_settings_are_refused():
    with pytest.raises(ValueError):
        InvarianceAugmenter(p=1.5)
    with pytest.raises(ValueError):
        InvarianceAugmenter(transforms=("jpeg", "fax"))
    with pytest.raises(ValueError):
        InvarianceAugmenter(high_bit_window="gamma")


@pytest.mark.parametrize("window", ["minmax", "percentile"])
def test_high_bit_round_trip_is_the_devices_stretch(window, pixels):
    """The shortcut on 256 levels gives what the device's stretch gives on the deep picture."""
    from covid_edge.convert.invariance import read_back_deep
    from covid_edge.stretch import stretch_to_8bit

    rng = np.random.default_rng(0)
    for image in pixels[:3]:
        for top in (4095, 65535):
            low, high = rng.uniform(0, 0.2) * top, top - rng.uniform(0, 0.3) * top
            table = np.rint(low + np.arange(256) * ((high - low) / 255.0)).astype(np.int64)
            for marker in (None, (slice(5, 12), slice(100, 107))):
                deep = table[image].astype(np.uint16)
                if marker is not None:
                    deep[marker] = top
                assert np.array_equal(read_back_deep(image, table, top, marker, window),
                                      stretch_to_8bit(deep, window))
