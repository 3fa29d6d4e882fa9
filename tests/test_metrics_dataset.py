"""Metrics, the duplicate-aware split and augmentation: small, exact checks."""

import numpy as np
import pytest

from covid_edge import dataset, metrics
from covid_edge.convert.augment import Augmenter


def test_roc_auc_matches_pairwise_definition():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 300)
    scores = np.round(rng.random(300), 2)  # rounding makes ties
    pos, neg = scores[y == 1], scores[y == 0]
    pairwise = ((pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])).mean()
    assert metrics.roc_auc(y, scores) == pytest.approx(pairwise)
    assert metrics.roc_auc([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert metrics.roc_auc([0, 0, 1, 1], [0.9, 0.8, 0.2, 0.1]) == 0.0


def test_binary_metrics_confusion_matrix():
    result = metrics.binary_metrics([1, 1, 1, 0, 0], [0.9, 0.6, 0.2, 0.7, 0.1], threshold=0.5)
    assert result["confusion_matrix"] == [[1, 1], [1, 2]]
    assert result["sensitivity"] == pytest.approx(2 / 3)
    assert result["specificity"] == pytest.approx(1 / 2)
    assert result["accuracy"] == pytest.approx(3 / 5)


@pytest.mark.parametrize("target", [0.9, 0.95, 0.98, 1.0])
def test_screening_threshold_reaches_target_sensitivity(target):
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 500)
    prob = np.clip(0.3 * y + rng.random(500) * 0.7, 0, 1)
    threshold = metrics.screening_threshold(y, prob, target)
    assert metrics.binary_metrics(y, prob, threshold)["sensitivity"] >= target
    # The highest such threshold: any higher one misses the target.
    higher = np.min(prob[prob > threshold]) if np.any(prob > threshold) else None
    if higher is not None:
        assert metrics.binary_metrics(y, prob, higher)["sensitivity"] < target


def test_duplicates_are_grouped_and_never_split():
    rng = np.random.default_rng(3)
    originals = rng.integers(0, 256, (40, 64, 64)).astype(np.uint8)
    # A re-encoded/contrast-changed copy of image 0 and an exact copy of image 5.
    brighter = np.clip(originals[0].astype(int) * 0.8 + 20, 0, 255).astype(np.uint8)
    pixels = np.concatenate([originals, brighter[None], originals[5][None]])
    groups = dataset.duplicate_groups(pixels)
    assert groups[40] == groups[0] and groups[41] == groups[5]
    assert len(np.unique(groups)) == 40
    labels = np.array([0] * 20 + [1] * 20 + [0, 0])
    split = dataset.group_split(labels, groups, seed=0)
    for group in np.unique(groups):
        assert len(set(split[groups == group])) == 1
    again = dataset.group_split(labels, groups, seed=0)
    assert (split == again).all(), "the split must be reproducible for a seed"
    assert set(split) == set(dataset.SPLITS)


def test_augmentation_never_mirrors():
    # Left half bright, right half dark: a mirror would swap them.
    image = np.zeros((64, 64), dtype=np.uint8)
    image[:, :32] = 200
    augment = Augmenter(corner_erase_p=0.0)  # flat corners would blur the halves' contrast
    rng = np.random.default_rng(0)
    for _ in range(20):
        out = augment(image[None], rng)[0]
        assert out[:, 8:24].mean() > out[:, 40:56].mean()
        assert out.min() >= 0 and out.max() <= 255 and np.all(out == np.rint(out))


def test_identity_augmentation_keeps_the_image():
    image = np.random.default_rng(4).integers(0, 256, (32, 32)).astype(np.uint8)
    still = Augmenter(max_rotation_deg=0, max_shift=0, zoom_range=(1, 1), max_contrast=0,
                      max_brightness=0, corner_erase_p=0)
    assert np.array_equal(still(image[None], np.random.default_rng(0))[0], image)


def test_corner_erasing_paints_only_corners_flat():
    image = np.full((100, 100), 77, dtype=np.uint8)
    image[::2] = 180  # stripes, so no erased rectangle can look like the original
    erase = Augmenter(max_rotation_deg=0, max_shift=0, zoom_range=(1, 1), max_contrast=0,
                      max_brightness=0, corner_erase_p=1.0)
    rng = np.random.default_rng(1)
    touched_corners = set()
    for _ in range(30):
        out = erase(image[None], rng)[0]
        changed = out != image
        assert changed.any(), "with p=1 every image gets at least one corner erased"
        # The centre (outside every possible rectangle: at most 35% per side) is untouched.
        assert not changed[36:64, 36:64].any()
        for name, (rows, cols) in {"tl": (slice(0, 12), slice(0, 12)),
                                   "tr": (slice(0, 12), slice(-12, None)),
                                   "bl": (slice(-12, None), slice(0, 12)),
                                   "br": (slice(-12, None), slice(-12, None))}.items():
            corner = out[rows, cols]
            if (corner != image[rows, cols]).any():
                touched_corners.add(name)
                assert corner.min() == corner.max(), "an erased corner is one flat grey"
    assert touched_corners == {"tl", "tr", "bl", "br"}


def test_a_reused_split_follows_the_images_not_their_order(tmp_path):
    # --split-from: a crop run is compared with the full-image run on the same images, so the
    # earlier split must be found by (root, path), whatever order the folders are read in.
    items = [dataset.Item(f"{label}/{i}.jpg", label, source, root)
             for i, (label, source, root) in enumerate(
                 [("covid", "cxr", "cxr"), ("normal", "nih", "cxr-more"),
                  ("normal", "cxr", "cxr"), ("pneumonia", "nih", "cxr-more")])]
    groups = np.array([0, 1, 2, 3])
    split = np.array(["train", "val", "test", "train"], dtype=object)
    dataset.write_split(tmp_path / "split.csv", items, groups, split)
    again = [items[3], items[0], items[2], items[1]]
    reused_groups, reused_split = dataset.reuse_split(tmp_path / "split.csv", again)
    assert list(reused_split) == ["train", "train", "test", "val"]
    assert list(reused_groups) == [3, 0, 2, 1]
    with pytest.raises(ValueError, match="1 of them not in the file"):
        dataset.reuse_split(tmp_path / "split.csv",
                            again[:3] + [dataset.Item("normal/9.jpg", "normal", "nih", "cxr-more")])
    with pytest.raises(ValueError, match="labels 1 images differently"):
        dataset.reuse_split(tmp_path / "split.csv",
                            again[:3] + [dataset.Item(items[1].path, "pneumonia", "nih",
                                                      "cxr-more")])
