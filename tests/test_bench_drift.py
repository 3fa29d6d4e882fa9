"""`covid-edge bench drift` and `covid-edge bench check`: the commands run the real variants on
real X-rays, and their numbers are consistent with each other, with the per-image predictions
they report and with the model card. No timing thresholds: figures are for the report to show.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import (CXR, REPO_ROOT, cli_runner, copy_for_check, edit_card, subprocess_env,
                      write_report_without_matplotlib)
from covid_edge import metrics
from covid_edge.benchmarks import drift as drifting
from covid_edge.benchmarks.drift_report import JSON_NAME, MARKDOWN_NAME, PLOTS_DIR, PLOT_NAMES
from covid_edge.cli import main
from covid_edge.dataset import read_split

PER_CLASS = 10  # images per class in the test folder
LIMIT = 6  # --limit: per class, so 12 images are evaluated
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def invoke(*args):
    return cli_runner().invoke(main, ["bench", *map(str, args)])


def split_rows(models_dir: Path) -> dict[str, list]:
    """The model's split file as {split: [items]}; {} without one."""
    path = models_dir / drifting.SPLIT_FILE
    if not path.is_file():
        return {}
    items, _, split = read_split(path)
    rows: dict[str, list] = {}
    for item, part in zip(items, split):
        rows.setdefault(part, []).append(item)
    return rows


def link_images(folder: Path, pairs) -> Path:
    """A labelled folder of symlinks: pairs of (relative path like 'covid/x.jpg', source)."""
    for relative, source in pairs:
        target = folder / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(Path(source).resolve())
    for label in ("covid", "normal"):
        (folder / label).mkdir(parents=True, exist_ok=True)
    return folder


def pick_images(models_dir: Path, per_class: int) -> list[tuple[str, Path]]:
    """Test-split images of the model under test when its split file is there (then the
    default --split auto keeps them all), else the first images of each class."""
    if not CXR.is_dir():
        pytest.skip(f"shared X-rays not found at {CXR}")
    test = split_rows(models_dir).get("test")
    pairs = []
    for label in ("covid", "normal"):
        if test:
            chosen = [item.path for item in test if item.label == label][:per_class]
        else:
            chosen = [f"{label}/{p.name}" for p in sorted((CXR / label).glob("*.jpg"))[:per_class]]
        pairs += [(relative, CXR / relative) for relative in chosen]
    return pairs


@pytest.fixture(scope="module")
def labelled_dir(models_dir, tmp_path_factory) -> Path:
    return link_images(tmp_path_factory.mktemp("labelled"), pick_images(models_dir, PER_CLASS))


@pytest.fixture(scope="module")
def drift_run(models_dir, labelled_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("drift") / "report"
    result = invoke("drift", labelled_dir, "--models", models_dir, "--limit", LIMIT,
                    "--threads", 1, "--out", out, "--json")
    assert result.exit_code == 0, result.output + result.stderr
    return json.loads(result.stdout), out


# -- bench drift -----------------------------------------------------------------------------

def test_drift_covers_every_variant_and_image(drift_run, model_card, models_dir):
    report, _ = drift_run
    assert report["schema"] == drifting.SCHEMA
    present = {name for name, v in model_card["variants"].items()
               if (models_dir / v["file"]).is_file()}
    assert {v["name"] for v in report["variants"]} == present
    assert report["n_images"] == 2 * LIMIT == len(report["predictions"])
    # The model's classes this folder has none of (pneumonia for a three-class model) count 0.
    assert {label: n for label, n in report["selection"]["per_class"].items() if n} == {
        "normal": LIMIT, "covid": LIMIT}
    assert report["unreadable"] == []
    assert "not a medical device" in report["disclaimer"]
    for prediction in report["predictions"]:
        assert set(prediction["probabilities"]) == present
    expected_reference = next((n for n in ("float32", "float16") if n in present), None)
    assert report["reference"]["variant"] == expected_reference


def test_drift_figures_are_consistent(drift_run):
    report, _ = drift_run
    n = report["n_images"]
    threshold = report["model"]["threshold"]
    labels = np.array([p["label"] == "covid" for p in report["predictions"]], dtype=int)
    reference = report["reference"]["variant"]
    ref_probs = np.array([p["probabilities"][reference] for p in report["predictions"]])
    for v in report["variants"]:
        m = v["metrics"]
        for key in ("accuracy", "roc_auc", "sensitivity", "specificity", "ppv"):
            assert 0.0 <= m[key] <= 1.0, (v["name"], key, m[key])
        assert m["n"] == n and sum(map(sum, m["confusion_matrix"])) == n
        probs = np.array([p["probabilities"][v["name"]] for p in report["predictions"]])
        assert ((probs >= 0) & (probs <= 1)).all()
        # The figures are what the per-image predictions give.
        recomputed = metrics.binary_metrics(labels, probs, threshold)
        assert m["accuracy"] == pytest.approx(recomputed["accuracy"])
        assert m["roc_auc"] == pytest.approx(recomputed["roc_auc"])
        versus = v["versus_reference"]
        assert 0.0 <= versus["agreement"] <= 1.0
        assert 0.0 <= versus["mean_abs_probability_difference"] \
            <= versus["max_abs_probability_difference"]
        assert versus["max_abs_probability_difference"] == pytest.approx(
            float(np.abs(probs - ref_probs).max()))
        # Flips and agreement tell the same story, image by image.
        assert versus["agreement"] == pytest.approx(1 - len(versus["flips"]) / n)
        flipped = {report["predictions"][i]["path"] for i in
                   np.flatnonzero((probs >= threshold) != (ref_probs >= threshold))}
        assert {f["path"] for f in versus["flips"]} == flipped
        if v["name"] == reference:
            assert versus["agreement"] == 1.0 and versus["max_abs_probability_difference"] == 0
    int8, = [v for v in report["variants"] if v["name"] == "int8"]
    assert report["int8_flips"] == int8["versus_reference"]["flips"]


def test_drift_report_files_exist_and_parse(drift_run):
    report, out = drift_run
    assert json.loads((out / JSON_NAME).read_text()) == report
    text = (out / MARKDOWN_NAME).read_text()
    assert "| variant | size MB | accuracy | ROC AUC | sensitivity | specificity | agreement |" \
        in text
    for v in report["variants"]:
        assert f"| {v['name']}" in text
    assert "int8 verdicts that differ from the" in text
    assert "not a medical device" in text
    plots = sorted((out / PLOTS_DIR).glob("*.png"))
    assert {p.name for p in plots} == set(PLOT_NAMES)
    for plot in plots:
        assert plot.read_bytes()[:8] == PNG_SIGNATURE
        assert f"]({PLOTS_DIR}/{plot.name})" in text


def test_drift_prints_a_table(models_dir, labelled_dir):
    result = invoke("drift", labelled_dir, "--models", models_dir, "--limit", 2,
                    "--threads", 1)
    assert result.exit_code == 0, result.output + result.stderr
    lines = result.stdout.splitlines()
    header, = [line for line in lines if line.startswith("variant ")]
    assert "accuracy" in header and "agree" in header and "max|Δp|" in header
    # The data folder is named as the user typed it; everything else must fit.
    without_path = result.stdout.replace(str(labelled_dir), "")
    assert max(len(line) for line in without_path.splitlines()) <= 100
    assert any(line.startswith("int8 ") for line in lines)
    assert any("(ref)" in line for line in lines)
    assert "float reference:" in result.stdout
    assert "not a medical device" in result.stdout
    assert "evaluating" in result.stderr and "evaluating" not in result.stdout  # stderr only


def test_drift_refuses_to_overwrite_a_report(drift_run, models_dir, labelled_dir):
    _, out = drift_run
    before = (out / JSON_NAME).read_bytes()
    result = invoke("drift", labelled_dir, "--models", models_dir, "--out", out)
    assert result.exit_code == 2  # a usage error, as in bench sources, shift and latency
    assert "--force" in result.output + result.stderr
    assert (out / JSON_NAME).read_bytes() == before


def test_auto_split_keeps_the_test_images_of_the_training_data(models_dir, tmp_path):
    rows = split_rows(models_dir)
    if not rows.get("test") or not rows.get("train"):
        pytest.skip("the model under test has no training/split.csv")
    pairs = []
    for part in ("test", "train"):
        for label in ("covid", "normal"):
            pairs += [(item.path, CXR / item.path)
                      for item in [i for i in rows[part] if i.label == label][:2]]
    pairs.append(("covid/renamed-new.jpg", CXR / rows["test"][0].path))
    folder = link_images(tmp_path / "data", pairs)

    items, selection = drifting.select_images(folder, "auto", models_dir / drifting.SPLIT_FILE)
    assert selection["split"] == "test" and len(items) == 4
    assert selection["images_not_in_split_file"] == 1
    assert "--split all" in selection["reason"]
    items, selection = drifting.select_images(folder, "all", models_dir / drifting.SPLIT_FILE)
    assert selection["split"] == "all" and len(items) == 9
    items, _ = drifting.select_images(folder, "train", models_dir / drifting.SPLIT_FILE)
    assert len(items) == 4


def test_new_data_is_used_whole(models_dir, tmp_path):
    pairs = [(f"{Path(relative).parent}/new-{i}.jpg", source)
             for i, (relative, source) in enumerate(pick_images(models_dir, 2))]
    folder = link_images(tmp_path / "data", pairs)
    items, selection = drifting.select_images(folder, "auto",
                                              models_dir / drifting.SPLIT_FILE)
    assert len(items) == 4 and selection["split"] == "all"


def test_drift_equals_the_model_card_on_its_test_split(models_dir, model_card):
    """The same images through the same runtime: the card's test figures, exactly."""
    test = split_rows(models_dir).get("test")
    if not test:
        pytest.skip("the model under test has no training/split.csv")
    if len(test) > 100:
        pytest.skip(f"{len(test)} test images: too slow here; run `covid-edge bench drift` "
                    "by hand and compare with the model card")
    report = drifting.run(CXR, models_dir, split="test", threads=1)
    assert report["n_images"] == len(test)
    for v in report["variants"]:
        card = model_card["variants"][v["name"]]["metrics"]
        for key in ("n", "accuracy", "roc_auc", "sensitivity", "specificity"):
            assert v["metrics"][key] == pytest.approx(card[key]), (v["name"], key)
        assert v["metrics"]["confusion_matrix"] == card["confusion_matrix"]
    card_flips = (model_card["variants"]["int8"].get("versus_float32") or {}).get("flipped")
    if card_flips is not None and report["reference"]["variant"] == "float32":
        assert sorted(f["path"] for f in report["int8_flips"]) == sorted(card_flips)


def test_drift_reproduces_the_cards_sample_outputs(models_dir, model_card, tmp_path):
    """The card's reference probabilities were computed by `convert`; drift's int8 path must
    give the same for the same files."""
    samples = model_card["reference_outputs"]["images"]
    folder = link_images(tmp_path / "data", [(f"{s['label']}/{Path(s['file']).name}",
                                              models_dir / s["file"]) for s in samples])
    report = drifting.run(folder, models_dir, split="all", threads=1)
    got = {Path(p["path"]).name: p["probabilities"]["int8"] for p in report["predictions"]}
    for sample in samples:
        assert got[Path(sample["file"]).name] == pytest.approx(sample["probability"], abs=1e-6)


def test_drift_with_keras_as_reference(models_dir, labelled_dir):
    """--keras: the trained model becomes the reference, and the float32 TFLite file agrees
    with it (conversion changed nothing that matters)."""
    if importlib.util.find_spec("tensorflow") is None:
        pytest.skip("tensorflow is not installed here")
    keras_model = Path(os.environ.get("COVID_EDGE_TEST_KERAS", models_dir.parent / "model.keras"))
    if not keras_model.is_file():
        pytest.skip(f"no Keras model at {keras_model} (set COVID_EDGE_TEST_KERAS)")
    report = drifting.run(labelled_dir, models_dir, keras_path=keras_model, limit=2, threads=1)
    assert report["reference"]["variant"] == "keras"
    assert report["variants"][0]["name"] == "keras"
    for v in report["variants"]:
        if v["name"] == "float32":
            assert v["versus_reference"]["agreement"] == 1.0
            assert v["versus_reference"]["max_abs_probability_difference"] < 1e-4


def test_keras_without_tensorflow_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "tensorflow", None)  # find_spec then answers None
    with pytest.raises(drifting.DriftError, match=r"'\.\[train\]'"):
        drifting.keras_source(tmp_path / "model.keras")


@pytest.mark.parametrize("make, args, message", [
    (lambda d: d.mkdir(), [], "one sub-folder per class"),
    (lambda d: (d / "covid").mkdir(parents=True) or (d / "normal").mkdir(), [], "no images"),
])
def test_drift_bad_folders_say_what_is_wrong(models_dir, tmp_path, make, args, message):
    data = tmp_path / "data"
    make(data)
    result = invoke("drift", data, "--models", models_dir, *args)
    assert result.exit_code == 1
    assert message in result.output + result.stderr
    assert "Traceback" not in result.output + result.stderr


def test_unreadable_images_are_listed_and_left_out(models_dir, tmp_path):
    folder = link_images(tmp_path / "data", [(f"{Path(relative).parent}/x{i}.jpg", source)
                                             for i, (relative, source)
                                             in enumerate(pick_images(models_dir, 2))])
    (folder / "covid" / "broken.jpg").write_bytes(b"not an image")
    result = invoke("drift", folder, "--models", models_dir, "--threads", 1, "--json")
    assert result.exit_code == 1, result.output + result.stderr
    report = json.loads(result.stdout)  # the figures are still printed, without it
    assert report["n_images"] == 4
    unreadable, = report["unreadable"]
    assert unreadable["path"] == "covid/broken.jpg" and unreadable["error"]
    assert "could not be read" in result.stderr


def test_drift_named_split_without_a_split_file(models_dir, labelled_dir, tmp_path):
    bare = tmp_path / "models"
    bare.mkdir()
    card = json.loads((models_dir / "model_card.json").read_text())
    shutil.copy(models_dir / "model_card.json", bare)
    shutil.copy(models_dir / card["variants"]["int8"]["file"], bare)
    result = invoke("drift", labelled_dir, "--models", bare, "--split", "test")
    assert result.exit_code == 1
    assert "--split-file" in result.output + result.stderr


# -- latency in the variants table -----------------------------------------------------------

def fake_latency_report(sha_by_label: dict[str, str]) -> dict:
    """A latency report in the shape `bench latency` writes (figures invented: this tests the
    join, not a speed)."""
    results = []
    for label in sha_by_label:
        for xnnpack, p50 in ((False, 9.0), (True, 3.0)):
            for threads in (1, 2):
                samples = [p50 / threads, p50 / threads + 0.5, p50 / threads + 1.0]
                stats = {"n": 3, "p50_ms": samples[1], "p90_ms": samples[2],
                         "p99_ms": samples[2], "mean_ms": samples[1], "std_ms": 0.5,
                         "min_ms": samples[0], "max_ms": samples[2], "samples_ms": samples}
                results.append({"model": label, "runtime": "ai_edge_litert", "target": "cpu",
                                "xnnpack": xnnpack, "threads": threads, "status": "ok",
                                "inference": stats, "end_to_end": stats})
    return {"schema": "covid-edge/bench-latency/1", "created": "2026-01-01T00:00:00+00:00",
            "settings": {"runtimes": ["ai_edge_litert"]},
            "device": {"cpu_model": "Test CPU", "usable_cores": 2}, "warnings": [],
            "models": [{"label": label, "sha256": sha, "path": f"{label}.tflite", "bytes": 1000,
                        "role": "reference" if label == "reference" else "ours"}
                       for label, sha in sha_by_label.items()],
            "results": results, "_path": "latency.json"}


def test_latency_is_joined_by_file_hash_at_one_thread_with_xnnpack():
    sources = [drifting.Source("int8", "tflite", "a.tflite", 1, "aaa"),
               drifting.Source("float16", "tflite", "b.tflite", 1, "bbb")]
    found = drifting.latency_for(sources, fake_latency_report({"int8": "aaa", "other": "bbb2"}))
    assert set(found) == {"int8"}  # float16's file was not measured
    assert found["int8"]["xnnpack"] is True and found["int8"]["threads"] == 1
    assert found["int8"]["p50_ms"] == 3.5


def test_load_latency_rejects_other_json(tmp_path):
    path = tmp_path / "latency.json"
    path.write_text(json.dumps({"schema": "something/else"}))
    with pytest.raises(drifting.DriftError, match="bench latency"):
        drifting.load_latency(tmp_path)


def test_report_with_latency_has_the_column_and_its_plots(drift_run, tmp_path):
    from covid_edge.benchmarks.drift_report import write_report

    report, _ = drift_run
    latency = fake_latency_report({**{v["name"]: v["sha256"] for v in report["variants"]},
                                   "reference": "google"})
    sources = [drifting.Source(v["name"], "tflite", v["path"], v["bytes"], v["sha256"])
               for v in report["variants"]]
    joined = drifting.latency_for(sources, latency)
    for v in report["variants"]:
        v["latency"] = joined[v["name"]]
    report["latency"] = drifting.latency_summary(latency)
    files, note = write_report(report, tmp_path / "out", latency_report=latency)
    assert note is None
    text = (tmp_path / "out" / MARKDOWN_NAME).read_text()
    assert "p50 ms, 1 thread |" in text and "measured on Test CPU" in text
    assert "| reference (speed only) | 0.00 | - |" in text  # Google's model: speed only
    names = {p.name for p in files if p.suffix == ".png"}
    assert set(PLOT_NAMES) <= names
    assert "latency_inference_ai_edge_litert.png" in names


def test_without_matplotlib_the_drift_report_says_how_to_get_plots(drift_run, tmp_path):
    report, _ = drift_run
    printed = write_report_without_matplotlib("covid_edge.benchmarks.drift_report", report,
                                              tmp_path / "out")
    assert "pip install 'matplotlib>=3.8'" in printed
    assert "pip install 'matplotlib>=3.8'" in (tmp_path / "out" / MARKDOWN_NAME).read_text()
    assert not list((tmp_path / "out").rglob("*.png"))


# -- bench check -----------------------------------------------------------------------------

def test_check_passes_on_the_model_under_test(models_dir, model_card):
    result = invoke("check", "--models", models_dir, "--json")
    assert result.exit_code == 0, result.output + result.stderr
    report = json.loads(result.stdout)
    samples = model_card["reference_outputs"]["images"]
    assert report["passed"] is True and report["failed"] == 0
    assert len(report["images"]) == len(samples)
    tolerance = model_card["reference_outputs"]["tolerance"]
    for row, sample in zip(report["images"], samples):
        assert row["passed"] and row["reason"] is None
        assert row["expected_raw"] == sample["raw_output"]
        assert 0 <= row["steps"] <= tolerance["raw_output_steps"]
        assert 0 <= row["probability_difference"] <= tolerance["probability"] + 1e-9
    table = invoke("check", "--models", models_dir)
    assert table.exit_code == 0
    assert table.stdout.count("PASS ") == len(samples)
    assert "PASS: this device reproduces" in table.stdout


def test_check_fails_when_a_stored_output_is_tampered(models_dir, tmp_path):
    copy = copy_for_check(models_dir, tmp_path / "models")
    tolerance = json.loads((copy / "model_card.json").read_text())["reference_outputs"][
        "tolerance"]["raw_output_steps"]

    def shift_first(card):
        first = card["reference_outputs"]["images"][0]
        # Move it (its first unit, for a model with one output per class) by more than the
        # tolerance, towards the middle of the int8 range.
        values = first["raw_output"] if isinstance(first["raw_output"], list) else None
        value = values[0] if values else first["raw_output"]
        moved = value + (tolerance + 3) * (1 if value < 0 else -1)
        if values:
            values[0] = moved
        else:
            first["raw_output"] = moved

    edit_card(copy, shift_first)
    result = invoke("check", "--models", copy, "--json")
    assert result.exit_code == 1, result.output + result.stderr
    report = json.loads(result.stdout)
    assert report["passed"] is False and report["failed"] == 1
    first, *others = report["images"]
    assert not first["passed"] and first["steps"] == tolerance + 3
    assert "output steps" in first["reason"]
    assert all(row["passed"] for row in others)
    table = invoke("check", "--models", copy)
    assert table.exit_code == 1
    assert "FAIL: 1 of" in table.stdout


def test_check_fails_on_a_shifted_probability_and_a_changed_sample(models_dir, tmp_path):
    copy = copy_for_check(models_dir, tmp_path / "models")

    def shift_probability(card):
        # Past the card's tolerance (measured: 27 steps, 0.105, for 0.3.0), towards the middle.
        image = card["reference_outputs"]["images"][1]
        shift = card["reference_outputs"]["tolerance"]["probability"] + 0.02
        image["probability"] += shift if image["probability"] < 0.5 else -shift

    edit_card(copy, shift_probability)
    first = json.loads((copy / "model_card.json").read_text())["reference_outputs"]["images"][0]
    with open(copy / first["file"], "ab") as handle:
        handle.write(b"\0")  # the image still decodes, but it is not the reference file
    report = json.loads(invoke("check", "--models", copy, "--json").stdout)
    assert report["failed"] == 2
    assert "sha256" in report["images"][0]["reason"]
    assert "probability" in report["images"][1]["reason"]


def test_check_says_when_saturated_outputs_make_it_coarse(models_dir, model_card, tmp_path):
    saturated = all(image["raw_output"] in (-128, 127)
                    for image in model_card["reference_outputs"]["images"])
    report = json.loads(invoke("check", "--models", models_dir, "--json").stdout)
    assert any("only gross differences" in note for note in report["notes"]) == saturated
    copy = copy_for_check(models_dir, tmp_path / "models")
    edit_card(copy, lambda card: [image.update(raw_output=127, probability=127 / 256 + 0.5)
                                  for image in card["reference_outputs"]["images"]])
    report = json.loads(invoke("check", "--models", copy, "--json").stdout)
    assert any("only gross differences" in note for note in report["notes"])


def test_check_without_reference_outputs_cannot_run(models_dir, tmp_path):
    copy = copy_for_check(models_dir, tmp_path / "models")
    edit_card(copy, lambda card: card.pop("reference_outputs"))
    result = invoke("check", "--models", copy)
    assert result.exit_code == 2
    assert "reference outputs" in result.output + result.stderr
    assert "Traceback" not in result.output + result.stderr


def test_check_without_its_samples_cannot_run(models_dir, model_card, tmp_path):
    """Missing sample files are an incomplete install, not a device that computes otherwise:
    exit 2 ("could not run"), naming the files and where they were expected, not a FAIL."""
    copy = copy_for_check(models_dir, tmp_path / "models")
    shutil.rmtree(copy / "samples")
    samples = [copy / image["file"] for image in model_card["reference_outputs"]["images"]]
    result = invoke("check", "--models", copy)
    assert result.exit_code == 2, result.output + result.stderr
    assert f"all {len(samples)} sample images" in result.stderr
    assert f"from {copy / 'samples'}: {samples[0].name}" in result.stderr
    assert "FAIL" not in result.stdout and "Traceback" not in result.output + result.stderr
    report = json.loads(invoke("check", "--models", copy, "--json").stdout)
    assert report["exit_code"] == 2 and report["passed"] is False
    assert "are missing" in report["error"]
    assert report["missing_samples"] == [str(path) for path in samples]


def test_check_with_one_sample_missing_cannot_run(models_dir, model_card, tmp_path):
    copy = copy_for_check(models_dir, tmp_path / "models")
    gone = copy / model_card["reference_outputs"]["images"][-1]["file"]
    gone.unlink()
    result = invoke("check", "--models", copy, "--json")
    assert result.exit_code == 2, result.output + result.stderr
    report = json.loads(result.stdout)
    total = len(model_card["reference_outputs"]["images"])
    assert report["error"].startswith(f"1 of the {total} sample images")
    assert report["missing_samples"] == [str(gone)]


# -- no TensorFlow on the device path --------------------------------------------------------

CHILD = """
import json, sys
from covid_edge.cli import main
codes = [main(args, prog_name="covid-edge", standalone_mode=False)
         for args in json.loads(sys.argv[1])]
print("REPORT " + json.dumps({"codes": codes, "loaded": sorted(
    {name.split(".")[0] for name in sys.modules} & {"tensorflow", "keras", "matplotlib"})}))
"""


def run_in_fresh_python(*commands) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps([list(map(str, c)) for c in commands])],
        capture_output=True, text=True, env=subprocess_env(), cwd=REPO_ROOT, timeout=120)
    reports = [line for line in done.stdout.splitlines() if line.startswith("REPORT ")]
    assert done.returncode == 0 and reports, done.stdout + done.stderr
    return json.loads(reports[-1][len("REPORT "):])


def test_check_imports_no_tensorflow_nor_matplotlib(models_dir):
    report = run_in_fresh_python(["bench", "check", "--models", models_dir, "--json"])
    assert report == {"codes": [0], "loaded": []}


def test_drift_imports_no_tensorflow_without_keras(models_dir, labelled_dir, tmp_path):
    report = run_in_fresh_python(["bench", "drift", labelled_dir, "--models", models_dir,
                                  "--limit", 1, "--threads", 1, "--json", "--out",
                                  tmp_path / "out"])
    assert report["codes"] == [None]  # click's return for a command that ran to its end
    assert "tensorflow" not in report["loaded"] and "keras" not in report["loaded"]
    if importlib.util.find_spec("matplotlib") is not None:
        assert "matplotlib" in report["loaded"]  # the probe sees what plotting imported
    assert not math.isnan(json.loads((tmp_path / "out" / JSON_NAME).read_text())
                          ["variants"][0]["metrics"]["accuracy"])


def test_one_command_gives_formats_by_size_accuracy_and_speed(models_dir, labelled_dir):
    """Ultralytics-style: one verb, one table of formats with their p50 at 1 thread."""
    result = invoke("drift", labelled_dir, "--models", models_dir, "--limit", 2,
                    "--latency-runs", 5, "--json")
    assert result.exit_code == 0, result.output + result.stderr
    report = json.loads(result.stdout)
    timed = {v["name"]: v["latency"] for v in report["variants"] if v["kind"] == "tflite"}
    assert timed and all(t["p50_ms"] > 0 and t["threads"] == 1 for t in timed.values())
    assert report["latency"]["path"].startswith("measured in this run")
    both = invoke("drift", labelled_dir, "--models", models_dir, "--latency-runs", 5,
                  "--latency", labelled_dir)
    assert both.exit_code != 0 and "one of them" in both.output + both.stderr
