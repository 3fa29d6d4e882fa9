"""The previous release's two-class model (releases/0.2.0: one sigmoid output, no "output_kind" in
its card) keeps working unchanged now that the toolkit handles N classes: the same verdicts
and probabilities as its card's reference outputs, the same table and footer, and JSON, CSV
and the API that add the per-class probabilities (normal + covid) without changing anything
that was there."""

from __future__ import annotations

import csv
import json
import re

import pytest

from conftest import RELEASE_0_2_0, cli_runner
from covid_edge.cli import main
from covid_edge.edge_runtime.calibration import TemperatureScaling
from covid_edge.edge_runtime.classify_cli import CSV_FIELDS

RELEASED = RELEASE_0_2_0
CARD = json.loads((RELEASED / "model_card.json").read_text())
SAMPLES = sorted((RELEASED / "samples").glob("*.jpg"))
REFERENCE = {entry["file"].split("/")[-1]: entry
             for entry in CARD["reference_outputs"]["images"]}


def run_cli(*args):
    return cli_runner().invoke(main, [str(arg) for arg in args])


def test_the_release_is_what_this_test_is_about():
    assert CARD["version"] == "0.2.0" and "output_kind" not in CARD
    assert CARD["labels"] == ["normal", "covid"] and len(SAMPLES) == len(REFERENCE) == 6


@pytest.fixture(scope="module")
def document():
    result = run_cli("classify", *SAMPLES, "--model", RELEASED, "--json", "--threads", 1)
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def test_verdicts_and_probabilities_are_the_cards(document):
    scaling = TemperatureScaling.from_card(CARD)
    for entry in document["results"]:
        reference = REFERENCE[entry["path"].split("/")[-1]]
        assert entry["verdict"] == reference["verdict"]
        assert entry["raw_probability"] == pytest.approx(reference["probability"], abs=2 / 256)
        assert entry["probability"] == pytest.approx(scaling.apply(entry["raw_probability"]))
        # Added, not changed: every class's probability, normal and covid.
        assert list(entry["probabilities"]) == ["normal", "covid"]
        assert entry["probabilities"]["covid"] == entry["probability"]
        assert entry["probabilities"]["normal"] == pytest.approx(1 - entry["probability"])
        assert entry["raw_probabilities"]["covid"] == entry["raw_probability"]
    summary = document["summary"]
    assert (summary["covid"], summary["normal"], summary["classified"]) == (3, 3, 6)
    assert document["positive_label"] == "covid"
    assert document["model"]["classes"]["output_kind"] == "sigmoid"


def test_table_and_footer_read_as_before(document):
    result = run_cli("classify", *SAMPLES, "--model", RELEASED, "--threads", 1)
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0] == "verdict   P(covid) threshold    latency  image"
    threshold = document["threshold"]
    for line, entry in zip(lines[1:7], document["results"]):
        shown = f"{entry['probability']:.2f}"
        if entry["raw_probability"] >= 127.5 / 128 or shown == "1.00":
            shown = ">0.99"  # saturated, or calibrated to what would read as certain
        elif shown == "0.00":
            shown = "<0.01"
        # The old format: verdict:<9, probability:>8, threshold:>9.3f, latency:>7.1f ms, path.
        assert line[:28] == f"{entry['verdict']:<9} {shown:>8} {threshold:>9.3f}"
        assert re.fullmatch(r" +\d+\.\d ms  " + re.escape(entry["path"]), line[28:])
    assert lines[7] == ("6 classified: 3 covid, 3 normal; 0 refused; 0 unreadable. covid when "
                        f"P(covid) >= {threshold:.3f}.")


def test_csv_adds_a_column_per_class(document, tmp_path):
    out = tmp_path / "results.csv"
    assert run_cli("classify", *SAMPLES, "--model", RELEASED, "--csv", out, "--threads", 1).exit_code == 0
    with open(out, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
    assert tuple(reader.fieldnames) == CSV_FIELDS + ("p_normal", "p_covid")
    for row, entry in zip(rows, document["results"]):
        assert row["verdict"] == entry["verdict"]
        assert float(row["probability"]) == pytest.approx(entry["probability"])
        assert float(row["p_covid"]) == pytest.approx(entry["probability"])


def test_api_answers_as_before_plus_probabilities(document):
    pytest.importorskip("fastapi", reason="needs the serve extra")
    from fastapi.testclient import TestClient

    from covid_edge.edge_runtime.classifier import Classifier
    from covid_edge.kiosk.inference import SharedClassifier
    from covid_edge.kiosk.server import create_app

    app = create_app(SharedClassifier(Classifier.load(RELEASED, num_threads=1)))
    with TestClient(app, client=("127.0.0.1", 50000)) as client:
        model = client.get("/api/v1/model").json()
        assert model["labels"] == ["normal", "covid"] and model["output_kind"] == "sigmoid"
        for path, entry in zip(SAMPLES, document["results"]):
            body = client.post("/api/v1/classify",
                               files={"file": (path.name, path.read_bytes(), "image/jpeg")}
                               ).json()
            assert body["verdict"] == entry["verdict"]
            assert body["probability"] == pytest.approx(entry["probability"])
            assert body["probabilities"] == pytest.approx(entry["probabilities"])
        page = client.post("/classify", files={"file": (SAMPLES[0].name,
                                                        SAMPLES[0].read_bytes(),
                                                        "image/jpeg")}).text
        assert 'id="classes"' not in page  # two classes: the one P(covid) bar, as before
        assert "Red: pushed the model toward covid · blue: toward normal" in page


def test_explain_still_maps_covid_against_normal():
    from covid_edge.edge_runtime.classifier import Classifier
    from covid_edge.edge_runtime.explain import explain_pixels
    from covid_edge.preprocess import load_pixels

    classifier = Classifier.load(RELEASED, num_threads=1)
    normal = next(path for path in SAMPLES if path.name.startswith("normal"))
    explanation = explain_pixels(classifier, load_pixels(normal, classifier.spec), patch=56,
                                 stride=56)
    assert explanation.verdict == "normal"
    assert (explanation.target, explanation.against) == ("covid", "normal")
    assert explanation.score == "log-odds"
