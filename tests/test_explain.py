"""Occlusion-sensitivity explanations with the exported TFLite model (real LiteRT, real X-rays)
and the `covid-edge explain` command."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from covid_edge import DISCLAIMER
from covid_edge.cli import main
from covid_edge.edge_runtime.classifier import Classifier
from covid_edge.edge_runtime.explain import (COLOUR_MAP, LOG_ODDS, PROBABILITY, canvas_size,
                                             count_inferences, default_patch, default_stride,
                                             agreement_tolerance, explain_pixels,
                                             explain_to_png, final_layer, occluder_pixels,
                                             patch_starts, sigmoid, target_scorer)
from covid_edge.preprocess import PreprocessSpec, load_pixels

EXIT_OK, EXIT_UNREADABLE, EXIT_USAGE, EXIT_MODEL = 0, 1, 2, 3


def run_cli(*args):
    return CliRunner().invoke(main, [str(arg) for arg in args])


@pytest.fixture(scope="module")
def classifier(models_dir) -> Classifier:
    return Classifier.load(models_dir)


@pytest.fixture(scope="module")
def coarse(classifier) -> dict:
    """A 3 x 3 grid: enough to test the method in a tenth of the default's inferences."""
    side = classifier.spec.height
    return {"patch": side // 2, "stride": side // 4}


# -- the grid ------------------------------------------------------------------------------

def test_default_grid_at_224_is_13_by_13_patches_of_32px():
    patch = default_patch(224)
    assert (patch, default_stride(patch)) == (32, 16)
    assert patch_starts(224, 32, 16) == list(range(0, 193, 16))
    assert count_inferences(224, 224, 32, 16) == 1 + 13 * 13


def test_last_patch_reaches_the_far_edge():
    starts = patch_starts(96, 13, 6)
    assert starts[-1] == 96 - 13 and starts[:-1] == list(range(0, 84, 6))
    assert count_inferences(96, 96, 13, 6) == 1 + len(starts) ** 2
    assert count_inferences(224, 224, 224, 224) == 2  # one patch hides everything


@pytest.mark.parametrize("patch, stride, message", [
    (225, 16, "patch must be"), (0, 1, "patch must be"), (32, 33, "stride must be")])
def test_impossible_grids_are_refused(patch, stride, message):
    with pytest.raises(ValueError, match=message):
        patch_starts(224, patch, stride)


def test_occluders(covid_xray):
    pixels = load_pixels(covid_xray, PreprocessSpec())  # 224 x 224
    blurred = occluder_pixels(pixels, "blur", 32)
    assert blurred.shape == pixels.shape and blurred.dtype == np.uint8
    assert blurred.std() < pixels.std()  # detail gone
    assert abs(float(blurred.mean()) - float(pixels.mean())) < 2  # brightness kept
    assert np.unique(occluder_pixels(pixels, "mean", 32)).tolist() == [round(pixels.mean())]
    with pytest.raises(ValueError, match="occluder"):
        occluder_pixels(pixels, "noise", 32)


# -- the map -------------------------------------------------------------------------------

def score_of(classifier, pixels, kind, target) -> float:
    """The score explain_pixels records for `target`, computed here from a plain inference."""
    inference = classifier.run(classifier.prepare_input(pixels))
    head = final_layer(classifier) if kind == LOG_ODDS else None
    return target_scorer(classifier, head, target)(inference)


def test_map_is_consistent_with_plain_classification(classifier, covid_xray, coarse):
    pixels = load_pixels(covid_xray, classifier.spec)
    explanation = explain_pixels(classifier, pixels, **coarse)
    height, width = classifier.spec.height, classifier.spec.width
    assert explanation.heatmap.shape == (height, width)
    assert np.isfinite(explanation.heatmap).all()
    assert explanation.occluded.shape == (3, 3)
    assert explanation.inferences == count_inferences(height, width, **coarse) == 10
    assert explanation.elapsed_ms >= explanation.invoke_ms > 0
    # Models with a feature output are explained in log-odds (their probability saturates).
    expected_kind = LOG_ODDS if classifier.feature_details is not None else PROBABILITY
    assert explanation.score == expected_kind

    plain = classifier.classify_pixels(pixels)
    assert explanation.probability == pytest.approx(plain.probability)  # calibrated, as shown
    assert explanation.raw_probability == plain.raw_probability
    assert explanation.verdict == plain.verdict
    assert explanation.threshold == plain.threshold
    assert explanation.base_score == pytest.approx(
        score_of(classifier, pixels, expected_kind, explanation.target))

    # Each hidden patch, built independently in pixel space, gives the recorded score.
    hidden = occluder_pixels(pixels, "blur", coarse["patch"])
    starts = patch_starts(height, **coarse)
    for i, top in enumerate(starts):
        for j, left in enumerate(starts):
            trial = pixels.copy()
            window = (slice(top, top + coarse["patch"]), slice(left, left + coarse["patch"]))
            trial[window] = hidden[window]
            assert score_of(classifier, trial, expected_kind, explanation.target) == pytest.approx(
                explanation.occluded[i, j], abs=1e-5)
    # A corner pixel lies under one patch only: its score is that patch's drop.
    assert explanation.heatmap[0, 0] == pytest.approx(
        explanation.base_score - explanation.occluded[0, 0], abs=1e-4)
    # Every score is a mean of drops, so it lies within their range.
    drops = explanation.base_score - explanation.occluded
    assert drops.min() - 1e-4 <= explanation.heatmap.min()
    assert explanation.heatmap.max() <= drops.max() + 1e-4


def test_log_odds_from_the_last_layer_give_the_models_probability(classifier, covid_xray,
                                                                    normal_xray):
    """sigmoid(features . w + b) must be the model's own probability output (to its int8
    rounding) over the whole range, including the uncertain middle where the output is not
    saturated: blends of a covid and a normal X-ray get there."""
    head = final_layer(classifier)
    if classifier.feature_details is None:
        assert head is None
        pytest.skip("this model has no feature output: maps are in probability")
    assert head is not None
    covid, normal = (load_pixels(p, classifier.spec).astype(np.float64)
                     for p in (covid_xray, normal_xray))
    tolerance = agreement_tolerance(head, classifier)
    assert tolerance < 0.06  # the model's rounding, not a loose test
    probabilities = []
    for weight in np.linspace(0.0, 1.0, 21):
        blend = np.rint(weight * covid + (1 - weight) * normal).astype(np.uint8)
        inference = classifier.run(classifier.prepare_input(blend))
        probability, features = inference.positive, inference.features
        log_odds = (head.log_odds(features) if classifier.scheme.output_size == 1 else
                    head.class_log_odds(features, classifier.scheme.positive_index))
        assert abs(sigmoid(log_odds) - probability) <= tolerance
        probabilities.append(probability)
    # The blends must cross the model's own decision threshold (not a fixed 0.5: a softmax
    # model's P(covid) may peak below it on this pair of X-rays).
    assert min(probabilities) < classifier.model_threshold < max(probabilities)


def test_map_is_deterministic(classifier, normal_xray, coarse):
    pixels = load_pixels(normal_xray, classifier.spec)
    first = explain_pixels(classifier, pixels, **coarse)
    second = explain_pixels(classifier, pixels, **coarse)
    assert np.array_equal(first.heatmap, second.heatmap)


@pytest.mark.parametrize("occluder", ["blur", "mean"])
def test_hiding_nothing_changes_nothing(classifier, occluder, coarse):
    """On a uniform image the occluder equals the image, so the map must be exactly zero:
    any colour would come from the method, not from the model."""
    pixels = np.full((classifier.spec.height, classifier.spec.width), 90, dtype=np.uint8)
    explanation = explain_pixels(classifier, pixels, occluder=occluder, **coarse)
    assert np.all(explanation.occluded == np.float32(explanation.base_score))
    assert not explanation.heatmap.any()


def test_png_bytes_for_web_pages(classifier, covid_xray, coarse):
    from covid_edge.image_io import read_grayscale
    explanation, png = explain_to_png(classifier, read_grayscale(covid_xray), "x.jpg",
                                      display=256, **coarse)
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG" and image.size == canvas_size(256) and image.mode == "RGB"
    assert explanation.figures()["inferences"] == 10


def test_colour_map_is_colorbrewer_rdbu_reversed():
    assert COLOUR_MAP.shape == (256, 3) and COLOUR_MAP.dtype == np.uint8
    assert COLOUR_MAP[0].tolist() == [0x05, 0x30, 0x61]  # dark blue: toward normal
    assert COLOUR_MAP[-1].tolist() == [0x67, 0x00, 0x1F]  # dark red: toward covid
    colormaps = pytest.importorskip("matplotlib").colormaps
    reference = np.rint(colormaps["RdBu_r"](np.linspace(0, 1, 256))[:, :3] * 255)
    assert np.abs(reference - COLOUR_MAP).max() <= 1


# -- the command ---------------------------------------------------------------------------

def test_explain_writes_the_figure(models_dir, covid_xray, tmp_path, coarse):
    output = tmp_path / "heatmap.png"
    result = run_cli("explain", covid_xray, "-o", output, "--model", models_dir,
                     "--patch", coarse["patch"], "--stride", coarse["stride"], "--size", 300)
    assert result.exit_code == EXIT_OK, result.output
    with Image.open(output) as image:
        assert image.format == "PNG" and image.size == canvas_size(300)
    assert "10 inferences" in result.stdout and DISCLAIMER in result.stdout

    again = run_cli("explain", covid_xray, "-o", output, "--model", models_dir)
    assert again.exit_code == EXIT_USAGE and "--force" in again.stderr
    forced = run_cli("explain", covid_xray, "-o", output, "--model", models_dir, "--force",
                     "--json")
    assert forced.exit_code == EXIT_OK
    figures = json.loads(forced.stdout)
    side = Classifier.load(models_dir).spec.height
    patch = default_patch(side)
    assert figures["patch"] == patch and figures["stride"] == default_stride(patch)
    # coarse-to-fine by default (explain_coarse.py; --full scores every position)
    assert figures["inferences"] == 80 < count_inferences(side, side, patch,
                                                          default_stride(patch))
    assert figures["elapsed_ms"] > 0 and figures["disclaimer"] == DISCLAIMER
    assert 0.0 <= figures["probability"] <= 1.0 and figures["output"] == str(output)


def test_explain_default_output_name(models_dir, covid_xray, tmp_path, coarse, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run_cli("explain", covid_xray, "--model", models_dir, "--patch", coarse["patch"])
    assert result.exit_code == EXIT_OK, result.output
    assert (tmp_path / f"{covid_xray.stem}-heatmap.png").is_file()


def test_explain_errors(models_dir, covid_xray, tmp_path):
    missing = run_cli("explain", tmp_path / "nope.png", "-o", tmp_path / "h.png",
                      "--model", models_dir)
    assert missing.exit_code == EXIT_UNREADABLE and "no such file" in missing.stderr
    assert not (tmp_path / "h.png").exists()
    bad_grid = run_cli("explain", covid_xray, "-o", tmp_path / "h.png", "--model", models_dir,
                       "--patch", 8, "--stride", 9, "--json")
    assert bad_grid.exit_code == EXIT_USAGE and "stride" in json.loads(bad_grid.stdout)["error"]
    not_png = run_cli("explain", covid_xray, "-o", tmp_path / "h.jpg", "--model", models_dir)
    assert not_png.exit_code == EXIT_USAGE
    # Usage errors of the option parser itself answer --json too (scripts parse stdout).
    for output in (tmp_path / "h.jpg", tmp_path):
        usage = run_cli("explain", covid_xray, "-o", output, "--model", models_dir, "--json")
        assert usage.exit_code == EXIT_USAGE
        assert json.loads(usage.stdout)["exit_code"] == EXIT_USAGE
    no_model = run_cli("explain", covid_xray, "-o", tmp_path / "h.png", "--model",
                       tmp_path / "missing.tflite")
    assert no_model.exit_code == EXIT_MODEL and "no such model file" in no_model.stderr


def test_explain_reads_dicom(models_dir, covid_xray, tmp_path, coarse):
    pytest.importorskip("pydicom")
    from test_dicom import dx_dataset, save, xray_pixels
    scan = save(dx_dataset(xray_pixels(covid_xray)), tmp_path / "chest.dcm")
    from_dicom = run_cli("explain", scan, "-o", tmp_path / "d.png", "--model", models_dir,
                         "--patch", coarse["patch"], "--stride", coarse["stride"], "--json")
    from_jpeg = run_cli("explain", covid_xray, "-o", tmp_path / "j.png", "--model", models_dir,
                        "--patch", coarse["patch"], "--stride", coarse["stride"], "--json")
    assert from_dicom.exit_code == from_jpeg.exit_code == EXIT_OK
    dicom_figures, jpeg_figures = json.loads(from_dicom.stdout), json.loads(from_jpeg.stdout)
    for key in ("probability", "max_drop", "max_rise", "peak_xy"):
        assert dicom_figures[key] == jpeg_figures[key]


def test_explain_imports_no_tensorflow_or_matplotlib(models_dir, covid_xray, tmp_path, coarse):
    from test_no_tensorflow import run_in_fresh_python
    report = run_in_fresh_python(["explain", str(covid_xray), "-o", str(tmp_path / "h.png"),
                                  "--model", str(models_dir), "--patch", str(coarse["patch"]),
                                  "--json"])
    assert report["codes"] == [0] and report["loaded"] == []
    assert (tmp_path / "h.png").is_file()


def test_explain_refuses_what_the_guard_calls_no_chest_xray(models_dir, classifier, tmp_path,
                                                            coarse):
    from conftest import REFERENCE
    photos = sorted((REFERENCE / "photos").glob("*.jpg"))
    if classifier.guard is None or not photos:
        pytest.skip("no out-of-distribution guard in this model card, or no photos")
    options = ["-o", tmp_path / "h.png", "--model", models_dir, "--patch", coarse["patch"],
               "--stride", coarse["stride"]]
    refused = run_cli("explain", photos[0], *options)
    if refused.exit_code == EXIT_OK:
        pytest.skip(f"the guard lets {photos[0].name} through")
    assert refused.exit_code == EXIT_UNREADABLE and "not a chest X-ray" in refused.stderr
    assert "--no-guard" in refused.stderr and not (tmp_path / "h.png").exists()
    forced = run_cli("explain", photos[0], *options, "--no-guard")
    assert forced.exit_code == EXIT_OK and (tmp_path / "h.png").is_file()


def test_an_image_piped_to_dash_is_explained_as_its_file_is(covid_xray, models_dir, tmp_path):
    """`covid-edge explain - -o FILE` through a real pipe; without -o there is no name to
    derive the heatmap's from, which is a usage error, not a file called '--heatmap.png'."""
    import subprocess
    import sys

    from conftest import subprocess_env

    def explain(*args):
        return subprocess.run([sys.executable, "-m", "covid_edge", "explain", *map(str, args),
                               "--model", str(models_dir), "--json"],
                              input=covid_xray.read_bytes(), capture_output=True,
                              env=subprocess_env(), cwd=tmp_path, timeout=120)

    piped = explain("-", "-o", tmp_path / "piped.png")
    from_file = explain(covid_xray, "-o", tmp_path / "file.png")
    assert piped.returncode == 0 == from_file.returncode, piped.stderr.decode()[-2000:]
    piped_doc, file_doc = json.loads(piped.stdout), json.loads(from_file.stdout)
    assert piped_doc["image"] == "-"
    assert piped_doc["probability"] == file_doc["probability"]
    for key in ("max_drop", "peak_xy", "positive_evidence_in_lungs"):
        assert piped_doc[key] == file_doc[key], key
    assert Image.open(tmp_path / "piped.png").size == Image.open(tmp_path / "file.png").size
    unnamed = explain("-")
    assert unnamed.returncode == 2 and b"give -o FILE.png" in unnamed.stderr
    assert not list(tmp_path.glob("*-heatmap.png"))
