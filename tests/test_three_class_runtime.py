"""What a user sees at run time with a normal / pneumonia / covid model: classify's table,
JSON and CSV, info, explain (--for), the API, the pages' data, the kiosk record, and the
benchmarks (check, drift, sources, shift). The model is the small three-class one trained and
converted in this test session (conftest.three_class_dir), run by the real LiteRT on real
X-rays from ../shared.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import CXR, CXR_MORE, cli_runner
from covid_edge.cli import main
from covid_edge.edge_runtime.classifier import Classifier

pytestmark = pytest.mark.slow  # the fixture trains and converts a model (minutes, once)
LABELS = ["normal", "pneumonia", "covid"]


def run_cli(*args):
    return cli_runner().invoke(main, [str(arg) for arg in args])


@pytest.fixture(scope="module")
def model(three_class_dir) -> Path:
    return three_class_dir


@pytest.fixture(scope="module")
def classifier(model) -> Classifier:
    return Classifier.load(model)


@pytest.fixture(scope="module")
def images(model) -> list[Path]:
    """The card's samples (one or more of each class) and two unseen pneumonia X-rays."""
    samples = sorted((model / "samples").glob("*.jpg"))
    pneumonia = sorted((CXR_MORE / "pneumonia").glob("kermany-*.jpg"))[-2:]
    return samples + pneumonia


def screening_verdict(raw: dict, threshold: float) -> str:
    """The rule, written out: covid when P(covid) >= threshold, else the likeliest other."""
    if raw["covid"] >= threshold:
        return "covid"
    return max((label for label in raw if label != "covid"), key=raw.get)


# -- classify ----------------------------------------------------------------------------------

def test_classify_table_shows_every_class(model, images, classifier):
    result = run_cli("classify", *images, "--model", model)
    assert result.exit_code == 0, result.output + result.stderr
    lines = result.stdout.splitlines()
    # The threshold is in the footer with the rule; its column gives way to the classes'.
    assert lines[0].split()[:5] == ["verdict", "P(covid)", "P(normal)", "P(pneumon)",
                                    "latency"]
    rows = [line.split() for line in lines[1:1 + len(images)]]
    for row, path in zip(rows, images):
        verdict, p_covid, p_normal, p_pneumonia = row[:4]
        assert row[-1] == str(path) and verdict in LABELS
        expected = classifier.classify_file(path)
        assert verdict == expected.verdict
        for shown, label in ((p_covid, "covid"), (p_normal, "normal"),
                             (p_pneumonia, "pneumonia")):
            if shown[0] not in "<>":
                assert float(shown) == pytest.approx(expected.probabilities[label], abs=5e-3)
    # Everything but the image path fits well inside 100 columns.
    assert all(len(line) - len(line.split()[-1]) <= 60 for line in lines[1:1 + len(images)])
    footer = " ".join(lines[1 + len(images):])
    counts = {label: sum(row[0] == label for row in rows) for label in LABELS}
    assert (f"{len(images)} classified: {counts['covid']} covid, {counts['normal']} normal, "
            f"{counts['pneumonia']} pneumonia;") in footer
    assert "else the most probable other class" in footer


def test_classify_json_and_csv_carry_every_class(model, images, tmp_path):
    out = tmp_path / "results.csv"
    result = run_cli("classify", *images, "--model", model, "--json", "--csv", out)
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["model"]["classes"] == {"labels": LABELS, "positive_label": "covid",
                                            "output_kind": "softmax"}
    card = json.loads((model / "model_card.json").read_text())
    for entry in document["results"]:
        assert list(entry["probabilities"]) == LABELS
        assert sum(entry["probabilities"].values()) == pytest.approx(1.0, abs=0.02)  # int8
        assert entry["probability"] == entry["probabilities"]["covid"]
        assert entry["verdict"] == screening_verdict(entry["raw_probabilities"],
                                                     card["threshold"])
    summary = document["summary"]
    assert summary["verdicts"] == {label: sum(r["verdict"] == label
                                              for r in document["results"])
                                   for label in ("covid", "normal", "pneumonia")}
    assert sum(summary["verdicts"].values()) == summary["classified"] == len(images)
    assert {label: summary[label] for label in LABELS} == summary["verdicts"]
    with open(out, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    for row, entry in zip(rows, document["results"]):
        assert row["verdict"] == entry["verdict"]
        assert [float(row[f"p_{label}"]) for label in LABELS] == pytest.approx(
            [entry["probabilities"][label] for label in LABELS])


def test_classify_help_and_info_explain_the_rule(model):
    text = " ".join(run_cli("classify", "--help").stdout.split())
    assert "else the most probable other class" in text
    info = run_cli("info", "--model", model)
    assert info.exit_code == 0, info.output
    assert "labels: normal, pneumonia, covid; positive: covid; output: softmax over 3 classes" \
        in info.stdout
    assert ("verdict: covid when P(covid) >= the threshold, else the most probable of normal, "
            "pneumonia") in info.stdout
    report = json.loads(run_cli("info", "--model", model, "--json").stdout)["model"]
    assert report["output_kind"] == "softmax" and report["labels"] == LABELS


# -- explain -----------------------------------------------------------------------------------

def test_explain_maps_the_verdicts_class_or_the_one_asked_for(model, images):
    from covid_edge.edge_runtime.explain import final_layer, explain_pixels, sigmoid
    from covid_edge.preprocess import load_pixels

    classifier = Classifier.load(model)
    # The small model's threshold (chosen for 98% sensitivity on a few validation images) can
    # sit under every image's P(covid); past 1 every verdict is the likeliest other class,
    # which is the case this test is about.
    classifier.model_threshold = classifier.threshold = 1.01
    head = final_layer(classifier)
    assert head is not None and np.atleast_2d(head.weights).shape[0] == 3
    other = [path for path in images if classifier.classify_file(path).verdict != "covid"]
    assert other == images
    verdict = classifier.classify_file(other[0]).verdict
    index = LABELS.index(verdict)
    pixels = load_pixels(other[0], classifier.spec)
    inference = classifier.run(classifier.prepare_input(pixels))
    # log(p_k / (1 - p_k)) from the last layer's three rows is the model's own P(k).
    for k in range(3):
        assert sigmoid(head.class_log_odds(inference.features, k)) == pytest.approx(
            inference.probabilities[k], abs=0.03)
    default = explain_pixels(classifier, pixels, patch=24, stride=24)
    assert default.verdict == verdict and default.target == verdict
    assert default.against == f"not {verdict}" and default.score == "log-odds"
    assert default.base_score == pytest.approx(head.class_log_odds(inference.features, index))
    covid = explain_pixels(classifier, pixels, patch=24, stride=24, target="covid")
    assert covid.target == "covid" and covid.verdict == verdict
    assert not np.allclose(covid.heatmap, default.heatmap)
    assert covid.figures()["target"] == "covid"
    with pytest.raises(ValueError, match="no class 'viral'"):
        explain_pixels(classifier, pixels, patch=24, stride=24, target="viral")


def test_explain_command_for_covid_and_unknown_class(model, images, tmp_path):
    out = tmp_path / "map.png"
    result = run_cli("explain", images[0], "--model", model, "-o", out, "--for", "covid",
                     "--json")
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["target"] == "covid" and list(document["probabilities"]) == LABELS
    assert out.stat().st_size > 10_000
    bad = run_cli("explain", images[0], "--model", model, "-o", tmp_path / "x.png",
                  "--for", "viral")
    assert bad.exit_code == 2 and "normal, pneumonia, covid" in bad.stderr


# -- API, pages, kiosk ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def client(classifier):
    pytest.importorskip("fastapi", reason="needs the serve extra")
    from fastapi.testclient import TestClient

    from covid_edge.kiosk.inference import SharedClassifier
    from covid_edge.kiosk.server import create_app

    with TestClient(create_app(SharedClassifier(classifier)),
                    client=("127.0.0.1", 50000)) as test_client:
        yield test_client


def test_api_answers_every_class(client, classifier, images):
    model = client.get("/api/v1/model").json()
    assert model["labels"] == LABELS and model["output_kind"] == "softmax"
    assert "else the most probable of normal, pneumonia" in model["decision_rule"]
    for path in images[:3]:
        body = client.post("/api/v1/classify",
                           files={"file": (path.name, path.read_bytes(), "image/jpeg")}).json()
        expected = classifier.classify_file(path)
        assert body["verdict"] == expected.verdict
        assert body["probabilities"] == pytest.approx(expected.probabilities)
        assert list(body["probabilities"]) == LABELS


def test_prediction_page_has_a_bar_per_class(client, classifier, images):
    path = images[-1]  # pneumonia
    expected = classifier.classify_file(path)
    page = client.post("/classify", files={"file": (path.name, path.read_bytes(),
                                                    "image/jpeg")}).text
    rows = re.findall(r'data-label="(\w+)"', page)
    assert rows == ["normal", "pneumonia"]  # covid has the main bar with the threshold
    assert 'id="prob-value"' in page
    if expected.verdict != "covid":
        assert f"{expected.verdict} is the most probable other class" in page
        assert f'class="class-row chosen" data-label="{expected.verdict}"' in page


def test_explain_api_for_a_class(client, images):
    path = images[0]
    files = {"file": (path.name, path.read_bytes(), "image/jpeg")}
    body = client.post("/api/v1/explain?format=json&for=covid", files=files).json()
    assert body["target"] == "covid" and list(body["probabilities"]) == LABELS
    default = client.post("/api/v1/explain?format=json", files=files).json()
    assert default["target"] == default["verdict"]
    bad = client.post("/api/v1/explain?for=viral", files=files)
    assert bad.status_code == 422 and "normal, pneumonia, covid" in bad.json()["error"]


def test_kiosk_record_carries_every_class(classifier, images):
    from covid_edge.kiosk.camera import Frame
    from covid_edge.kiosk.inference import SharedClassifier
    from covid_edge.kiosk.kiosk_loop import classify_frame, frame_record
    from covid_edge.kiosk.schemas import KioskFrameIn

    shared = SharedClassifier(classifier)
    frame = Frame(images[-1].name, data=images[-1].read_bytes())
    result, error = classify_frame(shared, frame)
    record = frame_record(1, frame, result, error, shared, "folder:test", 1.0)
    assert record["labels"] == LABELS and list(record["probabilities"]) == LABELS
    assert KioskFrameIn(**record).probabilities == record["probabilities"]


# -- benchmarks --------------------------------------------------------------------------------

def test_bench_check_reproduces_the_softmax_reference(model):
    from covid_edge.benchmarks import check

    result = check.run(model, threads=1)
    assert result["passed"], result
    for row in result["images"]:
        assert isinstance(row["raw"], list) and len(row["raw"]) == 3
        assert row["steps"] == 0 and list(row["probabilities"]) == LABELS
    table = check.terminal_table(result)
    rows = [line for line in table.splitlines() if line.startswith("PASS ")]
    assert len(rows) == len(result["images"]) and all(line.count("/") >= 4 for line in rows)
    assert "PASS:" in table


def test_bench_check_fails_on_another_class(model, tmp_path):
    """A reference whose P(normal) is off (P(covid) unchanged) fails on that class."""
    from covid_edge.benchmarks import check

    copy = tmp_path / "models"
    shutil.copytree(model, copy, ignore=shutil.ignore_patterns("training"))
    card = json.loads((copy / "model_card.json").read_text())
    first = card["reference_outputs"]["images"][0]
    first["probabilities"]["normal"] = min(1.0, first["probabilities"]["normal"] + 0.2)
    (copy / "model_card.json").write_text(json.dumps(card))
    result = check.run(copy, threads=1)
    assert not result["passed"]
    assert "P(normal)" in result["images"][0]["reason"]


def test_bench_drift_confusion_is_n_by_n(model, tmp_path):
    data = tmp_path / "data"
    for label, folder in (("normal", CXR / "normal"), ("pneumonia", CXR_MORE / "pneumonia"),
                          ("covid", CXR / "covid"), ("tuberculosis", CXR_MORE / "tuberculosis")):
        (data / label).mkdir(parents=True)
        for path in sorted(folder.glob("*.jpg"))[-4:]:
            (data / label / path.name).symlink_to(path)
    out = tmp_path / "drift"
    result = cli_runner().invoke(main, ["bench", "drift", str(data), "--models", str(model),
                                        "--out", str(out), "--json", "--threads", "1"])
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["selection"]["per_class"] == {"normal": 4, "pneumonia": 4, "covid": 4}
    int8 = next(v for v in report["variants"] if v["name"] == "int8")
    matrix = np.array(int8["metrics"]["class_confusion_matrix"])
    assert matrix.shape == (3, 3) and matrix.sum() == 12 and matrix.sum(axis=1).tolist() == [4] * 3
    assert "## The verdict of every class" in (out / "drift.md").read_text()


def test_bench_sources_and_shift_break_down_every_verdict(classifier, model):
    from covid_edge.benchmarks import shift, shift_report, sources, sources_report
    from covid_edge.benchmarks.labelled_sets import LabelledImage
    from covid_edge.benchmarks.perturbations import BY_NAME

    images = [LabelledImage(path, path.name, label, source)
              for label, folder, source in (("covid", CXR / "covid", "cxr"),
                                            ("normal", CXR / "normal", "cxr"),
                                            ("pneumonia", CXR_MORE / "pneumonia", "kermany"))
              for path in sorted(folder.glob("*.jpg"))[-3:]]
    report = sources.run(classifier, images, {"notes": [], "images": len(images)})
    for group in report["groups"]:
        called = group["guard_off"]["called"]
        assert list(called) == LABELS
        assert sum(entry["k"] for entry in called.values()) == group["guard_off"]["n"]
    table = sources_report.terminal_table(report)
    # "how often it is called covid, normal or pneumonia", a bare class name per column
    header = next(line for line in table.splitlines() if line.startswith("source ")
                  and "label" in line)
    assert "called covid, normal or pneumonia" in table
    assert header.split()[4:7] == ["covid", "normal", "pneumonia"]
    assert "AUC vs normal" in table

    run = shift.run(classifier, images, {"notes": [], "images": len(images)},
                    [BY_NAME["jpeg-q10"]], workers=1)
    row, = run["perturbations"]
    assert sum(row["flip_transitions"].values()) == row["flips"]["k"]
    for flipped in row["flipped_images"]:
        assert f"{flipped['verdict']} -> {flipped['perturbed_verdict']}" in row["flip_transitions"]
    assert "between others" in shift_report.terminal_table(run)


def test_kiosk_terminal_shows_every_class(model, tmp_path):
    from kiosk_helpers import copy_images

    copy_images(sorted((model / "samples").glob("*.jpg"))[:2], tmp_path)
    result = run_cli("kiosk", "--source", f"folder:{tmp_path}", "--model", model,
                     "--interval", 0, "--count", 2, "--no-server")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    header = next(line for line in lines if line.startswith("time"))
    assert header.split()[:6] == ["time", "frame", "verdict", "P(covid)", "P(normal)",
                                  "P(pneumon)"]
    rows = [line.split() for line in lines if re.match(r"\d\d:\d\d:\d\d ", line)]
    assert len(rows) == 2 and all(row[2] in LABELS and len(row) == 9 for row in rows)
