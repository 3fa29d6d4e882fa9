"""Shared test setup: import covid_edge from src/ without installing it, and locate the real
assets (X-rays and reference models in ../shared, the exported model under test)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SRC = REPO_ROOT / "src"
if str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))

SHARED = REPO_ROOT.parent / "shared"
CXR = SHARED / "data" / "cxr"
REFERENCE = SHARED / "reference"
# Release 0.2.0 (two classes, one sigmoid output), kept beside the current release so that a
# test proves two-class models keep working unchanged.
RELEASE_0_2_0 = REPO_ROOT / "releases" / "0.2.0"
EDGETPU_REFERENCE = REFERENCE / "mobilenet_v1_0.25_128_quant_edgetpu.tflite"


def subprocess_env() -> dict:
    """Environment for a child Python that must import this checkout's covid_edge."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
    return env


def cli_runner():
    """A click test runner that keeps stderr apart from stdout, on every click version."""
    from click.testing import CliRunner

    try:
        return CliRunner(mix_stderr=False)  # click < 8.2
    except TypeError:
        return CliRunner()  # click >= 8.2 keeps stderr apart by itself


def write_report_without_matplotlib(module: str, report: dict, out: Path) -> str:
    """Run `module`.write_report(report, out) in a child Python where matplotlib cannot be
    imported; returns what it printed (the note about plots)."""
    import json
    import subprocess

    source = out.parent / f"{out.name}-in.json"
    source.write_text(json.dumps(report))
    script = (
        "import sys, json, pathlib; sys.modules['matplotlib'] = None\n"
        f"from {module} import write_report\n"
        f"files, note = write_report(json.loads(pathlib.Path({str(source)!r}).read_text()),"
        f" pathlib.Path({str(out)!r}))\n"
        "print(note)\n")
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=subprocess_env(), check=True).stdout


def models_dir_under_test() -> Path | None:
    """Folder holding model_card.json and the .tflite files under test:
    $COVID_EDGE_TEST_MODELS, else the released models/ folder; None when neither exists."""
    override = os.environ.get("COVID_EDGE_TEST_MODELS")
    if override:
        return Path(override).resolve()
    from covid_edge.model_card import ModelCardError, released_models_dir
    try:
        return released_models_dir()
    except ModelCardError:
        return None


@pytest.fixture(scope="session")
def models_dir() -> Path:
    directory = models_dir_under_test()
    if directory is None or not (directory / "model_card.json").is_file():
        pytest.skip("no exported model: set COVID_EDGE_TEST_MODELS to a folder that "
                    "`covid-edge convert` wrote, or add the released model to models/")
    return directory


@pytest.fixture(scope="session")
def model_card(models_dir) -> dict:
    from covid_edge.model_card import load_card
    return load_card(models_dir / "model_card.json")


def _first(folder: Path, count: int = 1) -> list[Path]:
    if not folder.is_dir():
        pytest.skip(f"shared X-rays not found at {folder}")
    return sorted(folder.glob("*.jpg"))[:count]


@pytest.fixture(scope="session")
def covid_xray() -> Path:
    return _first(CXR / "covid")[0]


@pytest.fixture(scope="session")
def normal_xray() -> Path:
    return _first(CXR / "normal")[0]


@pytest.fixture(scope="session")
def some_xrays() -> list[Path]:
    return _first(CXR / "covid", 3) + _first(CXR / "normal", 3)


def shipped_variants(models_dir: Path, card: dict) -> set[str]:
    """The card's variants whose files are here (the release ships no float32: 8.9 MB that
    `covid-edge convert` regenerates)."""
    return {name for name, variant in card["variants"].items()
            if (models_dir / variant["file"]).is_file()}


def float_variant(models_dir: Path, card: dict) -> str:
    """A float (not int8-quantized) TFLite variant that is here: float32, else float16."""
    for name in ("float32", "float16"):
        if name in shipped_variants(models_dir, card):
            return name
    pytest.skip("no float TFLite variant in the models folder")


CXR_MORE = SHARED / "data" / "cxr-more"
WEIGHTS = SHARED / "weights" / "mobilenet_v2_1.0_224_imagenet_no_top.weights.h5"


def run_covid_edge(*args, timeout: int = 900):
    """`covid-edge ARGS` in a child Python (training imports TensorFlow: keep it out of the
    test process); raises with its stderr when it fails."""
    import subprocess

    result = subprocess.run([sys.executable, "-m", "covid_edge.cli", *map(str, args)],
                            capture_output=True, text=True, env=subprocess_env(), timeout=timeout)
    if result.returncode != 0:
        raise AssertionError(f"covid-edge {' '.join(map(str, args))} failed:\n"
                             f"{result.stderr[-3000:]}")
    return result


@pytest.fixture(scope="session")
def three_class_run(tmp_path_factory) -> Path:
    """A small normal / pneumonia / covid model trained here, at 96x96 on 40 images per class
    from ../shared/data/cxr and cxr-more (tuberculosis and nodule dropped): the run folder."""
    pytest.importorskip("tensorflow", reason="needs the [train] extra")
    if not (WEIGHTS.is_file() and CXR_MORE.is_dir()):
        pytest.skip("needs ../shared/weights and ../shared/data/cxr-more")
    out = tmp_path_factory.mktemp("three-class-run")
    run_covid_edge("train", CXR, CXR_MORE, "--out", out, "--map", "tuberculosis=drop",
                   "--map", "nodule=drop", "--weights", WEIGHTS, "--image-size", 96,
                   "--limit-per-class", 40, "--head-epochs", 1, "--fine-tune-epochs", 1,
                   "--batch-size", 16)
    return out


@pytest.fixture(scope="session")
def three_class_dir(request, tmp_path_factory) -> Path:
    """The three-class model converted (int8 and the other variants, card, samples, guard):
    $COVID_EDGE_TEST_THREE_CLASS (a folder convert wrote, to save minutes while developing),
    else trained and converted here."""
    override = os.environ.get("COVID_EDGE_TEST_THREE_CLASS")
    if override:
        return Path(override).resolve()
    # Built on first use only: training and converting cost about 2.5 minutes on 2 cores.
    run = request.getfixturevalue("three_class_run")
    out = tmp_path_factory.mktemp("three-class-models")
    run_covid_edge("convert", run / "model.keras", "--out", out, "--calibration-size", 20,
                   "--non-xray", REFERENCE / "photos")
    return out


def load_script(name: str):
    """A script of scripts/ imported as a module (its main() is not run)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def copy_for_check(models_dir: Path, target: Path) -> Path:
    """The card, the int8 model and the samples: what `bench check` reads."""
    import json
    import shutil

    card = json.loads((models_dir / "model_card.json").read_text())
    target.mkdir()
    shutil.copy(models_dir / "model_card.json", target)
    shutil.copy(models_dir / card["variants"][card["reference_outputs"]["variant"]]["file"],
                target)
    shutil.copytree(models_dir / "samples", target / "samples")
    return target


def edit_card(folder: Path, change) -> None:
    import json

    path = folder / "model_card.json"
    card = json.loads(path.read_text())
    change(card)
    path.write_text(json.dumps(card))


# --- Two workers (pytest-xdist; pyproject's addopts: -n auto --dist loadgroup) ---------------
# Most of the suite's time is small TensorFlow trainings and conversions, which keep about one
# core busy each: two workers take about three quarters of the serial time on a 2-core machine
# (301 s against 406 s on a Zen 5; a few long trainings set the floor). A trained model must
# be built once, so tests that share one run on the same worker: a test file is a group (its
# module-scoped runs), and every test that uses the session's three-class model joins one.

SHARED_MODEL_FIXTURES = {"three_class_run", "three_class_dir"}


def pytest_xdist_auto_num_workers(config) -> int:
    """`-n auto`: one worker per core, two at most (each training holds 1-3 GB, and the suite
    has too few heavy groups for a third worker to help)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    return max(1, min(2, cores))


def pytest_collection_modifyitems(config, items):
    for item in items:
        shares_model = SHARED_MODEL_FIXTURES & set(getattr(item, "fixturenames", ()))
        group = "three-class-model" if shares_model else item.nodeid.split("::")[0]
        item.add_marker(pytest.mark.xdist_group(group))
