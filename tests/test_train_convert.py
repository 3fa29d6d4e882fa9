"""The whole pipeline on a small subset at 96x96: train -> convert -> classify.

Real TensorFlow training on real X-rays from ../shared, real LiteRT on the converted files.
"""

import csv
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from conftest import CXR, REFERENCE, SHARED, subprocess_env

pytest.importorskip("tensorflow", reason="needs the [train] extra")
pytestmark = [pytest.mark.slow, pytest.mark.train]

WEIGHTS = SHARED / "weights" / "mobilenet_v2_1.0_224_imagenet_no_top.weights.h5"


def covid_edge(*args, check=True):
    result = subprocess.run([sys.executable, "-m", "covid_edge.cli", *map(str, args)],
                            capture_output=True, text=True, env=subprocess_env(), timeout=900)
    if check and result.returncode != 0:
        raise AssertionError(f"covid-edge {' '.join(map(str, args))} failed:\n{result.stderr[-3000:]}")
    return result


def train_small(out: Path, *extra):
    return covid_edge("train", CXR, "--out", out, "--weights", WEIGHTS, "--image-size", 96,
                      "--limit-per-class", 40, "--head-epochs", 1, "--fine-tune-epochs", 1,
                      "--batch-size", 16, *extra)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    if not WEIGHTS.is_file():
        pytest.skip("shared ImageNet weights not found")
    out = tmp_path_factory.mktemp("run")
    train_small(out)
    return out


@pytest.fixture(scope="module")
def export_dir(run_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("export")
    covid_edge("convert", run_dir / "model.keras", "--out", out, "--calibration-size", 20,
               "--non-xray", REFERENCE / "photos")
    return out


def test_training_writes_a_complete_run(run_dir):
    for name in ("model.keras", "run.json", "metrics.json", "split.csv", "history.csv",
                 "predictions.csv", "training_curves.png", "confusion_matrix.png",
                 "test_predictions.png"):
        assert (run_dir / name).is_file(), name
    run = json.loads((run_dir / "run.json").read_text())
    assert 0.0 <= run["threshold"] <= 1.0
    for split in ("train", "val", "test"):
        measured = run["metrics"][split]
        for key in ("accuracy", "loss", "roc_auc", "sensitivity", "specificity"):
            assert np.isfinite(measured[key]), (split, key)
        assert sum(map(sum, measured["confusion_matrix"])) == measured["n"]
    # The threshold is chosen for screening: validation sensitivity reaches the target.
    assert run["metrics"]["val"]["sensitivity"] >= run["config"]["target_sensitivity"]
    with open(run_dir / "split.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 80
    by_group = {}
    for row in rows:
        by_group.setdefault(row["group"], set()).add(row["split"])
    assert all(len(splits) == 1 for splits in by_group.values())


def test_training_refuses_to_overwrite_a_run(run_dir):
    result = covid_edge(
        "train", CXR, "--out", run_dir, "--weights", WEIGHTS, check=False)
    assert result.returncode == 1
    assert "--force" in result.stderr


def test_conversion_writes_checked_variants_and_card(export_dir):
    from covid_edge.model_card import load_card, sha256_file

    card = load_card(export_dir / "model_card.json")
    assert (export_dir / "MODEL_CARD.md").read_text().startswith("# Model card")
    assert set(card["variants"]) == {"float32", "float16", "dynamic", "int8"}
    for name, variant in card["variants"].items():
        path = export_dir / variant["file"]
        assert sha256_file(path) == variant["sha256"]
        assert 0.0 <= variant["metrics"]["accuracy"] <= 1.0
        assert 0.0 <= variant["versus_keras"]["agreement"] <= 1.0
        assert variant["input_shape"] == [1, 96, 96, 3]
    int8 = card["variants"]["int8"]
    assert int8["integer_only"] and int8["input_dtype"] == "int8" and int8["output_dtype"] == "int8"
    # The preprocessing offset makes the int8 input exactly pixel - 128: nothing lost.
    assert int8["input_quantization"]["zero_point"] == 0 and int8["input_lossless"]
    assert int8["bytes"] < card["variants"]["float32"]["bytes"] / 3
    # On by default: 52 convolutions of MobileNetV2 and the dense head.
    assert int8["bias_correction"]["applied"] and int8["bias_correction"]["layers"] == 53
    assert int8["bias_correction"]["images"] == 20
    for name in ("training_curves.png", "split.csv"):
        assert (export_dir / "training" / name).is_file()


def test_bias_correction_centres_int8_features_on_the_float_model(run_dir, tmp_path):
    """Only biases change, and the int8 features' mean offset from the float features shrinks.

    Measured on the correction images themselves, where the per-channel offset of the last
    convolution (whose spatial mean the features are) is what was subtracted: a wrong sign
    or scale would leave it as large or double it.
    """
    import keras

    from covid_edge import dataset
    from covid_edge.convert.bias_correction import correct_bias
    from covid_edge.convert.quantize import (convert_variant, export_saved_model,
                                             representative_images, with_features)
    from covid_edge.edge_runtime.interpreter import select_runtime
    from covid_edge.preprocess import PreprocessSpec, quantize

    run = json.loads((run_dir / "run.json").read_text())
    spec = PreprocessSpec.from_dict(run["preprocessing"])
    items, _, split = dataset.read_split(run_dir / "split.csv")
    paths = [Path(run["data_dir"]) / item.path for item, part in zip(items, split)
             if part == "train"][:24]
    images = representative_images(paths, spec)
    model = keras.models.load_model(run_dir / "model.keras", compile=False)
    saved_model = export_saved_model(with_features(model), tmp_path / "saved_model")
    float_model = convert_variant(saved_model, "float32", None)
    plain = convert_variant(saved_model, "int8", images)
    corrected, summary = correct_bias(plain, float_model, (batch[0] for batch in images()))
    assert summary["layers"] == 53 and summary["images"] == 24

    module = select_runtime().module

    def interpreter(content):
        loaded = module.Interpreter(model_content=content)
        loaded.allocate_tensors()
        return loaded

    def features(content):
        loaded = interpreter(content)
        source = loaded.get_input_details()[0]
        target = next(d for d in loaded.get_output_details() if int(np.prod(d["shape"])) > 1)
        rows = []
        for (x,) in images():
            scale, zero_point = source["quantization"]
            if scale:
                x = quantize(x, scale, zero_point, source["dtype"])
            loaded.set_tensor(source["index"], x)
            loaded.invoke()
            row = loaded.get_tensor(target["index"]).reshape(-1).astype(np.float64)
            scale, zero_point = target["quantization"]
            rows.append((row - zero_point) * scale if scale else row)
        return np.array(rows)

    reference = features(float_model)
    before = np.abs((features(plain) - reference).mean(axis=0)).mean()
    after = np.abs((features(corrected) - reference).mean(axis=0)).mean()
    assert after < 0.5 * before, (before, after)

    def layout(content):
        return [(d["name"], d["dtype"], tuple(d["shape"]), d["quantization"])
                for d in interpreter(content).get_tensor_details()]

    assert layout(corrected) == layout(plain)
    assert abs(len(corrected) - len(plain)) < 4096


def test_every_variant_also_outputs_the_features(export_dir):
    from covid_edge.edge_runtime.classifier import Classifier

    card = json.loads((export_dir / "model_card.json").read_text())
    for name, variant in card["variants"].items():
        assert variant["features_output"]["shape"] == [1, 1280], name
        model = Classifier.load(export_dir / variant["file"])
        assert model.feature_details is not None and model.guard.features is not None, name
    assert card["variants"]["int8"]["features_output"]["dtype"] == "int8"


def test_conversion_fits_the_guard_and_the_calibration(export_dir):
    from covid_edge.edge_runtime.guard import FeatureDistance
    from covid_edge.model_card import load_card, sha256_file

    card = load_card(export_dir / "model_card.json")
    guard = card["ood_guard"]
    stats_path = export_dir / guard["stats_file"]
    assert stats_path.name == "ood_stats.npz" and stats_path.stat().st_size < 1_000_000
    assert sha256_file(stats_path) == guard["stats_sha256"]
    assert FeatureDistance.load(stats_path).threshold == pytest.approx(guard["threshold"])
    assert guard["validation_acceptance"] >= guard["quantile"]  # by construction
    assert guard["test"]["images"] == card["data"]["split_counts"]["test"]["images"]
    assert 0.0 <= guard["test"]["acceptance"] <= 1.0
    # The fine-detail limits name the blur they were fitted with: the one the runtime uses.
    checks = guard["image_checks"]
    assert checks["detail_blur"] == "box-3"
    assert 0 < checks["detail_min"] < checks["detail_max"]
    # The number of components was chosen on the tuning set, and the card says which won.
    tuning = guard["tuning"]
    chosen = [row for row in tuning["candidates"] if row.get("chosen")]
    assert len(tuning["candidates"]) == 4 and len(chosen) == 1
    assert chosen[0]["components"] == guard["components"]
    assert chosen[0]["threshold"] == pytest.approx(guard["threshold"])
    assert tuning["images"] == len(tuning["per_image"]) >= 15
    assert not {row["image"] for row in tuning["per_image"]} & {
        row["image"] for row in guard["non_xray"]["per_image"]}
    non_xray = guard["non_xray"]
    assert any("photos" in source for source in non_xray["sources"])
    assert non_xray["images"] == len(non_xray["per_image"]) >= 9 + 9 + 9
    # The drawn blank frames are refused whatever the model learned.
    blanks = [row for row in non_xray["per_image"] if row["image"].startswith("blank-")]
    assert len(blanks) == 4 and all(row["rejected"] for row in blanks)
    photos = [row for row in non_xray["per_image"] if "photos" in row["source"]
              and not row["gray_copy"]]
    assert len(photos) == 9 and all(row["rejected"] for row in photos)
    # The shipped samples are X-rays the guard accepts.
    assert not {Path(path).name for path in guard["test"]["refused"]} & {
        r["file"].split("-", 1)[1] for r in card["reference_outputs"]["images"]}

    calibration = card["calibration"]
    assert calibration["temperature"] > 0 and calibration["bins"] == 15
    for key in ("ece_before", "ece_after"):
        assert 0.0 <= calibration[key] <= 1.0
    assert (export_dir / calibration["reliability_diagram"]).is_file()
    assert (export_dir / guard["distance_histogram"]).is_file()
    markdown = (export_dir / "MODEL_CARD.md").read_text()
    assert "## Out-of-distribution guard" in markdown and "## Calibration" in markdown


def test_reference_outputs_reproduce(export_dir):
    from covid_edge.edge_runtime.classifier import Classifier
    from covid_edge.preprocess import load_pixels

    card = json.loads((export_dir / "model_card.json").read_text())
    classifier = Classifier.load(export_dir / card["variants"]["int8"]["file"])
    references = card["reference_outputs"]["images"]
    assert len(references) == 6 and {r["label"] for r in references} == {"covid", "normal"}
    for reference in references:
        raw = classifier.run(classifier.prepare_input(
            load_pixels(export_dir / reference["file"], classifier.spec))).raw
        assert raw.tolist() == np.atleast_1d(reference["raw_output"]).tolist()
        assert reference["raw_by_kernel_set"]["xnnpack"] == reference["raw_output"]
        assert set(reference["raw_by_kernel_set"]) == {"xnnpack", "builtin", "reference"}


def test_the_check_tolerance_and_samples_come_from_the_validation_split(run_dir, export_dir):
    """convert measures bench check's tolerance on the validation split and picks the samples
    there, clear of the threshold by it; the test split chooses nothing."""
    from covid_edge import dataset
    from covid_edge.benchmarks.check import near_boundary
    from covid_edge.edge_runtime.classifier import Classifier
    from covid_edge.preprocess import load_pixels

    card = json.loads((export_dir / "model_card.json").read_text())
    reference = card["reference_outputs"]
    tolerance = reference["tolerance"]
    measured = tolerance["measured"]
    items, _, split = dataset.read_split(run_dir / "split.csv")
    where = {Path(item.path).name: part for item, part in zip(items, split)}
    assert measured["images_from"].startswith("validation split")
    assert measured["images"] == sum(part == "val" for part in split)
    assert tolerance["raw_output_steps"] == measured["max_steps"] + 2
    assert {where[ref["file"].split("-", 1)[1]] for ref in reference["images"]} == {"val"}
    classifier = Classifier.load(export_dir / card["variants"]["int8"]["file"], guard=False)
    steps = tolerance["raw_output_steps"]
    chosen = Counter(ref["label"] for ref in reference["images"])
    for ref in reference["images"]:
        if near_boundary(classifier, ref["raw_output"], steps):
            # Only where the label has too few validation images clear of every boundary
            # (a tiny model): then bench check reports it as near.
            clear = [item for item, part in zip(items, split) if part == "val"
                     and item.label == ref["label"] and not near_boundary(
                         classifier, classifier.run(classifier.prepare_input(load_pixels(
                             dataset.item_path(CXR, item), classifier.spec))).raw, steps)]
            assert len(clear) < chosen[ref["label"]], ref["file"]


def test_runtime_input_equals_training_input(run_dir, export_dir):
    """The tensor the device feeds is the tensor training fed, for the same file."""
    from covid_edge import dataset
    from covid_edge.convert.train import load_all_pixels, make_batches
    from covid_edge.edge_runtime.classifier import Classifier
    from covid_edge.preprocess import PreprocessSpec, load_pixels, quantize

    run = json.loads((run_dir / "run.json").read_text())
    spec = PreprocessSpec.from_dict(run["preprocessing"])
    items = [dataset.Item("covid/" + p.name, "covid") for p in sorted((CXR / "covid").glob("*.jpg"))[:2]]
    items += [dataset.Item("normal/" + p.name, "normal") for p in sorted((CXR / "normal").glob("*.jpg"))[:2]]
    pixels = load_all_pixels(CXR, items, spec, lambda values, label: values)
    training_x, _ = make_batches(pixels, dataset.label_indices(items), spec, batch_size=4)[0]

    card = json.loads((export_dir / "model_card.json").read_text())
    float_model = Classifier.load(export_dir / card["variants"]["float32"]["file"])
    int8_model = Classifier.load(export_dir / card["variants"]["int8"]["file"])
    scale, zero_point = int8_model.input_details["quantization"]
    for index, item in enumerate(items):
        device_pixels = load_pixels(CXR / item.path, float_model.spec)
        assert np.array_equal(float_model.prepare_input(device_pixels)[0], training_x[index])
        assert np.array_equal(int8_model.prepare_input(device_pixels)[0],
                              quantize(training_x[index], scale, zero_point, np.int8))


def test_classify_runs_the_converted_model(export_dir):
    result = covid_edge("classify", "--json", "--model", export_dir / "covid-edge-int8.tflite",
                        export_dir / "samples")
    report = json.loads(result.stdout)
    assert len(report["results"]) == 6
    assert all(r["verdict"] in ("covid", "normal") for r in report["results"])
    assert report["model"]["guard"]["feature_test"]


def test_training_is_reproducible(tmp_path, monkeypatch):
    """Same seed, same data -> the same split and bit-identical predictions (with the
    invariance augmentation on), also when the second run shows TensorFlow's log lines
    (--verbose) and uses its default CPU allocator in place of the pooling one training sets.
    Both differences in one run: each training costs about 25 s here."""
    runs = []
    for name, extra, allocator in (("a", (), None), ("b", ("--verbose",), "false")):
        if allocator:
            monkeypatch.setenv("TF_CPU_ALLOCATOR_USE_BFC", allocator)
        out = tmp_path / name
        covid_edge("train", CXR, "--out", out, "--weights", WEIGHTS, "--image-size", 96,
                   "--limit-per-class", 12, "--head-epochs", 1, "--fine-tune-epochs", 0,
                   "--batch-size", 8, "--invariance", 0.5, *extra)  # the chain is seeded too
        runs.append(out)
    for run in runs[1:]:
        for name in ("split.csv", "predictions.csv", "history.csv"):
            assert (runs[0] / name).read_text() == (run / name).read_text(), (run.name, name)


def test_training_settings_keep_what_the_user_exported(monkeypatch):
    """The settings that change TensorFlow's arithmetic or memory are defaults: a value the
    user exported wins."""
    from covid_edge import tf_quiet

    for name in tf_quiet.COMPUTE_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TF_CPU_ALLOCATOR_USE_BFC", "false")
    tf_quiet.tensorflow_settings()
    assert os.environ["TF_ENABLE_ONEDNN_OPTS"] == "0"
    assert os.environ["TF_CPU_ALLOCATOR_USE_BFC"] == "false"
