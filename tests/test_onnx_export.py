"""`covid-edge export-onnx` and running the export: the real int8 model through tf2onnx, run by
ONNX Runtime (OpenVINO too when installed), checked against the TFLite model."""

from __future__ import annotations

import json
import shutil

import pytest

pytest.importorskip("onnxruntime", reason="needs the onnx extra")
pytest.importorskip("tf2onnx", reason="needs the onnx extra")

from conftest import CXR, cli_runner  # noqa: E402
from covid_edge.cli import main  # noqa: E402
from covid_edge.edge_runtime.classifier import Classifier, ModelError  # noqa: E402
from covid_edge.edge_runtime.onnx_backends import AGREEMENT_MIN, sidecar_path  # noqa: E402


@pytest.fixture(scope="module")
def export(models_dir, tmp_path_factory):
    """The released int8 model exported beside a copy of it, checked on 40 test X-rays."""
    folder = tmp_path_factory.mktemp("onnx")
    card = json.loads((models_dir / "model_card.json").read_text())
    tflite = folder / card["variants"]["int8"]["file"]
    shutil.copy(models_dir / tflite.name, tflite)
    for name in ("model_card.json", "ood_stats.npz"):
        shutil.copy(models_dir / name, folder / name)
    (folder / "training").mkdir()
    shutil.copy(models_dir / "training" / "split.csv", folder / "training" / "split.csv")
    result = cli_runner().invoke(main, ["export-onnx", str(tflite), "--data", str(CXR),
                                        "--limit", "40", "--json"])
    return folder, tflite.with_suffix(".onnx"), result


def test_export_is_checked_against_the_tflite_model(export):
    _, onnx, result = export
    assert onnx.is_file() and sidecar_path(onnx).is_file()
    sidecar = json.loads(sidecar_path(onnx).read_text())
    record = sidecar["agreement"]["runtimes"]["onnxruntime"]
    assert record["images"] == 40
    assert sidecar["inputs"][0]["dtype"] == "int8"
    assert {o["name"] for o in sidecar["outputs"]} and sidecar["source"].endswith(".tflite")
    expected_exit = 0 if all(r["verdict_agreement"] >= AGREEMENT_MIN
                             for r in sidecar["agreement"]["runtimes"].values()) else 1
    assert result.exit_code == expected_exit, result.output


def test_export_classifies_as_the_tflite_model(export, some_xrays):
    folder, onnx, _ = export
    sidecar = json.loads(sidecar_path(onnx).read_text())
    if sidecar["agreement"]["runtimes"]["onnxruntime"]["verdict_agreement"] < AGREEMENT_MIN:
        pytest.skip("onnxruntime disagrees on the check set: the export is refused (tested below)")
    tflite = Classifier.load(folder, num_threads=1)
    exported = Classifier.load(onnx, runtime="onnxruntime", num_threads=1)
    assert "onnxruntime" in exported.runtime_label and exported.variant == "int8"
    for path in some_xrays:
        a, b = tflite.classify_file(path), exported.classify_file(path)
        assert b.ok and abs(a.probability - b.probability) <= 0.1, path
        assert b.verdict == a.verdict or abs(a.probability - a.threshold) < 0.1, path


def test_bench_latency_times_the_export_beside_the_tflite_models(export):
    """One table: the export on each installed backend next to the int8 TFLite model, with
    the ratio to it, and a refused export marked as refused (timed, never silently)."""
    from covid_edge.benchmarks.report import terminal_table

    folder, onnx, _ = export
    result = cli_runner().invoke(main, ["bench", "latency", str(folder), "--threads", "1",
                                        "--xnnpack", "on", "--runs", "3", "--warmup", "1",
                                        "--no-end-to-end", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    rows = {(r["model"], r["runtime"]): r for r in report["results"]}
    exported = rows[("int8 ONNX", "onnxruntime")]
    assert exported["status"] == "ok" and exported["format"] == "onnx"
    assert exported["path"] == str(onnx) and exported["variant"] == "int8"
    agreement = json.loads(sidecar_path(onnx).read_text())["agreement"]["runtimes"][
        "onnxruntime"]["verdict_agreement"]
    assert exported["agreement"] == agreement
    assert (exported["refused"] is None) == (agreement >= AGREEMENT_MIN)
    int8 = rows[("int8", "ai_edge_litert")]
    table = terminal_table(report)
    header, = [line for line in table.splitlines() if line.startswith("model ")]
    assert "/ int8" in header
    onnx_line, = [line for line in table.splitlines()
                  if line.startswith("int8 ONNX") and "onnxruntime" in line]
    assert ("(refused)" in onnx_line) == (exported["refused"] is not None)
    ratio = exported["inference"]["p50_ms"] / int8["inference"]["p50_ms"]
    assert f"{ratio:.2f}" in onnx_line.split()
    assert ("REFUSED for use" in table) == (exported["refused"] is not None)


def test_unchecked_or_disagreeing_export_is_refused(export, tmp_path):
    folder, onnx, _ = export
    sidecar = json.loads(sidecar_path(onnx).read_text())
    for agreement, words in ((None, "not checked"), (0.9, "90.00%")):
        sidecar["agreement"] = None if agreement is None else {"runtimes": {
            "onnxruntime": {"images": 10, "verdict_agreement": agreement}}}
        sidecar_path(onnx).write_text(json.dumps(sidecar))
        with pytest.raises(ModelError, match=words):
            Classifier.load(onnx, runtime="onnxruntime")
    with pytest.raises(ModelError, match="does not run ONNX"):
        Classifier.load(onnx, runtime="ai_edge_litert")
    sidecar_path(onnx).unlink()
    with pytest.raises(ModelError, match="export-onnx"):
        Classifier.load(onnx, runtime="onnxruntime")
