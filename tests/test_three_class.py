"""N classes end to end on the training side: classes from folders and manifests, --map,
a split stratified by class and source, a softmax head, per-class metrics, and an int8 file
with one output per class whose verdicts follow the screening rule.

The model is the small three-class one trained in this test session (conftest.three_class_*).
"""

import csv
import json
from collections import Counter

import numpy as np
import pytest

from conftest import CXR, CXR_MORE, RELEASE_0_2_0
from covid_edge import dataset, metrics
from covid_edge.classes import ClassScheme, ClassSchemeError


# -- classes and data (no TensorFlow) ---------------------------------------------------------

def test_two_class_scheme_is_release_0_2_0():
    card = json.loads((RELEASE_0_2_0 / "model_card.json").read_text())
    scheme = ClassScheme.from_card(card)
    assert (scheme.labels, scheme.positive, scheme.output_kind) == (
        ("normal", "covid"), "covid", "sigmoid")
    assert scheme.probabilities(np.array([0.3])).tolist() == pytest.approx([0.7, 0.3])
    # The old rule: covid when P(covid) >= threshold, else normal.
    assert scheme.verdict([0.4, 0.6], 0.56) == "covid"
    assert scheme.verdict([0.45, 0.55], 0.56) == "normal"


def test_screening_rule_for_three_classes():
    scheme = ClassScheme(("normal", "pneumonia", "covid"), "covid", "softmax")
    threshold = 0.2
    assert scheme.verdict([0.5, 0.25, 0.25], threshold) == "covid"  # screened for first
    assert scheme.verdict([0.5, 0.4, 0.1], threshold) == "normal"
    assert scheme.verdict([0.2, 0.7, 0.1], threshold) == "pneumonia"
    with pytest.raises(ClassSchemeError):
        ClassScheme(("normal", "pneumonia", "covid"), "covid", "sigmoid")
    with pytest.raises(ClassSchemeError):
        ClassScheme(("normal", "covid"), "viral", "sigmoid")


def test_calibration_keeps_the_verdict_and_sums_to_one():
    from covid_edge.edge_runtime.calibration import TemperatureScaling

    scaling = TemperatureScaling(1.7)
    scheme = ClassScheme(("normal", "pneumonia", "covid"), "covid", "softmax")
    rng = np.random.default_rng(0)
    p = rng.dirichlet([1, 1, 1], size=500)
    shown = scaling.apply_all(p, scheme.positive_index)
    assert np.allclose(shown.sum(axis=1), 1.0)
    threshold = 0.3
    shown_threshold = scaling.apply(threshold)
    assert np.array_equal(scheme.verdict_indices(p, threshold),
                          scheme.verdict_indices(shown, shown_threshold))
    # Two classes: exactly the sigmoid temperature scaling of P(covid).
    two = ClassScheme(("normal", "covid"), "covid")
    q = rng.uniform(0, 1, 50)
    assert np.allclose(scaling.apply_all(two.probabilities(q[:, None]), 1)[:, 1], scaling.apply(q))


def test_class_metrics_for_three_classes():
    scheme = ClassScheme(("normal", "pneumonia", "covid"), "covid", "softmax")
    labels = np.array([0, 0, 1, 1, 2, 2])
    p = np.array([[.8, .1, .1], [.3, .6, .1], [.1, .8, .1], [.2, .7, .1], [.1, .1, .8],
                  [.5, .2, .3]])
    result = metrics.class_metrics(labels, p, scheme, threshold=0.25)
    assert result["class_confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [0, 0, 2]]
    assert result["sensitivity"] == 1.0 and result["n_covid"] == 2
    assert result["per_class"]["pneumonia"]["sensitivity"] == 1.0
    assert result["per_class"]["normal"]["sensitivity"] == 0.5
    assert result["class_accuracy"] == pytest.approx(5 / 6)


def test_manifest_sources_map_and_class_order():
    items = dataset.scan(CXR_MORE)
    assert {item.source for item in items} == {"nih", "kermany", "montgomery", "shenzhen",
                                              "jsrt"}
    kept = dataset.relabel(items, {"tuberculosis": "drop", "nodule": "drop"})
    assert {item.label for item in kept} == {"normal", "pneumonia"}
    assert len(kept) == len(items) - sum(item.label in ("tuberculosis", "nodule")
                                         for item in items)
    assert dataset.class_order({"covid", "pneumonia", "normal"}) == ("normal", "pneumonia",
                                                                     "covid")
    with pytest.raises(ValueError, match="positive class"):
        dataset.class_order({"normal", "pneumonia"})


def test_release_0_2_0_images_come_in_the_order_it_was_trained_on():
    """0.2.0 stays reproducible from its card: one data folder gives the items, labels and
    order of its split.csv (the split is then drawn as before)."""
    from covid_edge.convert.train import TrainConfig, gather_items

    items, labels = gather_items(TrainConfig(data_dir=str(CXR), out_dir="unused"),
                                 log=lambda message: None)
    assert labels == ("normal", "covid")
    with open(RELEASE_0_2_0 / "training" / "split.csv", newline="") as handle:
        released = [(row["path"], row["label"]) for row in csv.DictReader(handle)]
    assert [(item.path, item.label) for item in items] == released


def test_split_is_stratified_by_class_and_source():
    items = dataset.relabel(dataset.scan(CXR_MORE, root="more"),
                            {"tuberculosis": "drop", "nodule": "drop"})
    labels = ("normal", "pneumonia")
    groups = np.arange(len(items))
    split = dataset.group_split(dataset.strata(items, labels), groups, seed=0)
    for source in ("nih", "kermany", "shenzhen", "jsrt", "montgomery"):
        of_source = np.array([item.source == source for item in items])
        share = np.mean(split[of_source] == "test")
        assert 0.10 <= share <= 0.20, (source, share)


# -- a real three-class model (trained and converted in this session) --------------------------

pytest_train = pytest.mark.slow


@pytest_train
def test_three_class_run(three_class_run):
    run = json.loads((three_class_run / "run.json").read_text())
    assert run["labels"] == ["normal", "pneumonia", "covid"]
    assert run["output_kind"] == "softmax"
    assert set(run["data_dirs"]) == {"cxr", "cxr-more"}
    for split in ("train", "val", "test"):
        measured = run["metrics"][split]
        matrix = np.array(measured["class_confusion_matrix"])
        assert matrix.shape == (3, 3) and matrix.sum() == measured["n"]
        assert set(measured["per_class"]) == {"normal", "pneumonia", "covid"}
    assert run["metrics"]["val"]["sensitivity"] >= run["config"]["target_sensitivity"]
    with open(three_class_run / "split.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert {row["root"] for row in rows} == {"cxr", "cxr-more"}
    assert not {row["label"] for row in rows} & {"tuberculosis", "nodule"}
    with open(three_class_run / "predictions.csv", newline="") as handle:
        row = next(csv.DictReader(handle))
    total = sum(float(row[f"p_{label}"]) for label in run["labels"])
    assert total == pytest.approx(1.0, abs=1e-4)


@pytest_train
def test_three_class_int8_model(three_class_dir):
    from covid_edge.edge_runtime.classifier import Classifier

    card = json.loads((three_class_dir / "model_card.json").read_text())
    assert card["labels"] == ["normal", "pneumonia", "covid"]
    assert card["output_kind"] == "softmax"
    int8 = card["variants"]["int8"]
    assert int8["integer_only"]
    assert set(int8["versus_float32"]["agreement_by_class"]) <= set(card["labels"])
    assert np.array(int8["metrics"]["class_confusion_matrix"]).shape == (3, 3)
    # Edge TPU compatibility as for two classes: the softmax head maps too.
    from covid_edge.edgetpu.compatibility import check_file

    assert check_file(three_class_dir / int8["file"]).fully_mapped
    references = card["reference_outputs"]["images"]
    assert {reference["label"] for reference in references} == set(card["labels"])
    classifier = Classifier.load(three_class_dir / int8["file"], guard=False)
    for reference in references:
        prediction = classifier.classify_file(three_class_dir / reference["file"])
        assert list(prediction.probabilities) == card["labels"]
        assert sum(prediction.probabilities.values()) == pytest.approx(1.0, abs=0.02)
        assert len(reference["raw_output"]) == 3
        raw = prediction.raw_probabilities
        expected = ("covid" if raw["covid"] >= card["threshold"]
                    else max(("normal", "pneumonia"), key=raw.get))
        assert prediction.verdict == expected == reference["verdict"]


@pytest_train
def test_fit_guard_fits_the_feature_check_again_and_touches_nothing_else(three_class_dir,
                                                                          tmp_path):
    """`covid-edge fit-guard` on a converted folder: one feature model per label, the card's
    guard entry measured again and its recipe extended; the model files stay as they were."""
    import shutil

    from click.testing import CliRunner

    from covid_edge.cli import main
    from covid_edge.edge_runtime.classifier import Classifier
    from covid_edge.edge_runtime.guard import FeatureDistance
    from covid_edge.model_card import load_card, sha256_file

    folder = tmp_path / "models"
    shutil.copytree(three_class_dir, folder)
    models = sorted(folder.glob("*.tflite"))
    before = {path.name: sha256_file(path) for path in models}
    old = load_card(folder / "model_card.json")
    for _ in range(2):  # a rerun replaces its own line in the recipe
        result = CliRunner().invoke(main, ["fit-guard", str(folder), "--ood-per-label",
                                           "--ood-components", "4", "--ood-quantile", "0.99",
                                           "--force"])
        assert result.exit_code == 0, result.output
    assert "4 components per group" in result.output
    card = load_card(folder / "model_card.json")
    guard = card["ood_guard"]
    assert set(guard["groups"]) == set(card["labels"]) and guard["components"] == 4
    assert guard["quantile"] == 0.99 and guard["limits"] == old["ood_guard"]["limits"]
    assert guard["test"]["images"] == old["ood_guard"]["test"]["images"]
    stats = FeatureDistance.load(folder / guard["stats_file"])
    assert sha256_file(folder / guard["stats_file"]) == guard["stats_sha256"]
    assert stats.groups == tuple(guard["groups"]) and stats.component_count == 4
    assert card["reproduce"][:-1] == old["reproduce"]
    assert card["reproduce"][-1] == (f"covid-edge fit-guard {folder} --ood-components 4 "
                                     "--ood-quantile 0.99 --ood-per-label --force")
    assert {path.name: sha256_file(path) for path in models} == before
    assert {k: v for k, v in card.items() if k != "ood_guard" and k != "reproduce"} == {
        k: v for k, v in old.items() if k != "ood_guard" and k != "reproduce"}
    assert "per label" in (folder / "MODEL_CARD.md").read_text()
    guarded = Classifier.load(folder)
    assert guarded.guard.features.groups == stats.groups
    sample = sorted(path for path in (folder / "samples").iterdir() if path.is_file()
                    and path.suffix in (".jpg", ".png"))[0]
    assert guarded.classify_file(sample).ood_distance is not None
    # Refusals a script can tell apart: a guard replaced without --force (nothing is
    # written), a folder that is not a conversion, a bad --data.
    stats_before = sha256_file(folder / guard["stats_file"])
    result = CliRunner().invoke(main, ["fit-guard", str(folder)])
    assert result.exit_code == 1 and "--force" in result.output
    assert sha256_file(folder / guard["stats_file"]) == stats_before
    result = CliRunner().invoke(main, ["fit-guard", str(tmp_path)])
    assert result.exit_code == 1 and "no model card" in result.output
    result = CliRunner().invoke(main, ["fit-guard", str(folder), "--data", "cxr"])
    assert result.exit_code == 2 and "ROOT=DIR" in result.output


def test_one_patients_images_share_a_group():
    items = dataset.scan(CXR_MORE)
    groups = dataset.with_patients(items, np.arange(len(items)))
    by_patient = {}
    for item, group in zip(items, groups):
        key = dataset.patient_key(item)
        if key:
            by_patient.setdefault(key, set()).add(int(group))
    assert by_patient and all(len(found) == 1 for found in by_patient.values())
    assert any(key.endswith("nih-00000061") for key in by_patient)
    images_per_patient = Counter(filter(None, map(dataset.patient_key, items)))
    assert max(images_per_patient.values()) > 1  # NIH follow-ups and Kermany patients with several images exist
    # Names without a patient (the database's) keep their own groups.
    plain = dataset.scan(CXR)[:50]
    assert dataset.with_patients(plain, np.arange(50)).tolist() == list(range(50))


def test_convert_can_choose_the_threshold_again_on_validation():
    """`convert --target-sensitivity`: the threshold is a deployment choice, re-made on the
    validation split's Keras probabilities, never on the test split."""
    from covid_edge.convert.convert import rethreshold

    scheme = ClassScheme(("normal", "pneumonia", "covid"), "covid", "softmax")
    rng = np.random.default_rng(0)
    items, split, probs = [], [], {}
    for index in range(600):
        label = scheme.labels[index % 3]
        part = dataset.SPLITS[index % 5 % 3]
        p_covid = rng.beta(5, 2) if label == "covid" else rng.beta(2, 5)
        rest = rng.dirichlet([1, 1]) * (1 - p_covid)
        items.append(dataset.Item(f"{label}/{index}.jpg", label))
        split.append(part)
        probs[items[-1].path] = np.array([rest[0], rest[1], p_covid])
    split = np.array(split, dtype=object)
    run = {"threshold": 0.05, "threshold_rule": "old", "config": {"target_sensitivity": 0.98},
           "metrics": {}}
    new = rethreshold(run, items, split, probs, scheme, 0.9, log=lambda message: None)
    assert new["threshold"] > 0.05 and new["target_sensitivity_at_conversion"] == 0.9
    assert new["metrics"]["val"]["sensitivity"] >= 0.9
    # Only validation decides: changing test probabilities leaves the threshold alone.
    changed = {path: (p if part != "test" else p[::-1])
               for (path, p), part in zip(probs.items(), split)}
    assert rethreshold(run, items, split, changed, scheme, 0.9,
                       log=lambda message: None)["threshold"] == new["threshold"]
    assert "--target-sensitivity 0.9" in new["threshold_rule"]


def test_reproduce_command_carries_the_tolerance_sample():
    """The card's `bench check` tolerance is measured on a draw of validation images when
    --tolerance-images is set; the card's convert command must say so to reproduce it."""
    from covid_edge.convert.convert import reproduce_commands

    run = {"config": {"out_dir": "runs/x", "data_dir": "data", "weights": "w.h5",
                      "image_size": 224, "batch_size": 32, "head_epochs": 1,
                      "fine_tune_epochs": 2, "fine_tune_from": "block_12_expand",
                      "target_sensitivity": 0.98, "seed": 0}}
    _, drawn = reproduce_commands(run, "data", 300, 0, tolerance_images=100)
    _, every = reproduce_commands(run, "data", 300, 0)
    assert drawn.endswith(" --tolerance-images 100")
    assert "--tolerance-images" not in every
    # The guard's fit too, where it differs from the defaults.
    assert "--ood" not in every
    _, guard = reproduce_commands(run, "data", 300, 0, ood_train_images=4000,
                                  ood_quantile=0.999, ood_per_label=True)
    assert guard.endswith(" --ood-train-images 4000 --ood-quantile 0.999 --ood-per-label")
