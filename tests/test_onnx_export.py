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
from covid_edge.edge_runtime.onnx_backends import (AGREEMENT_MIN, OnnxBackendError,  # noqa: E402
                                                   check_agreement, kernel_host, sidecar_path)


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


def test_onnxruntime_workers_do_not_spin_between_images(export):
    """Spinning workers take the core that decoding and the guard need between images."""
    from covid_edge.edge_runtime.onnx_backends import OnnxInterpreter

    _, onnx, _ = export
    session = OnnxInterpreter(str(onnx), "onnxruntime", num_threads=2)._session
    options = session.get_session_options()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"


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
    # The table's note names every refused backend (OpenVINO, where installed, may be one).
    refused = [r for r in report["results"] if r.get("format") == "onnx" and r.get("refused")]
    assert ("REFUSED for use" in table) == bool(refused)


def test_agreement_counts_only_on_a_host_with_the_same_kernels(export):
    """The backends pick int8 kernels by instruction set and do not compute alike on every
    one (0.3.0's export under ONNX Runtime: 94.50% of verdicts on an AVX2 host, 100% on an
    AVX-512 VNNI one): an agreement measured elsewhere is not trusted here."""
    _, onnx, _ = export
    sidecar = json.loads(sidecar_path(onnx).read_text())
    here = kernel_host()
    assert sidecar["agreement"]["host"] == here and here["isa"] and here["int8_kernels"]
    sidecar["agreement"]["runtimes"]["onnxruntime"]["verdict_agreement"] = 1.0
    assert check_agreement(sidecar, "onnxruntime") == 1.0
    other = dict(here, int8_kernels="AVX2, no VNNI (int8 multiplied in 16-bit lanes)"
                 if here["int8_kernels"] != "AVX2, no VNNI (int8 multiplied in 16-bit lanes)"
                 else "AVX-512 VNNI")
    with pytest.raises(OnnxBackendError, match="export-onnx --force` on this host"):
        check_agreement(sidecar, "onnxruntime", host=other)
    del sidecar["agreement"]["host"]
    with pytest.raises(OnnxBackendError, match="unrecorded host"):
        check_agreement(sidecar, "onnxruntime")


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

