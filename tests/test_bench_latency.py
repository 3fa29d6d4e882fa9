"""`covid-edge bench latency`: the command runs real models on the real runtime, and its
numbers and reports are consistent. No timing thresholds here: speed is for the report to show.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import (EDGETPU_REFERENCE, REFERENCE, cli_runner, models_dir_under_test,
                      shipped_variants, write_report_without_matplotlib)
from covid_edge.benchmarks import device_info, latency
from covid_edge.benchmarks.report import JSON_NAME, MARKDOWN_NAME, PLOTS_DIR
from covid_edge.cli import main

REFERENCE_MODEL = REFERENCE / "mobilenet_v2_1.0_224_quant.tflite"
PHOTOS = REFERENCE / "photos"
FAST = ["--runs", "5", "--warmup", "1", "--threads", "1"]


def bench(*args):
    return cli_runner().invoke(main, ["bench", "latency", *map(str, args)])


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    """The reference model alone, XNNPACK on and off, 1 thread, with reports written."""
    if not REFERENCE_MODEL.is_file():
        pytest.skip(f"reference model not found at {REFERENCE_MODEL}")
    out = tmp_path_factory.mktemp("bench") / "report"
    result = bench(REFERENCE_MODEL, "--images", PHOTOS, *FAST, "--out", out, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout), out


@pytest.fixture(scope="module")
def our_run(models_dir, tmp_path_factory):
    """Every variant of our model against the reference, as the README tells users to run it."""
    out = tmp_path_factory.mktemp("bench") / "ours"
    result = bench(models_dir, "--reference", REFERENCE_MODEL, *FAST, "--xnnpack", "on",
                   "--out", out, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout), out


def assert_consistent(stats: dict, runs: int):
    assert stats["n"] == runs == len(stats["samples_ms"])
    assert 0 < stats["min_ms"] <= stats["p50_ms"] <= stats["p90_ms"] <= stats["p99_ms"] \
        <= stats["max_ms"]
    assert stats["min_ms"] <= stats["mean_ms"] <= stats["max_ms"]
    assert stats["std_ms"] >= 0


def test_reference_numbers_are_consistent(reference_run):
    report, _ = reference_run
    results = report["results"]
    assert {(r["xnnpack"], r["threads"]) for r in results} == {(True, 1), (False, 1)}
    for r in results:
        assert r["status"] == "ok", r
        assert_consistent(r["inference"], 5)
        assert_consistent(r["end_to_end"], 5)
        assert r["load_ms"] > 0 and r["first_invoke_ms"] > 0
        assert r["memory"]["peak_rss_mb"] >= r["memory"]["baseline_rss_mb"] > 0
        assert r["input_shape"] == [1, 224, 224, 3] and r["input_dtype"] == "uint8"
        assert r["input"].startswith(str(PHOTOS))  # a real image, not noise
        assert r["tensorflow_imported"] is False


def test_reference_run_records_the_device(reference_run):
    report, _ = reference_run
    device = report["device"]
    assert device["cores"] >= 1 and device["usable_cores"] >= 1
    assert device["python"] and device["os"] and device["cpu_model"]
    assert "ai-edge-litert" in device["packages"]
    assert report["state_before"].keys() == report["state_after"].keys()
    assert report["settings"]["runs"] == 5 and report["settings"]["threads"] == [1]
    assert report["settings"]["command"].startswith("covid-edge bench latency ")


def test_report_files_exist_and_parse(reference_run):
    report, out = reference_run
    assert json.loads((out / JSON_NAME).read_text()) == report
    text = (out / MARKDOWN_NAME).read_text()
    assert "| model | runtime | target | threads |" in text
    assert text.count(f"| {REFERENCE_MODEL.stem} | ai_edge_litert |") == 2
    assert "not a medical device" in text
    plots = sorted((out / PLOTS_DIR).glob("*.png"))
    assert {p.name for p in plots} == {"latency_inference_ai_edge_litert.png",
                                       "latency_end_to_end_ai_edge_litert.png"}
    for plot in plots:
        assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({PLOTS_DIR}/{plot.name})" in text


def test_terminal_table_without_json(reference_run):
    # Reuse no files: the table goes to stdout, progress to stderr.
    result = bench(REFERENCE_MODEL, *FAST, "--xnnpack", "on", "--no-end-to-end",
                   "--images", PHOTOS)
    assert result.exit_code == 0, result.output
    header, = [line for line in result.stdout.splitlines() if line.startswith("model ")]
    assert "p50 ms" in header and "p99 ms" not in header and "peak MB" in header
    assert any(line.startswith(REFERENCE_MODEL.stem) for line in result.stdout.splitlines())
    assert "not a medical device" in result.stdout
    assert max(len(line) for line in result.stdout.splitlines()) <= 100
    wide = bench(REFERENCE_MODEL, *FAST, "--xnnpack", "on", "--no-end-to-end", "--images",
                 PHOTOS, "--wide")
    wide_header, = [line for line in wide.stdout.splitlines() if line.startswith("model ")]
    assert "p99 ms" in wide_header and "std ms" in wide_header


def test_refuses_to_overwrite_a_report(reference_run):
    _, out = reference_run
    before = (out / JSON_NAME).read_bytes()
    result = bench(REFERENCE_MODEL, *FAST, "--out", out)
    # A usage error, as `explain`'s "output exists": exit 2, telling the user about --force.
    assert result.exit_code == 2, result.output + result.stderr
    assert "pass --force to overwrite" in result.stderr
    assert "measuring" not in result.stderr  # refused before the first measurement
    assert (out / JSON_NAME).read_bytes() == before


@pytest.mark.parametrize("where", ["below-a-file", "proc"])
def test_an_out_that_cannot_be_written_fails_before_measuring(tmp_path, where):
    if where == "proc":
        out = Path("/proc/covid-edge-latency-out")  # even root cannot create a folder there
        if not out.parent.is_dir():
            pytest.skip("no /proc here")
    else:
        (tmp_path / "a-file").write_text("not a folder")
        out = tmp_path / "a-file" / "out"
    result = bench(REFERENCE_MODEL, *FAST, "--xnnpack", "on", "--out", out)
    assert result.exit_code == 2, result.output + result.stderr
    assert f"--out {out}: cannot write the report there" in result.stderr
    assert "measuring" not in result.stderr and "could not write" not in result.stderr
    assert result.stdout == ""  # no table: nothing was measured


def test_the_writability_probe_leaves_no_folder_behind(tmp_path):
    """--out is tried before the run; a run that then fails to start (an empty --images
    folder) leaves neither the folder nor its missing parents."""
    (tmp_path / "no-images").mkdir()
    out = tmp_path / "new" / "deeper" / "out"
    result = bench(REFERENCE_MODEL, *FAST, "--images", tmp_path / "no-images", "--out", out)
    assert result.exit_code == 1, result.output + result.stderr
    assert "no images" in result.stderr
    assert not (tmp_path / "new").exists()


def test_without_matplotlib_the_report_says_how_to_get_plots(reference_run, tmp_path):
    report, _ = reference_run
    printed = write_report_without_matplotlib("covid_edge.benchmarks.report", report,
                                              tmp_path / "out")
    assert "pip install 'matplotlib>=3.8'" in printed
    assert "pip install 'matplotlib>=3.8'" in (tmp_path / "out" / MARKDOWN_NAME).read_text()
    assert json.loads((tmp_path / "out" / JSON_NAME).read_text()) == report
    assert not list((tmp_path / "out").rglob("*.png"))


def test_our_models_against_the_reference(our_run, model_card):
    report, out = our_run
    ok = [r for r in report["results"] if r["status"] == "ok"]
    measured = {r["model"] for r in ok}
    # The lung model ships beside the classifier (models/lungs) and runs on every image.
    lungs = {"lungs"} if (models_dir_under_test() / "lungs").is_dir() else set()
    # An ONNX export written beside the models (export-onnx; not shipped) is timed on each
    # installed backend.
    from covid_edge.benchmarks.runner import onnx_backends
    exports = ({m["label"] for m in report["models"] if m["role"] == "onnx"}
               if onnx_backends() else set())
    assert shipped_variants(models_dir_under_test(), model_card) | {"reference"} | lungs \
        | exports == measured
    for r in ok:
        assert_consistent(r["inference"], 5)
        assert_consistent(r["end_to_end"], 5)  # the card's samples/ are used by default
        assert r["tensorflow_imported"] is False
    int8, = [r for r in ok if r["model"] == "int8"]
    assert int8["input_dtype"] == "int8" and int8["variant"] == "int8"
    comparison, = report["comparisons"]
    assert comparison["threads"] == 1 and comparison["xnnpack"] is True
    assert comparison["reference"]["ratio"] == pytest.approx(
        int8["inference"]["p50_ms"] / comparison["reference"]["p50_ms"])
    if "float32" in measured:
        assert comparison["float32"]["speedup"] > 0
    if lungs:
        lung, = [r for r in ok if r["model"] == "lungs"]
        assert comparison["lungs"]["ratio"] == pytest.approx(
            lung["inference"]["p50_ms"] / int8["inference"]["p50_ms"])
    goal, = report["goals"]
    assert goal["reference_goal_met"] in (True, False, None)
    reference, = [r for r in ok if r["model"] == "reference"]
    assert goal["int8_over_reference_of_min"] == pytest.approx(
        int8["inference"]["min_ms"] / reference["inference"]["min_ms"])
    text = (out / MARKDOWN_NAME).read_text()
    assert "## int8 against the reference and float32" in text
    assert "Goal check: int8, ai_edge_litert, XNNPACK, 1 thread:" in text
    # beside each p50 ratio, the same ratio of the fastest runs
    assert f"(<= 1.10: {'met' if goal['reference_goal_met'] else 'MISSED'}; fastest runs " \
        f"{goal['int8_over_reference_of_min']:.2f})" in text


def test_an_edge_tpu_model_is_skipped_on_the_cpu():
    if not EDGETPU_REFERENCE.is_file():
        pytest.skip("Edge TPU reference model not found")
    result = bench(EDGETPU_REFERENCE, "--runs", "2", "--warmup", "0", "--threads", "1",
                   "--xnnpack", "on", "--json")
    assert result.exit_code == 0, result.output
    r, = json.loads(result.stdout)["results"]
    assert r["status"] == "skipped"
    assert "--device edgetpu" in r["reason"]


def test_asking_for_an_absent_edge_tpu_is_a_clear_error():
    result = bench(REFERENCE_MODEL, *FAST, "--device", "edgetpu")
    if result.exit_code == 0:
        pytest.skip("an Edge TPU is attached to this machine")
    assert result.exit_code == 1
    assert "Edge TPU" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("args, message", [
    (["--runtime", "bogus"], "unknown runtime 'bogus'"),
    (["--runtime", "ai_edge_litert,bogus"], "unknown runtime 'bogus'"),
    (["--threads", "3-1"], "3-1 is a reversed range: write the lower count first (1-3)"),
    (["--threads", "1,4-2"], "4-2 is a reversed range"),
])
def test_bad_options_are_usage_errors(args, message):
    """Exit 2, as the help says for bad options, before anything is measured."""
    result = bench(REFERENCE_MODEL, *FAST, *args)
    assert result.exit_code == 2, result.output + result.stderr
    assert message in result.stderr and "Traceback" not in result.output
    assert "thread counts must be 1 or more" not in result.stderr
    assert "measuring" not in result.stderr


def test_a_named_file_is_measured_alone(models_dir, model_card):
    """Naming one file measures that file: the lung model and ONNX exports of its folder
    come with the folder (or the default), not with one of its files."""
    int8 = models_dir / model_card["variants"]["int8"]["file"]
    result = bench(int8, *FAST, "--xnnpack", "on", "--no-end-to-end", "--runs", "2",
                   "--json")
    assert result.exit_code == 0, result.output + result.stderr
    report = json.loads(result.stdout)
    assert [m["path"] for m in report["models"]] == [str(int8)]
    assert {r["model"] for r in report["results"]} == {"int8"}


def test_a_named_lung_model_is_paired_with_the_named_classifier(models_dir, model_card):
    """The lung model beside the classifier, named with it, is timed against it: the ratio
    and goal of a folder's run, for just these two files."""
    lungs = models_dir / "lungs" / "lungs-int8.tflite"
    if not lungs.is_file():
        pytest.skip("no lung model beside the classifier")
    int8 = models_dir / model_card["variants"]["int8"]["file"]
    result = bench(int8, lungs, *FAST, "--xnnpack", "on", "--no-end-to-end", "--runs", "2",
                   "--json")
    assert result.exit_code == 0, result.output + result.stderr
    report = json.loads(result.stdout)
    assert [(m["label"], m["role"]) for m in report["models"]] == [("int8", "ours"),
                                                                    ("lungs", "lungs")]
    goal, = report["goals"]
    assert goal["lungs_over_int8"] > 0


@pytest.mark.parametrize("args, message", [
    (["--threads", "0"], "thread counts"),
    (["--threads", "one"], "thread counts"),
    (["--runtime", "onnx"], "unknown runtime"),
    (["--runs", "1"], "--runs"),
])
def test_bad_options_say_what_is_wrong(args, message):
    result = bench(REFERENCE_MODEL, *args)
    assert result.exit_code in (1, 2)
    assert message in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("where", ["named", "reference", "in a folder"])
def test_a_file_that_is_no_tflite_model_is_refused_before_measuring(tmp_path, where):
    """A picture or a Keras file named like a model fails at once with exit 3, as for classify,
    instead of every configuration failing on it in turn (exit 1 with a count)."""
    fake = tmp_path / "model.tflite"
    fake.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(100))
    args = {"named": [fake], "reference": [REFERENCE_MODEL, "--reference", fake],
            "in a folder": [tmp_path]}[where]
    result = bench(*args, *FAST)
    assert result.exit_code == 3, result.output
    assert "not a TensorFlow Lite model" in result.stderr and "Traceback" not in result.output
    assert "configuration" not in result.stderr  # nothing was started
    document = json.loads(bench(*args, *FAST, "--json").stdout)
    assert document["exit_code"] == 3 and "not a TensorFlow Lite model" in document["error"]


def test_a_runtime_that_is_not_installed():
    from covid_edge.benchmarks.runner import installed_runtimes
    if "tflite_runtime" in installed_runtimes():
        pytest.skip("tflite_runtime is installed here")
    result = bench(REFERENCE_MODEL, *FAST, "--runtime", "tflite_runtime")
    assert result.exit_code == 1
    assert "pip install tflite-runtime" in result.output


def test_bench_group_lists_latency():
    result = cli_runner().invoke(main, ["bench", "--help"])
    assert result.exit_code == 0
    assert "latency" in result.output


# -- pure parts -----------------------------------------------------------------------------

def test_summarize_orders_percentiles():
    stats = latency.summarize(range(1, 101))
    assert stats["p50_ms"] == pytest.approx(50.5)
    assert stats["p90_ms"] == pytest.approx(90.1)
    assert stats["p99_ms"] == pytest.approx(99.01)
    assert stats["mean_ms"] == pytest.approx(50.5)
    assert stats["min_ms"] == 1 and stats["max_ms"] == 100
    with pytest.raises(ValueError):
        latency.summarize([])


def _result(model, p50, shape=224, threads=1, xnnpack=True):
    return {"model": model, "runtime": "ai_edge_litert", "target": "cpu", "xnnpack": xnnpack,
            "threads": threads, "status": "ok", "input_shape": [1, shape, shape, 3],
            "inference": {"p50_ms": p50, "min_ms": p50 / 2}}


MODELS = [{"label": "int8", "role": "ours", "variant": "int8", "card_dir": "m"},
          {"label": "float32", "role": "ours", "variant": "float32", "card_dir": "m"},
          {"label": "reference", "role": "reference", "variant": None, "card_dir": None}]


def test_compare_judges_goals_at_one_thread_only():
    results = [_result("int8", 3.3), _result("reference", 3.0), _result("float32", 9.0),
               _result("int8", 5.0, threads=2), _result("reference", 2.0, threads=2),
               _result("float32", 6.0, threads=2)]
    one, two = latency.compare(results, MODELS)
    assert one["reference"]["ratio"] == pytest.approx(1.1)
    assert one["reference"]["met"] is True
    assert one["float32"]["speedup"] == pytest.approx(9.0 / 3.3) and one["float32"]["met"]
    assert two["reference"]["ratio"] == pytest.approx(2.5) and two["reference"]["met"] is None
    goal, = latency.goal_summary([one, two])
    assert goal["reference_goal_met"] is True and goal["float32_goal_met"] is True
    assert goal["xnnpack"] is True


def test_goals_are_judged_with_xnnpack_on():
    results = [_result("int8", 3.3, xnnpack=False), _result("reference", 3.0, xnnpack=False)]
    comparison, = latency.compare(results, MODELS)
    assert comparison["reference"]["met"] is True  # shown in the table...
    assert latency.goal_summary([comparison]) == []  # ...but not the goal's configuration


def test_compare_flags_different_input_sizes():
    results = [_result("int8", 1.0, shape=96), _result("reference", 3.0)]
    comparison, = latency.compare(results, MODELS)
    assert comparison["reference"]["comparable"] is False
    assert comparison["reference"]["met"] is None
    assert "float32" not in comparison


# -- device information, from files written as a Raspberry Pi has them -------------------------

PI_CPUINFO = """processor\t: 0
BogoMIPS\t: 108.00
Features\t: fp asimd evtstrm crc32 cpuid
CPU implementer\t: 0x41

Hardware\t: BCM2835
Revision\t: c03114
Model\t\t: Raspberry Pi 4 Model B Rev 1.4
"""


def test_pi_board_temperature_and_cpu(tmp_path):
    (tmp_path / "model").write_bytes(b"Raspberry Pi 4 Model B Rev 1.4\x00")
    (tmp_path / "temp").write_text("48312\n")
    (tmp_path / "cpuinfo").write_text(PI_CPUINFO)
    assert device_info.board_model(tmp_path / "model") == "Raspberry Pi 4 Model B Rev 1.4"
    assert device_info.cpu_temperature(tmp_path / "temp") == 48.3
    assert device_info.cpu_model(tmp_path / "cpuinfo") == "BCM2835"


def test_absent_probes_are_none(tmp_path):
    assert device_info.board_model(tmp_path / "nothing") is None
    assert device_info.cpu_temperature(tmp_path / "nothing") is None
    assert device_info.cpu_frequency(tmp_path / "nothing") is None
    assert device_info.throttling("no-such-vcgencmd-here") is None


def test_throttling_word_is_decoded():
    assert device_info.parse_throttled("throttled=0x50005\n") == 0x50005
    assert device_info.parse_throttled("error") is None
    conditions = device_info.decode_throttled(0x50005)
    assert conditions == ["under-voltage now", "throttled now", "under-voltage has occurred",
                          "throttling has occurred"]
    assert device_info.decode_throttled(0) == []


def test_warnings_for_throttling_heat_and_governor():
    calm = {"throttling": {"raw": "0x0", "conditions": []}, "cpu_temperature_c": 50.0,
            "cpu_frequency": {"governor": "ondemand"}, "load_average": [0.0, 0.0, 0.0]}
    assert device_info.state_warnings(calm, calm) == []
    hot = {**calm, "cpu_temperature_c": 82.5,
           "throttling": {"raw": "0x50005", "conditions": device_info.decode_throttled(0x50005)}}
    warnings = device_info.state_warnings(calm, hot)
    assert any("under-voltage now" in w and "power supply" in w for w in warnings)
    assert any("82.5" in w for w in warnings)
    slow = {**calm, "cpu_frequency": {"governor": "powersave"}}
    assert any("powersave" in w for w in device_info.state_warnings(slow, slow))


def test_rewriting_a_latency_report_keeps_a_drift_report_beside_it(tmp_path):
    """`bench drift` writes its plots to the same plots/ folder: --force replaces only
    latency's own files."""
    drift_plot = tmp_path / "plots" / "drift_variants.png"
    drift_plot.parent.mkdir()
    drift_plot.write_bytes(b"drift")
    for _ in range(2):  # the second run overwrites the first with --force
        result = bench(REFERENCE / "mobilenet_v2_1.0_224_quant.tflite", "--runs", "2",
                       "--warmup", "0", "--threads", "1", "--xnnpack", "on",
                       "--no-end-to-end", "--out", str(tmp_path), "--force")
        assert result.exit_code == 0, result.output
    assert drift_plot.read_bytes() == b"drift"
    assert (tmp_path / "latency.json").is_file()
