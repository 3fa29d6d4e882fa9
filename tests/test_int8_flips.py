"""scripts/int8_flips.py: the margin of a verdict is its distance from the boundary it sits
behind (the threshold for covid, also the normal-pneumonia line below it)."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import load_script

int8_flips = load_script("int8_flips")


def test_margins_measure_the_nearest_boundary():
    # classes (normal, pneumonia, covid); covid is positive, threshold 0.2
    probs = np.array([
        [0.10, 0.05, 0.85],  # covid, 0.65 above the threshold
        [0.50, 0.32, 0.18],  # below: 0.02 under the threshold, 0.18 between the others
        [0.45, 0.44, 0.11],  # below: normal beats pneumonia by 0.01
    ])
    assert int8_flips.margins(probs, 0.2, positive=2) == pytest.approx([0.65, 0.02, 0.01])


def test_two_classes_have_only_the_threshold():
    probs = np.array([[0.7, 0.3], [0.45, 0.55]])  # (normal, covid)
    assert int8_flips.margins(probs, 0.5, positive=1) == pytest.approx([0.2, 0.05])
