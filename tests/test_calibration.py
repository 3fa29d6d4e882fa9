"""Temperature scaling: the fit, the calibration error, and the probability people are shown."""

from __future__ import annotations

import numpy as np
import pytest

from covid_edge.convert.calibrate import (expected_calibration_error, fit_temperature,
                                          negative_log_likelihood, reliability_bins)
from covid_edge.edge_runtime.calibration import TemperatureScaling, logit, sigmoid
from covid_edge.edge_runtime.classifier import Classifier, ModelError
from covid_edge.model_card import load_card, write_json


def synthetic(temperature: float, n: int = 20000, seed: int = 0):
    """Labels drawn from calibrated logits; the 'model' reports them `temperature` times too
    large (over-confident when > 1)."""
    rng = np.random.default_rng(seed)
    true_logits = rng.normal(0.0, 2.0, n)
    labels = (rng.random(n) < sigmoid(true_logits)).astype(int)
    return true_logits * temperature, labels


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.5])
def test_fit_recovers_a_known_temperature(temperature):
    logits, labels = synthetic(temperature)
    fitted = fit_temperature(logits, labels)
    assert fitted == pytest.approx(temperature, rel=0.05)
    # ... and it is the minimum of the NLL, not just close to the truth.
    for other in (fitted * 0.9, fitted * 1.1):
        assert negative_log_likelihood(logits, labels, fitted) < \
            negative_log_likelihood(logits, labels, other)


def test_fit_needs_both_classes():
    with pytest.raises(ValueError, match="both classes"):
        fit_temperature(np.array([0.1, 2.0]), np.array([1, 1]))


def test_ece_known_values():
    # Bin of 0.1: positive rate 0.5 (error 0.4, half the images); bin of 0.9: rate 1 (error 0.1).
    p = np.array([0.1, 0.1, 0.9, 0.9])
    y = np.array([0, 1, 1, 1])
    assert expected_calibration_error(p, y, bins=15) == pytest.approx(0.5 * 0.4 + 0.5 * 0.1)
    # Perfect calibration within every bin gives 0.
    p = np.array([0.25] * 4 + [0.75] * 4)
    y = np.array([1, 0, 0, 0, 1, 1, 1, 0])
    assert expected_calibration_error(p, y) == pytest.approx(0.0)
    # Confident and always wrong: the worst case, 1.
    assert expected_calibration_error(np.array([0.0, 1.0]), np.array([1, 0])) == 1.0
    # p = 1.0 falls in the last bin, not past it.
    assert sum(r["count"] for r in reliability_bins(np.array([0.0, 1.0]), np.array([0, 1]),
                                                    bins=15)) == 2


def test_temperature_scaling_lowers_ece_of_an_overconfident_model():
    logits, labels = synthetic(3.0)
    before = sigmoid(logits)
    after = TemperatureScaling(fit_temperature(logits, labels), clip=1e-12).apply(before)
    assert expected_calibration_error(after, labels) < expected_calibration_error(before, labels) / 3


def test_scaling_is_monotone_so_verdicts_do_not_change():
    scaling = TemperatureScaling(1.7)
    p = np.linspace(0.0005, 0.9995, 4001)
    threshold = 0.0123
    assert np.all(np.diff(scaling.apply(p)) >= 0)
    away = np.abs(p - threshold) > 1e-9
    np.testing.assert_array_equal((p >= threshold)[away],
                                  (scaling.apply(p) >= scaling.apply(threshold))[away])
    # The clip keeps int8's extreme outputs finite: 0 and 1 map inside (0, 1).
    assert 0.0 < scaling.apply(0.0) < scaling.apply(1.0) < 1.0
    assert logit(0.5) == 0.0


def test_card_without_calibration_is_the_identity():
    scaling = TemperatureScaling.from_card({"threshold": 0.3})
    assert scaling.identity and scaling.apply(0.42) == 0.42
    with pytest.raises(ValueError):
        TemperatureScaling.from_card({"calibration": {"temperature": -1.0}})


def test_calibrate_writes_the_card_entry_and_diagram(tmp_path):
    pytest.importorskip("matplotlib")
    from covid_edge.convert.calibrate import calibrate

    logits, labels = synthetic(2.0, n=3000)
    p = sigmoid(logits)
    entry = calibrate(p[:1500], labels[:1500], p[1500:], labels[1500:], 0.2,
                      tmp_path / "reliability.png", log=lambda message: None)
    assert (tmp_path / "reliability.png").stat().st_size > 10_000
    assert entry["temperature"] == pytest.approx(2.0, rel=0.15)
    assert entry["ece_after"] < entry["ece_before"]
    assert entry["threshold"] == pytest.approx(sigmoid(logit(0.2) / entry["temperature"]))
    assert entry["bins"] == 15 and "validation" in entry["fitted_on"]


# -- the runtime, on the model under test --------------------------------------------------

def test_classifier_shows_the_calibrated_probability(models_dir, model_card, some_xrays):
    model = Classifier.load(models_dir, guard=False)
    scaling = TemperatureScaling.from_card(model_card)
    assert model.model_threshold == pytest.approx(model_card["threshold"])
    assert model.threshold == pytest.approx(scaling.apply(model_card["threshold"]))
    if "calibration" in model_card:
        assert model.threshold == pytest.approx(model_card["calibration"]["threshold"])
    for path in some_xrays:
        prediction = model.classify_file(path)
        assert prediction.probability == pytest.approx(scaling.apply(prediction.raw_probability))
        assert prediction.threshold == model.threshold
        assert prediction.verdict == ("covid" if prediction.raw_probability >= model.model_threshold
                                      else "normal")


def test_invalid_temperature_is_refused_at_load(models_dir, tmp_path):
    import shutil

    card = load_card(models_dir / "model_card.json")
    entry = card["variants"][card.get("default_variant", "int8")]
    shutil.copy(models_dir / entry["file"], tmp_path / entry["file"])
    card["calibration"] = {"temperature": 0.0}
    write_json(card, tmp_path)
    with pytest.raises(ModelError, match="temperature"):
        Classifier.load(tmp_path / entry["file"])
