"""Running on a Coral Edge TPU, on a machine without one: `--device cpu|edgetpu|auto`, the
errors Coral users hit, the compiled model's runtime version, and `convert --edgetpu`'s step.

Real files throughout: the Edge-TPU-compiled reference model from ../shared (its graph is one
edgetpu-custom-op), our exported int8 model, real LiteRT. Where the test needs libedgetpu and
this machine has none, it builds tests/data/libedgetpu_stub.c: libedgetpu's C interface with
no usable Edge TPU behind it, loaded through the same LiteRT delegate API as the real library.
What only a real Coral can show (inference on the Edge TPU, its latency) is not tested here.
"""

from __future__ import annotations

import ctypes.util
import json
import platform
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import EDGETPU_REFERENCE, REPO_ROOT, float_variant

from covid_edge.cli import main
from covid_edge.edge_runtime.classifier import Classifier, ModelError
from covid_edge.edge_runtime.devices import (LIBRARY_ENV, DeviceError, explain_interpreter_failure,
                                             load_edgetpu_delegate, open_edgetpu_library,
                                             parse_runtime_version, resolve_device)
from covid_edge.edge_runtime.interpreter import select_runtime
from covid_edge.edgetpu.compile import (EdgeTpuCompileError, compiled_name, compiler_version,
                                        describe_compiled, prepare_for_edgetpu)
from covid_edge.edgetpu.package import read_compiled_model
from covid_edge.model_card import card_for_model, load_card, variant_entry, write_json

EXIT_OK, EXIT_MODEL = 0, 3
STUB_SOURCE = REPO_ROOT / "tests" / "data" / "libedgetpu_stub.c"
MISSING_LIBRARY = "/nonexistent/covid-edge-test/libedgetpu.so.1"
# libedgetpu's own message when a package needs a newer runtime, as users report it
# (jsk-ros-pkg/coral_usb_ros#78, compiler 16.0 model on runtime 13).
REAL_RUNTIME_MISMATCH = ("Failed to prepare for TPU. Failed precondition: Package requires "
                         "runtime version (14), which is newer than this runtime version (13)."
                         "Node number 0 (edgetpu-custom-op) failed to prepare.")
# pycoral's get_runtime_version() on a Coral device (google-coral/edgetpu#589).
REAL_VERSION_TEXT = ("BuildLabel(COMPILER=6.3.0 20170516,DATE=redacted,TIME=redacted), "
                     "RuntimeVersion(14)")


@pytest.fixture(scope="module", autouse=True)
def reference_file():
    if not EDGETPU_REFERENCE.is_file():
        pytest.skip(f"Edge TPU reference model not found at {EDGETPU_REFERENCE}")


@pytest.fixture(autouse=True)
def no_real_edgetpu_here(monkeypatch):
    """The tests decide which library is loaded; a real Coral on the test machine would
    otherwise change what they see."""
    monkeypatch.setenv(LIBRARY_ENV, MISSING_LIBRARY)


def run_cli(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output
    return result


@pytest.fixture(scope="session")
def stub_library(tmp_path_factory):
    """Build the libedgetpu stand-in for (runtime version, devices it enumerates)."""
    compiler = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if compiler is None or platform.system() != "Linux":
        pytest.skip("needs a C compiler on Linux to build the libedgetpu stand-in")
    folder = tmp_path_factory.mktemp("libedgetpu")
    built = {}

    def build(runtime_version: int = 14, devices: int = 0) -> str:
        key = (runtime_version, devices)
        if key not in built:
            path = folder / f"libedgetpu_stub_{runtime_version}_{devices}.so"
            subprocess.run([compiler, "-shared", "-fPIC", "-O1",
                            f"-DRUNTIME_VERSION={runtime_version}", f"-DDEVICES={devices}",
                            "-o", str(path), str(STUB_SOURCE)], check=True, timeout=120)
            built[key] = str(path)
        return built[key]

    return build


@pytest.fixture
def paired(models_dir, model_card, tmp_path):
    """Our int8 model, its card, and an Edge-TPU-compiled file beside it under the card's
    `devices` map (the compiled reference stands in for our compiled model: it is never run)."""
    int8 = model_card["variants"]["int8"]["file"]
    shutil.copy(models_dir / int8, tmp_path / int8)
    stats = (model_card.get("ood_guard") or {}).get("stats_file")
    if stats:  # the guard's statistics travel with the model they were fitted on
        shutil.copy(models_dir / stats, tmp_path / stats)
    card = json.loads(json.dumps(model_card))
    card["devices"] = {"cpu": int8, "edgetpu": "coral-build.tflite"}
    write_json(card, tmp_path)
    shutil.copy(EDGETPU_REFERENCE, tmp_path / "coral-build.tflite")
    return tmp_path, tmp_path / int8, tmp_path / "coral-build.tflite"


# -- what a compiled file says about itself ---------------------------------------------------

def test_the_compiled_reference_declares_its_runtime_and_types():
    compiled = read_compiled_model(EDGETPU_REFERENCE)
    assert len(compiled.packages) == 1 and compiled.packages[0].operator == 0
    assert compiled.min_runtime_version == 12
    assert compiled.input_dtypes == ("uint8",) and compiled.output_dtypes == ("uint8",)


def test_check_edgetpu_shows_the_runtime_a_compiled_file_needs():
    assert "Needs Edge TPU runtime 12 or newer" in run_cli("check-edgetpu",
                                                           EDGETPU_REFERENCE).stdout
    payload = json.loads(run_cli("check-edgetpu", EDGETPU_REFERENCE, "--json").stdout)
    assert payload["min_runtime_version"] == 12


def test_our_cpu_model_is_not_compiled(models_dir, model_card):
    assert read_compiled_model(models_dir / model_card["variants"]["int8"]["file"]) is None


def test_runtime_version_is_read_from_libedgetpus_version_text():
    assert parse_runtime_version(REAL_VERSION_TEXT) == 14
    assert parse_runtime_version("no version here") is None
    assert parse_runtime_version(None) is None


# -- the delegate library ----------------------------------------------------------------------

def test_missing_library_says_how_to_install_it():
    with pytest.raises(DeviceError) as caught:
        open_edgetpu_library(MISSING_LIBRARY)
    assert caught.value.reason == "library-missing"
    message = str(caught.value)
    assert "libedgetpu1-std" in message and "coral-edgetpu-stable" in message
    assert "replug" in message and LIBRARY_ENV in message


def test_the_default_library_name_is_libedgetpu(monkeypatch):
    monkeypatch.delenv(LIBRARY_ENV)
    if ctypes.util.find_library("edgetpu"):
        pytest.skip("libedgetpu is installed on this machine")
    with pytest.raises(DeviceError) as caught:
        load_edgetpu_delegate(select_runtime())
    assert caught.value.reason == "library-missing"
    if platform.system() == "Linux":
        assert "libedgetpu.so.1" in str(caught.value)


def test_a_shared_library_that_is_no_delegate_is_named_as_such():
    libm = ctypes.util.find_library("m")
    if platform.system() != "Linux" or not libm:
        pytest.skip("needs the C math library of Linux")
    with pytest.raises(DeviceError) as caught:
        open_edgetpu_library(libm)
    assert caught.value.reason == "not-a-delegate"
    assert "tflite_plugin_create_delegate" in str(caught.value)


def test_installed_but_nothing_plugged_in(stub_library):
    library = stub_library(14, devices=0)
    found = open_edgetpu_library(library)
    assert (found.runtime_version, found.devices) == (14, 0)
    with pytest.raises(DeviceError) as caught:  # through LiteRT's load_delegate
        load_edgetpu_delegate(select_runtime(), library)
    assert caught.value.reason == "no-device"
    assert "lsusb" in str(caught.value) and "18d1:9302" in str(caught.value)


def test_plugged_in_but_cannot_be_opened(stub_library):
    with pytest.raises(DeviceError) as caught:
        load_edgetpu_delegate(select_runtime(), stub_library(14, devices=1))
    assert caught.value.reason == "cannot-open"
    assert "found 1 Edge TPU" in str(caught.value) and "plugdev" in str(caught.value)


def test_runtime_older_than_the_compiled_model_is_caught_before_the_device(stub_library):
    compiled = read_compiled_model(EDGETPU_REFERENCE)  # needs runtime 12
    with pytest.raises(DeviceError) as caught:
        load_edgetpu_delegate(select_runtime(), stub_library(11), compiled)
    assert caught.value.reason == "runtime-too-old"
    assert "runtime 12" in str(caught.value) and "runtime 11" in str(caught.value)
    assert "edgetpu_compiler -m 11" in str(caught.value)
    # A new enough runtime passes the check and gets as far as the (missing) device.
    with pytest.raises(DeviceError) as caught:
        load_edgetpu_delegate(select_runtime(), stub_library(14), compiled)
    assert caught.value.reason == "no-device"


def test_libedgetpus_own_mismatch_message_is_explained():
    text = explain_interpreter_failure(Path("m_edgetpu.tflite"),
                                       RuntimeError(REAL_RUNTIME_MISMATCH))
    assert "compiled for Edge TPU runtime 14" in text and "runtime 13" in text
    assert "libedgetpu1-std" in text and "edgetpu_compiler -m 13" in text


def test_info_reports_the_edge_tpu_runtime(stub_library, monkeypatch):
    monkeypatch.setenv(LIBRARY_ENV, stub_library(14, devices=0))
    result = run_cli("info", "--json")
    edgetpu = json.loads(result.stdout)["runtimes"]["edgetpu"]
    assert edgetpu["available"] and edgetpu["runtime_version"] == 14
    assert edgetpu["devices"] == 0


# -- a compiled model without the delegate ----------------------------------------------------

def test_litert_alone_cannot_run_the_compiled_reference():
    """The real failure the message below translates."""
    interpreter = select_runtime().interpreter(str(EDGETPU_REFERENCE), num_threads=1)
    with pytest.raises(RuntimeError, match="unresolved custom op: edgetpu-custom-op") as caught:
        interpreter.allocate_tensors()
    explained = explain_interpreter_failure(EDGETPU_REFERENCE, caught.value)
    assert "compiled for the Coral Edge TPU" in explained and "--device edgetpu" in explained


@pytest.mark.parametrize("as_json", [False, True])
def test_compiled_model_on_the_cpu_exits_3(paired, covid_xray, as_json):
    _, _, compiled = paired
    result = run_cli("classify", covid_xray, "--model", compiled, "--device", "cpu",
                     *(["--json"] if as_json else []))
    assert result.exit_code == EXIT_MODEL
    assert "compiled for the Coral Edge TPU" in result.stderr
    assert "--device edgetpu" in result.stderr
    assert "pass the CPU model instead (covid-edge-int8.tflite)" in result.stderr  # the card's
    if as_json:
        assert "Edge TPU delegate" in json.loads(result.stdout)["error"]


# -- a CPU model asked to run on the Edge TPU --------------------------------------------------

def test_cpu_model_with_device_edgetpu_says_compile_it(models_dir, model_card, covid_xray):
    model = models_dir / model_card["variants"]["int8"]["file"]
    result = run_cli("classify", covid_xray, "--model", model, "--device", "edgetpu")
    assert result.exit_code == EXIT_MODEL
    assert "not compiled for the Edge TPU" in result.stderr
    assert "every op would run on the CPU" in result.stderr
    assert f"edgetpu_compiler -s -o {model.parent} {model}" in result.stderr
    assert "Also: the Edge TPU runtime library" in result.stderr  # both problems at once


def test_device_edgetpu_picks_the_compiled_build_and_needs_the_runtime(paired, covid_xray):
    folder, _, _ = paired
    result = run_cli("classify", covid_xray, "--model", folder, "--device", "edgetpu")
    assert result.exit_code == EXIT_MODEL
    assert "libedgetpu1-std" in result.stderr and "not compiled" not in result.stderr


def test_device_edgetpu_with_an_edge_tpu_runtime_but_no_device(paired, covid_xray, stub_library,
                                                               monkeypatch):
    folder, _, _ = paired
    monkeypatch.setenv(LIBRARY_ENV, stub_library(14, devices=0))
    result = run_cli("classify", covid_xray, "--model", folder, "--device", "edgetpu")
    assert result.exit_code == EXIT_MODEL
    assert "found no Edge TPU" in result.stderr


# -- auto --------------------------------------------------------------------------------------

def test_auto_falls_back_to_the_cards_cpu_model_with_a_notice(paired, covid_xray):
    folder, cpu_model, compiled = paired
    for given in (folder, compiled):  # the folder, or the compiled file itself
        result = run_cli("classify", covid_xray, "--model", given, "--device", "auto", "--json")
        assert result.exit_code == EXIT_OK, result.output
        document = json.loads(result.stdout)
        assert document["device"]["requested"] == "auto"
        assert document["device"]["device"] == "cpu"
        assert Path(document["model"]["file"]).name == cpu_model.name
        assert document["results"][0]["verdict"] in ("covid", "normal")
        assert f"note: --device auto: running on the CPU ({cpu_model.name})" in result.stderr
        assert "libedgetpu" in result.stderr


def test_auto_without_a_compiled_build_runs_on_the_cpu(models_dir, covid_xray):
    result = run_cli("classify", covid_xray, "--model", models_dir, "--device", "auto")
    assert result.exit_code == EXIT_OK
    assert "no Edge TPU build" in result.stderr and "edgetpu_compiler -s -o" in result.stderr


def test_auto_with_only_a_compiled_model_has_nothing_to_fall_back_to(tmp_path):
    compiled = tmp_path / EDGETPU_REFERENCE.name
    shutil.copy(EDGETPU_REFERENCE, compiled)
    with pytest.raises(DeviceError) as caught:
        resolve_device("auto", compiled, None, select_runtime())
    assert caught.value.reason == "compiled-only"
    assert "mobilenet_v1_0.25_128_quant.tflite" in str(caught.value)


def test_default_device_is_the_cpu_without_notices(models_dir):
    classifier = Classifier.load(models_dir)
    assert classifier.device.device == "cpu" and classifier.device.notices == []
    assert classifier.describe()["device"] == "cpu"
    assert "Edge TPU" not in classifier.runtime_label


def test_classifier_load_turns_device_errors_into_model_errors(models_dir):
    with pytest.raises(ModelError, match="not compiled for the Edge TPU"):
        Classifier.load(models_dir, device="edgetpu")


# -- the model card pairs the files ------------------------------------------------------------

def test_card_recognises_compiled_files(paired):
    folder, cpu_model, compiled = paired
    assert card_for_model(compiled)[1] == "edgetpu"  # by the devices map
    compiler_named = folder / compiled_name(cpu_model)  # by edgetpu_compiler's naming
    shutil.copy(EDGETPU_REFERENCE, compiler_named)
    card, variant = card_for_model(compiler_named)
    assert variant == "edgetpu" and variant_entry(card, variant) == (card.get("edgetpu") or {})
    assert variant_entry(card, "int8") is card["variants"]["int8"]


# -- convert --edgetpu's step ------------------------------------------------------------------

def test_prepare_for_edgetpu_without_the_compiler(models_dir, model_card, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no edgetpu_compiler here, whatever the machine
    model = models_dir / model_card["variants"]["int8"]["file"]
    entry = prepare_for_edgetpu(model, tmp_path / "out", log=lambda line: None)
    assert entry["compiled"] is False and entry["device"] == "edgetpu"
    assert entry["file"] == "covid-edge-int8_edgetpu.tflite"
    assert entry["command"] == f"edgetpu_compiler -s -o {tmp_path / 'out'} {model}"
    assert entry["static_check"].startswith("maps-fully")
    assert "not on PATH" in entry["note"]


def test_prepare_for_edgetpu_refuses_a_model_that_would_not_map(models_dir, model_card,
                                                                 tmp_path):
    model = models_dir / model_card["variants"][float_variant(models_dir, model_card)]["file"]
    with pytest.raises(EdgeTpuCompileError, match="would not map fully") as caught:
        prepare_for_edgetpu(model, tmp_path, log=lambda line: None)
    assert "first op left on the CPU: #0" in str(caught.value)
    assert "covid-edge check-edgetpu" in str(caught.value)


def test_compiled_file_description_comes_from_the_file():
    described = describe_compiled(EDGETPU_REFERENCE)
    assert described["edgetpu_custom_ops"] == 1 and described["ops_on_cpu"] == []
    assert described["min_runtime_version"] == 12
    assert described["input_dtype"] == described["output_dtype"] == "uint8"
    assert described["bytes"] == EDGETPU_REFERENCE.stat().st_size


def test_compiler_version_is_read_from_its_log():
    # The first lines edgetpu_compiler prints (f0cal/google-coral#20).
    log = ("Edge TPU Compiler version 2.0.267685300\nInput: MobileUNetV2.tflite\n"
           "Output: MobileUNetV2_edgetpu.tflite\n")
    assert compiler_version(log) == "2.0.267685300"
    assert compiler_version("") is None


# -- bench latency --device edgetpu ------------------------------------------------------------

def test_bench_with_a_runtime_but_no_device_says_so(stub_library, monkeypatch, models_dir):
    monkeypatch.setenv(LIBRARY_ENV, stub_library(14, devices=0))
    result = CliRunner().invoke(main, ["bench", "latency", str(models_dir), "--runs", "2",
                                       "--warmup", "0", "--threads", "1", "--xnnpack", "on",
                                       "--device", "edgetpu", "--no-end-to-end"])
    assert result.exit_code == 1
    assert "found no Edge TPU" in result.output and "Traceback" not in result.output


def test_the_card_names_the_file_for_each_device(models_dir, model_card):
    """A card written by `convert` since devices were added (older cards are still read)."""
    if "devices" not in model_card:
        pytest.skip("this model card predates the devices map")
    assert model_card["devices"]["cpu"] == model_card["variants"]["int8"]["file"]
    assert all(v.get("device") == "cpu" for v in model_card["variants"].values())
    if "edgetpu" in model_card["devices"]:
        assert load_card(models_dir / "model_card.json")["edgetpu"]["file"] == \
            model_card["devices"]["edgetpu"]


def test_the_compile_hint_never_writes_into_an_installed_package(tmp_path):
    from pathlib import Path

    from covid_edge.edge_runtime.devices import compile_hint

    installed = Path("/usr/lib/python3/site-packages/covid_edge/_models/covid-edge-int8.tflite")
    hint = compile_hint(installed)
    assert "~/covid-edge-models" in hint and "-o /usr/lib" not in hint
    assert "--model ~/covid-edge-models" in hint
    own = tmp_path / "covid-edge-int8.tflite"
    assert f"-o {tmp_path} {own}" in compile_hint(own)
