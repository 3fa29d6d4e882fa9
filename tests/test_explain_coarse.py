"""Coarse-to-fine occlusion (explain_coarse.py): fewer inferences, the full map's picture."""

from __future__ import annotations

import numpy as np
import pytest

from covid_edge.edge_runtime.classifier import Classifier
from covid_edge.edge_runtime.explain import count_inferences, explain_pixels
from covid_edge.edge_runtime.explain_coarse import (coarse_indices, expected_inferences,
                                                    explain_pixels_coarse, interpolate_axis)
from covid_edge.preprocess import load_pixels


@pytest.fixture(scope="module")
def classifier(models_dir) -> Classifier:
    return Classifier.load(models_dir, num_threads=2)


def test_coarse_grid_covers_the_edges():
    assert coarse_indices(13) == [0, 2, 4, 6, 8, 10, 12]
    assert coarse_indices(14) == [0, 2, 4, 6, 8, 10, 12, 13]
    assert expected_inferences(224, 224) == 80
    assert expected_inferences(224, 224, budget=10) == 50  # never below the coarse grid
    assert expected_inferences(224, 224, budget=999) == count_inferences(224, 224, 32, 16)


def test_interpolation_is_linear_between_known_points():
    values = np.array([[0.0, np.nan, 4.0, np.nan, 8.0]])
    filled = interpolate_axis(values, np.array([0, 2, 4]), axis=1)
    assert filled.tolist() == [[0.0, 2.0, 4.0, 6.0, 8.0]]


def test_budget_for_every_position_gives_the_full_map(classifier, covid_xray):
    pixels = load_pixels(covid_xray, classifier.spec)
    options = {"patch": 96, "stride": 48}  # 4 x 4 positions: cheap
    full = explain_pixels(classifier, pixels, **options)
    coarse = explain_pixels_coarse(classifier, pixels, budget=full.inferences, **options)
    assert coarse.inferences == full.inferences
    np.testing.assert_allclose(coarse.heatmap, full.heatmap, rtol=0, atol=1e-6)


def test_default_map_correlates_with_the_full_map(classifier, covid_xray, normal_xray):
    for path in (covid_xray, normal_xray):
        pixels = load_pixels(path, classifier.spec)
        full = explain_pixels(classifier, pixels)
        coarse = explain_pixels_coarse(classifier, pixels)
        assert coarse.inferences == 80 and full.inferences == 170
        assert coarse.base_score == full.base_score and coarse.verdict == full.verdict
        r = np.corrcoef(full.heatmap.ravel(), coarse.heatmap.ravel())[0, 1]
        assert r >= 0.9, (path.name, r)
