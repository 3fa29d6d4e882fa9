"""The TF-free inference path and the `covid-edge classify` / `covid-edge info` commands, on the
exported model (COVID_EDGE_TEST_MODELS or models/) with real LiteRT and real X-rays."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import click
import numpy as np
import pytest
from click.testing import CliRunner

from conftest import EDGETPU_REFERENCE, REPO_ROOT, subprocess_env
from covid_edge import DISCLAIMER
from covid_edge.cli import main
from covid_edge.edge_runtime.classifier import (Classifier, ModelError, ModelIntegrityWarning,
                                                Prediction)
from covid_edge.model_card import load_card, sha256_file, write_json
from covid_edge.edge_runtime.display import probability_text
from covid_edge.edge_runtime.interpreter import select_runtime
from covid_edge.preprocess import (PreprocessSpec, load_pixels, preprocess_file, quantize,
                                   to_model_input)

EXIT_OK, EXIT_UNREADABLE, EXIT_USAGE, EXIT_MODEL = 0, 1, 2, 3


def shown_threshold(card: dict) -> float:
    """The threshold on the scale of the probability people see (calibrated, if the card
    has a calibration)."""
    return (card.get("calibration") or {}).get("threshold", card["threshold"])


def run_cli(*args: str):
    return CliRunner().invoke(main, [str(arg) for arg in args])


def variant_names(models_dir) -> list[str]:
    card = load_card(models_dir / "model_card.json")
    return [name for name, entry in card["variants"].items()
            if (models_dir / entry["file"]).is_file()]


@pytest.fixture(scope="module")
def classifier(models_dir) -> Classifier:
    return Classifier.load(models_dir)


@pytest.fixture
def bad_image(tmp_path):
    path = tmp_path / "report.png"
    path.write_text("not an image\n")
    return path


def copy_model(models_dir, tmp_path, edit_card=None):
    """The default variant, its card and its guard statistics in tmp_path, the card
    optionally edited."""
    card = load_card(models_dir / "model_card.json")
    entry = card["variants"][card.get("default_variant", "int8")]
    shutil.copy(models_dir / entry["file"], tmp_path / entry["file"])
    stats = (card.get("ood_guard") or {}).get("stats_file")
    if stats and (models_dir / stats).is_file():
        shutil.copy(models_dir / stats, tmp_path / stats)
    if edit_card:
        edit_card(card)
    write_json(card, tmp_path)
    return tmp_path / entry["file"]


# -- the Classifier ------------------------------------------------------------------------

def test_default_model_is_the_cards_default_variant(models_dir, model_card, classifier):
    assert classifier.variant == model_card.get("default_variant", "int8")
    assert classifier.model_path.name == model_card["variants"][classifier.variant]["file"]
    assert classifier.model_threshold == pytest.approx(model_card["threshold"])
    assert classifier.threshold == pytest.approx(shown_threshold(model_card))
    assert classifier.positive_label == model_card["positive_label"] == "covid"


def test_every_variant_loads_and_gives_a_probability(models_dir, model_card, covid_xray):
    names = variant_names(models_dir)
    assert model_card.get("default_variant", "int8") in names
    for name in names:
        model = Classifier.load(models_dir / model_card["variants"][name]["file"])
        assert model.variant == name
        prediction = model.classify_file(covid_xray)
        assert prediction.ok and 0.0 <= prediction.probability <= 1.0
        # Decided on the model's own probability; shown calibrated (the same decision).
        assert prediction.verdict == ("covid" if prediction.raw_probability
                                      >= model.model_threshold else "normal")
        assert prediction.latency_ms > 0 and prediction.total_ms >= prediction.latency_ms


def test_runtime_input_equals_training_input_for_every_variant(models_dir, model_card,
                                                                some_xrays):
    """The device feeds each variant exactly what training/calibration computed for the file:
    the float tensor itself, or its TFLite quantization for an integer-input model."""
    for name in variant_names(models_dir):
        model = Classifier.load(models_dir / model_card["variants"][name]["file"])
        details = model.input_details
        recorded = model_card["variants"][name].get("input_quantization")
        if recorded:  # the card's record of the input quantization is the model's
            assert details["quantization"] == pytest.approx(
                (recorded["scale"], recorded["zero_point"])), name
        for path in some_xrays:
            tensor = model.prepare_input(load_pixels(path, model.spec))
            expected = preprocess_file(path, model.spec)[np.newaxis]
            if np.dtype(details["dtype"]) != np.float32:
                scale, zero_point = details["quantization"]
                expected = quantize(expected, scale, zero_point, details["dtype"])
            assert tensor.dtype == expected.dtype == details["dtype"], name
            assert tensor.shape == tuple(details["shape"]), name
            np.testing.assert_array_equal(tensor, expected, err_msg=f"{name} {path.name}")


def test_reference_outputs_in_the_card_are_reproduced(models_dir, model_card):
    """`convert` recorded the model's outputs on the sample images; the runtime must find them."""
    reference = model_card["reference_outputs"]
    model = Classifier.load(models_dir / model_card["variants"][reference["variant"]]["file"])
    assert reference["images"]
    for image in reference["images"]:
        path = models_dir / image["file"]
        assert sha256_file(path) == image["sha256"]
        inference = model.run(model.prepare_input(load_pixels(path, model.spec)))
        probability = inference.positive
        tolerance = reference["tolerance"]
        # One value per output unit: a number for a sigmoid model, a list for a softmax one.
        steps = np.abs(inference.raw.astype(int) - np.atleast_1d(image["raw_output"]))
        assert steps.max() <= tolerance["raw_output_steps"], image["file"]
        assert probability == pytest.approx(image["probability"], abs=tolerance["probability"])
        assert model.classify_file(path).raw_probability == pytest.approx(probability)


QUANTIZE_PROBE = REPO_ROOT / "tests" / "data" / "quantize_probe.tflite"


@pytest.mark.filterwarnings("ignore:.*experimental_preserve_all_tensors")
@pytest.mark.parametrize("xnnpack", [True, False])
def test_quantize_equals_the_runtimes_own_quantize_kernel(xnnpack):
    """For every value a pixel can take, our quantization of the input equals the output of
    the QUANTIZE kernel that heads a float-input int8 graph (made by
    tests/data/make_quantize_probe.py), with and without the XNNPACK delegate."""
    runtime = select_runtime()
    kwargs = {}
    if not xnnpack:
        resolvers = getattr(runtime.module, "OpResolverType", None) or \
            runtime.module.experimental.OpResolverType
        kwargs["experimental_op_resolver_type"] = resolvers.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    interpreter = runtime.module.Interpreter(model_path=str(QUANTIZE_PROBE),
                                             experimental_preserve_all_tensors=True, **kwargs)
    interpreter.allocate_tensors()
    op = next(op for op in interpreter._get_ops_details() if op["op_name"] == "QUANTIZE")
    quantized = next(t for t in interpreter.get_tensor_details()
                     if t["index"] == op["outputs"][0])
    scale, zero_point = quantized["quantization"]
    assert scale == pytest.approx(2 / 255)  # calibrated on the real [-1, 1] range

    detail = interpreter.get_input_details()[0]
    height, width, channels = detail["shape"][1:]
    spec = PreprocessSpec(height=int(height), width=int(width), channels=int(channels))
    pixels = np.resize(np.arange(256, dtype=np.uint8), (spec.height, spec.width))
    x = to_model_input(pixels, spec)[np.newaxis]
    interpreter.set_tensor(detail["index"], x)
    interpreter.invoke()
    expected = interpreter.get_tensor(quantized["index"])
    np.testing.assert_array_equal(quantize(x, scale, zero_point, quantized["dtype"]), expected)


def test_quantize_rounds_half_to_even_and_clamps():
    x = np.array([0.5, 1.5, -0.5, -1.5, 2.4, 300.0, -300.0], dtype=np.float32)
    np.testing.assert_array_equal(quantize(x, 1.0, 0, np.int8), [0, 2, 0, -2, 2, 127, -128])
    np.testing.assert_array_equal(quantize(x, 1.0, 128, np.uint8),
                                  [128, 130, 128, 126, 130, 255, 0])


def test_prepare_input_rejects_pixels_of_the_wrong_size(classifier):
    with pytest.raises(ValueError):
        classifier.prepare_input(np.zeros((10, 10), dtype=np.uint8))
    with pytest.raises(ValueError):
        classifier.prepare_input(np.zeros((classifier.spec.height, classifier.spec.width)))


def test_unreadable_file_gives_a_prediction_with_an_error(classifier, bad_image):
    prediction = classifier.classify_file(bad_image)
    assert isinstance(prediction, Prediction)
    assert not prediction.ok and prediction.probability is None and prediction.verdict is None
    assert "not an image" in prediction.error


def test_sha256_mismatch_warns_but_loads(models_dir, tmp_path, covid_xray):
    def corrupt_hash(card):
        card["variants"][card.get("default_variant", "int8")]["sha256"] = "0" * 64
    model_path = copy_model(models_dir, tmp_path, corrupt_hash)
    with pytest.warns(ModelIntegrityWarning, match="sha256"):
        model = Classifier.load(model_path)
    assert model.classify_file(covid_xray).ok


def test_classify_reports_a_sha256_mismatch_as_a_warning(models_dir, tmp_path, covid_xray):
    def corrupt_hash(card):
        card["variants"][card.get("default_variant", "int8")]["sha256"] = "0" * 64
    model_path = copy_model(models_dir, tmp_path, corrupt_hash)
    result = run_cli("classify", covid_xray, "--model", model_path)
    assert result.exit_code == EXIT_OK
    assert "warning:" in result.stderr and "sha256" in result.stderr
    document = json.loads(run_cli("classify", covid_xray, "--model", model_path,
                                  "--json").stdout)
    assert any("sha256" in note for note in document["warnings"])


def test_card_that_does_not_fit_the_model_is_refused(models_dir, tmp_path):
    def wrong_size(card):
        card["preprocessing"]["height"] += 32
        card["variants"][card.get("default_variant", "int8")].pop("sha256", None)
    model_path = copy_model(models_dir, tmp_path, wrong_size)
    with pytest.raises(ModelError, match="does not describe this model"):
        Classifier.load(model_path)


def test_model_without_a_card_is_refused(models_dir, tmp_path):
    model_path = copy_model(models_dir, tmp_path)
    (tmp_path / "model_card.json").unlink()
    with pytest.raises(ModelError, match="model_card.json"):
        Classifier.load(model_path)


# -- covid-edge classify ------------------------------------------------------------------

def test_classify_one_xray(models_dir, covid_xray):
    result = run_cli("classify", covid_xray, "--model", models_dir)
    assert result.exit_code == EXIT_OK, result.output
    lines = result.stdout.splitlines()
    card = json.loads((models_dir / "model_card.json").read_text())
    others = [f"P({label[:7]})" for label in card["labels"] if label != "covid"]
    # Two classes: the threshold beside P(covid); more: a column per other class instead.
    expected = ["threshold"] if len(card["labels"]) == 2 else others
    assert lines[0].split()[:2 + len(expected)] == ["verdict", "P(covid)", *expected]
    verdict, probability, *_, latency, unit, path = lines[1].split()
    assert verdict in card["labels"] and 0 <= float(probability.lstrip("<>")) <= 1
    assert path == str(covid_xray) and unit == "ms"
    assert DISCLAIMER in result.stdout
    assert "ai_edge_litert" in result.stdout  # the footer names the runtime


def test_mixed_inputs_classify_the_good_ones_and_exit_1(models_dir, some_xrays, bad_image,
                                                        tmp_path):
    missing = tmp_path / "absent.jpg"
    result = run_cli("classify", some_xrays[0], bad_image, missing, some_xrays[-1],
                     "--model", models_dir)
    assert result.exit_code == EXIT_UNREADABLE
    rows = [line for line in result.stdout.splitlines()
            if line.startswith(("covid", "normal", "pneumonia"))]
    assert [row.split()[-1] for row in rows] == [str(some_xrays[0]), str(some_xrays[-1])]
    assert f"{bad_image}: not an image" in result.stderr
    assert f"{missing}: no such file" in result.stderr
    assert "2 classified" in result.stdout and "2 unreadable" in result.stdout
    # The image column is as long as the path the user typed; everything else must fit.
    without_paths = result.stdout
    for image in (some_xrays[0], some_xrays[-1]):
        without_paths = without_paths.replace(str(image), "")
    assert max(len(line) for line in without_paths.splitlines()) <= 100


def test_json_output(models_dir, model_card, some_xrays, bad_image):
    result = run_cli("classify", *some_xrays, bad_image, "--model", models_dir, "--json",
                     "--threads", "1")
    assert result.exit_code == EXIT_UNREADABLE
    document = json.loads(result.stdout)
    assert document["disclaimer"] == DISCLAIMER
    assert document["threshold"] == pytest.approx(shown_threshold(model_card))
    assert document["model"]["variant"] == model_card.get("default_variant", "int8")
    assert document["model"]["version"] == model_card.get("version")
    assert document["runtime"].startswith("ai_edge_litert") and document["threads"] == 1
    results = document["results"]
    assert [r["path"] for r in results] == [str(p) for p in [*some_xrays, bad_image]]
    good, bad = results[:-1], results[-1]
    assert all(r["error"] is None and r["verdict"] in ("covid", "normal") for r in good)
    assert bad["error"] and bad["probability"] is None
    summary = document["summary"]
    assert summary["classified"] == len(some_xrays) and summary["unreadable"] == 1
    assert summary["covid"] + summary["normal"] == len(some_xrays)


def test_json_and_human_output_agree(models_dir, covid_xray):
    human = run_cli("classify", covid_xray, "--model", models_dir).stdout.splitlines()[1]
    document = json.loads(run_cli("classify", covid_xray, "--model", models_dir,
                                  "--json").stdout)
    result = document["results"][0]
    assert human.split()[0] == result["verdict"]
    shown = human.split()[1]
    if shown[0] in "<>":  # a saturated int8 output: the end of its range, not a number
        assert (shown == ">0.99") == (result["probability"] > 0.99)
    else:
        assert float(shown) == pytest.approx(result["probability"], abs=5e-3)


def test_csv_file(models_dir, some_xrays, bad_image, tmp_path):
    out = tmp_path / "results.csv"
    result = run_cli("classify", *some_xrays, bad_image, "--model", models_dir, "--csv", out)
    assert result.exit_code == EXIT_UNREADABLE
    with open(out, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(some_xrays) + 1
    assert {row["verdict"] for row in rows[:-1]} <= {"covid", "normal"}
    assert all(0 <= float(row["probability"]) <= 1 for row in rows[:-1])
    assert rows[-1]["error"] and not rows[-1]["probability"]


def test_csv_keeps_an_existing_file_unless_forced(models_dir, covid_xray, tmp_path):
    out = tmp_path / "results.csv"
    out.write_text("yesterday's results\n")
    # Refused before any work, and the old file is whole, also when the run would fail anyway.
    for extra in ((), ("--model", tmp_path / "missing.tflite")):
        result = run_cli("classify", covid_xray, "--model", models_dir, "--csv", out, *extra)
        assert result.exit_code == EXIT_USAGE and "--force" in result.stderr
        assert out.read_text() == "yesterday's results\n"
    assert run_cli("classify", covid_xray, "--model", models_dir, "--csv", out,
                   "--force").exit_code == EXIT_OK
    rows = list(csv.DictReader(out.open(newline="", encoding="utf-8")))
    assert [row["path"] for row in rows] == [str(covid_xray)]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["results.csv"]  # no leftovers


def test_csv_never_replaces_an_input_image(models_dir, covid_xray, tmp_path):
    image = tmp_path / "scan.jpg"
    shutil.copy(covid_xray, image)
    result = run_cli("classify", image, "--model", models_dir, "--csv", image, "--force",
                     "--json")
    assert result.exit_code == EXIT_USAGE
    assert "one of the images" in json.loads(result.stdout)["error"]
    assert image.read_bytes() == covid_xray.read_bytes()


def test_csv_in_a_missing_folder_fails_before_the_model_loads(models_dir, covid_xray,
                                                              tmp_path):
    result = run_cli("classify", covid_xray, "--model", tmp_path / "missing.tflite",
                     "--csv", tmp_path / "no" / "results.csv")
    assert result.exit_code == EXIT_USAGE and "no folder" in result.stderr


def test_an_onnx_runtime_on_a_tflite_model_says_what_it_needs(models_dir, covid_xray):
    result = run_cli("classify", covid_xray, "--model", models_dir, "--runtime", "onnxruntime",
                     "--json")
    assert result.exit_code == EXIT_MODEL
    error = json.loads(result.stdout)["error"]
    assert "export-onnx" in error and "ai_edge_litert" in error
    assert "Traceback" not in result.output


def test_probabilities_never_read_as_certain():
    int8_limits = (0.0, 255 / 256)
    # A calibrated 0.9993 from an unsaturated output would print as 1.00: no model is certain.
    assert probability_text(0.97, 0.9993, int8_limits) == ">0.99"
    assert probability_text(0.02, 0.003, int8_limits) == "<0.01"
    assert probability_text(255 / 256, 0.98, int8_limits) == ">0.99"  # saturated output
    assert probability_text(0.5, 0.5, int8_limits) == "0.50"
    assert probability_text(None, 0.9999, None) == ">0.999"  # a float model: three decimals
    assert probability_text(None, 0.25, None) == "0.250"
    assert probability_text(None, None, int8_limits) == "-"


def test_csv_to_stdout_replaces_the_table(models_dir, covid_xray):
    result = run_cli("classify", covid_xray, "--model", models_dir, "--csv", "-")
    assert result.exit_code == EXIT_OK
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert len(rows) == 1 and rows[0]["path"] == str(covid_xray)
    assert DISCLAIMER in result.stderr


def test_folders_are_searched_recursively_in_order_and_globs_expanded(models_dir, some_xrays,
                                                                       tmp_path):
    for index, source in enumerate(some_xrays):
        target = tmp_path / ("b" if index % 2 else "a") / f"{index}{source.suffix.upper()}"
        target.parent.mkdir(exist_ok=True)
        shutil.copy(source, target)
    (tmp_path / "a" / "._0.jpg").write_bytes(b"macOS resource fork")  # not an image: skipped
    (tmp_path / "a" / "readme.txt").write_text("not an image")  # not an image suffix: skipped
    document = json.loads(run_cli("classify", tmp_path, "--model", models_dir, "--json").stdout)
    paths = [r["path"] for r in document["results"]]
    assert paths == sorted(paths) and len(paths) == len(some_xrays)
    assert all(r["error"] is None for r in document["results"])

    pattern = str(tmp_path / "**" / "*.JPG")
    globbed = json.loads(run_cli("classify", pattern, "--model", models_dir, "--json").stdout)
    assert [r["path"] for r in globbed["results"]] == paths


def test_no_inputs_is_a_usage_error(models_dir, tmp_path):
    assert run_cli("classify").exit_code == EXIT_USAGE
    result = run_cli("classify", tmp_path, "--model", models_dir)  # an empty folder
    assert result.exit_code == EXIT_USAGE and "no image" in result.stderr
    result = run_cli("classify", str(tmp_path / "*.png"), "--model", models_dir)
    assert result.exit_code == EXIT_USAGE


def test_missing_model_exits_3(covid_xray, tmp_path):
    result = run_cli("classify", covid_xray, "--model", tmp_path / "nope.tflite")
    assert result.exit_code == EXIT_MODEL
    assert "no such model file" in result.stderr
    assert "Traceback" not in result.output


def test_non_tflite_model_exits_3(covid_xray, tmp_path):
    fake = tmp_path / "model.tflite"
    fake.write_bytes(b"PK\x03\x04 this is a zip, maybe a .keras file")
    result = run_cli("classify", covid_xray, "--model", fake)
    assert result.exit_code == EXIT_MODEL
    assert "not a TensorFlow Lite model" in result.stderr


def edgetpu_model_in(tmp_path, models_dir_or_none):
    """The Edge-TPU-compiled reference model beside a model card describing it."""
    if not EDGETPU_REFERENCE.is_file():
        pytest.skip(f"{EDGETPU_REFERENCE} not found")
    model = tmp_path / EDGETPU_REFERENCE.name
    shutil.copy(EDGETPU_REFERENCE, model)
    if models_dir_or_none is not None:
        card = load_card(models_dir_or_none / "model_card.json")
    else:  # the contract's required fields only
        card = {"labels": ["normal", "covid"], "positive_label": "covid", "threshold": 0.5,
                "preprocessing": PreprocessSpec(height=128, width=128).to_dict()}
    card["variants"] = {"edgetpu": {"file": model.name, "sha256": sha256_file(model)}}
    card["default_variant"] = "edgetpu"
    write_json(card, tmp_path)
    return model


@pytest.mark.parametrize("as_json", [False, True])
def test_edgetpu_compiled_model_exits_3_and_says_why(tmp_path, covid_xray, as_json):
    from conftest import models_dir_under_test
    model = edgetpu_model_in(tmp_path, models_dir_under_test())
    result = run_cli("classify", covid_xray, "--model", model, *(["--json"] if as_json else []))
    assert result.exit_code == EXIT_MODEL
    assert "Edge TPU delegate" in result.stderr
    assert "Traceback" not in result.output
    if as_json:
        assert "Edge TPU delegate" in json.loads(result.stdout)["error"]


def test_help_documents_exit_codes():
    text = run_cli("classify", "--help").stdout
    for line in ("0  every image", "1  some inputs", "2  usage error", "3  the model"):
        assert line in text


def _commands(group, prefix=()):
    context = click.Context(group)
    for name in group.list_commands(context):
        command = group.get_command(context, name)
        if isinstance(command, click.Group):
            yield from _commands(command, (*prefix, name))
        else:
            yield (*prefix, name)


@pytest.mark.parametrize("command", list(_commands(main)), ids=" ".join)
def test_every_command_help_has_exit_codes_and_examples(command):
    """As the root --help promises: scripts can read what an exit code means, and a new user
    sees a command that works."""
    text = run_cli(*command, "--help").stdout
    assert "Exit codes" in text or "Exit status" in text, text[-1500:]
    assert "Example" in text, text[-1500:]


def test_real_subprocess_run_of_the_command(models_dir, covid_xray, bad_image):
    command = [sys.executable, "-m", "covid_edge", "classify", str(covid_xray), str(bad_image),
               "--model", str(models_dir), "--json"]
    done = subprocess.run(command, capture_output=True, text=True, env=subprocess_env(),
                          cwd=REPO_ROOT, timeout=120)
    assert done.returncode == EXIT_UNREADABLE, done.stderr
    document = json.loads(done.stdout)
    assert document["summary"]["classified"] == 1 and document["summary"]["unreadable"] == 1
    assert "Traceback" not in done.stderr
    assert "XNNPACK" not in done.stderr  # the interpreter's INFO line is filtered out


# -- covid-edge info -----------------------------------------------------------------------

def test_info_json(models_dir, model_card):
    result = run_cli("info", "--model", models_dir, "--json")
    assert result.exit_code == EXIT_OK, result.output
    document = json.loads(result.stdout)
    model = document["model"]
    assert model["threshold"] == pytest.approx(model_card["threshold"])
    assert set(model["variants"]) == set(model_card["variants"])
    for name, variant in model["variants"].items():
        assert variant["present"] == (models_dir / model_card["variants"][name]["file"]).is_file()
    assert model["variants"]["int8"]["present"] and model["variants"]["int8"]["bytes"] > 0
    assert model["variants"]["int8"]["matches_card"] is True
    assert model["samples"] and all(s.startswith(str(models_dir)) for s in model["samples"])
    assert document["runtimes"]["selected"] == "ai_edge_litert"
    assert document["runtimes"]["installed"]["ai_edge_litert"]
    assert document["host"]["cpu"]["isa"] and document["host"]["pick"]
    assert document["disclaimer"] == DISCLAIMER


def test_info_human(models_dir, model_card):
    result = run_cli("info", "--model", models_dir)
    assert result.exit_code == EXIT_OK
    for variant in model_card["variants"].values():
        assert variant["file"] in result.stdout
    assert "threshold" in result.stdout and "preprocessing" in result.stdout
    assert "Host:" in result.stdout and "pick: " in result.stdout
    assert DISCLAIMER in result.stdout


def test_info_flags_a_file_that_is_not_the_cards(models_dir, tmp_path):
    for name in ("model_card.json", "ood_stats.npz"):
        shutil.copy(models_dir / name, tmp_path / name)
    # Another variant's file under the int8 name: the card's figures are not this file's.
    shutil.copy(models_dir / "covid-edge-dynamic.tflite", tmp_path / "covid-edge-int8.tflite")
    document = json.loads(run_cli("info", "--model", tmp_path, "--json").stdout)
    assert document["model"]["variants"]["int8"]["matches_card"] is False
    assert "NOT the file the card describes" in run_cli("info", "--model", tmp_path).stdout


def test_info_without_a_model_card_exits_3(tmp_path):
    result = run_cli("info", "--model", tmp_path)
    assert result.exit_code == EXIT_MODEL
    assert "model_card.json" in result.stderr
    assert "Runtimes" in result.stdout  # still reports what it can


def test_unwritable_csv_path_is_a_usage_error_before_any_work(covid_xray, tmp_path):
    result = run_cli("classify", covid_xray, "--csv", tmp_path / "no" / "such" / "dir.csv")
    assert result.exit_code == EXIT_USAGE and "cannot write" in result.stderr


def test_a_file_name_with_control_characters_stays_on_its_own_line(tmp_path, covid_xray):
    """A newline or an escape sequence in a file name is printed escaped: it can neither split
    a row of the table (and forge another) nor reach the terminal; --json keeps the name."""
    named = tmp_path / "scan\nnormal  0.01  0.99.jpg"
    shutil.copy(covid_xray, named)
    escaped = tmp_path / "bad\x1b[2J.png"
    escaped.write_text("not an image\n")
    result = run_cli("classify", named, escaped, tmp_path / "gone\n.png")
    rows = [line for line in result.stdout.splitlines() if "scan" in line]
    assert len(rows) == 1 and rows[0].startswith("covid"), result.stdout
    assert rows[0].endswith("scan\\nnormal  0.01  0.99.jpg")
    assert "\x1b" not in result.output
    assert "bad\\x1b[2J.png: not an image" in result.stderr
    assert "gone\\n.png: no such file or folder" in result.stderr
    document = json.loads(run_cli("classify", named, "--json").stdout)
    assert document["results"][0]["path"] == str(named)


def test_a_folder_search_names_the_pictures_it_passes_over(tmp_path, covid_xray):
    """GIF, WebP or HEIC files beside the X-rays are not read: the search says how many it
    passed over and what to do, instead of leaving them out in silence; other files (notes,
    CSVs) are not mentioned."""
    from PIL import Image

    shutil.copy(covid_xray, tmp_path / "scan.jpg")
    Image.open(covid_xray).save(tmp_path / "scan.gif")
    (tmp_path / "sub").mkdir()
    Image.open(covid_xray).save(tmp_path / "sub" / "other.gif")
    (tmp_path / "notes.txt").write_text("read me\n")
    result = run_cli("classify", tmp_path, "--json")
    assert result.exit_code == 0, result.output
    assert [Path(r["path"]).name for r in json.loads(result.stdout)["results"]] == ["scan.jpg"]
    assert "note: skipped 2 .gif files" in result.stderr and "PNG or JPEG" in result.stderr
    assert ".txt" not in result.stderr
    alone = run_cli("classify", tmp_path / "scan.jpg")
    assert "skipped" not in alone.stderr


# -- standard input ------------------------------------------------------------------------

def test_an_image_piped_to_dash_gets_the_answer_its_file_gets(covid_xray, models_dir, tmp_path):
    """`covid-edge classify -`, as a shell pipes it (a real process, a real pipe), among
    other arguments and with --csv."""
    csv_path = tmp_path / "out.csv"
    done = subprocess.run(
        [sys.executable, "-m", "covid_edge", "classify", "-", str(covid_xray), "--model",
         str(models_dir), "--json", "--csv", str(csv_path)],
        input=covid_xray.read_bytes(), capture_output=True, env=subprocess_env(),
        cwd=REPO_ROOT, timeout=120)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    piped, from_file = json.loads(done.stdout)["results"]
    assert piped["path"] == "-" and from_file["path"] == str(covid_xray)
    assert piped["probabilities"] == from_file["probabilities"]
    assert piped["verdict"] == from_file["verdict"]
    rows = list(csv.DictReader(csv_path.open()))
    assert [row["path"] for row in rows] == ["-", str(covid_xray)]


def test_dash_refuses_a_terminal_and_more_than_one_image_file_may_hold():
    from covid_edge.edge_runtime.stdin_image import read_stdin_image

    image, reason = read_stdin_image(io.BytesIO(b"x"), is_terminal=True)
    assert image is None and "covid-edge classify - < chest.png" in reason
    image, reason = read_stdin_image(io.BytesIO(bytes(2 * 2**20 + 1)), False, limit=2 * 2**20)
    assert image is None and "more than 2 MB on standard input" in reason
    image, reason = read_stdin_image(io.BytesIO(b"\x89PNG"), False)
    assert reason is None and image.read() == b"\x89PNG" and str(image) == "-"
