"""The edge path must never import TensorFlow (seconds and hundreds of MB on a Raspberry Pi),
nor the training-side plotting and metrics libraries. Checked in a fresh interpreter, after
really classifying an image, because an import can hide anywhere in the call path."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest

from conftest import REPO_ROOT, subprocess_env

FORBIDDEN = ("tensorflow", "keras", "tf_keras", "matplotlib", "sklearn", "scipy", "jax",
             "torch")

CHILD = """
import json, sys
from covid_edge.cli import main
codes = [main(args, prog_name="covid-edge", standalone_mode=False)
         for args in json.loads(sys.argv[1])]
loaded = sorted({name.split(".")[0] for name in sys.modules} & set(json.loads(sys.argv[2])))
print("REPORT " + json.dumps({"codes": codes, "loaded": loaded}))
"""


def run_in_fresh_python(*commands: list[str]) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(commands), json.dumps(FORBIDDEN)],
        capture_output=True, text=True, env=subprocess_env(), cwd=REPO_ROOT, timeout=120)
    reports = [line for line in done.stdout.splitlines() if line.startswith("REPORT ")]
    assert done.returncode == 0 and reports, done.stdout + done.stderr
    return json.loads(reports[-1][len("REPORT "):])


def test_classify_and_info_import_no_tensorflow(models_dir, covid_xray):
    report = run_in_fresh_python(
        ["classify", str(covid_xray), "--model", str(models_dir), "--json"],
        ["info", "--model", str(models_dir)],
    )
    assert report["codes"] == [0, 0]  # the commands really ran
    assert report["loaded"] == []


def test_the_probe_sees_tensorflow_when_it_is_used(models_dir, covid_xray):
    """The same probe, with TensorFlow asked for as the runtime, must report it: otherwise the
    test above could pass by seeing nothing at all."""
    if importlib.util.find_spec("tensorflow") is None:
        pytest.skip("tensorflow is not installed here")
    report = run_in_fresh_python(
        ["classify", str(covid_xray), "--model", str(models_dir), "--runtime", "tensorflow",
         "--json"])
    assert report["codes"] == [0]
    assert "tensorflow" in report["loaded"]


def test_bench_sources_and_shift_import_no_tensorflow(models_dir):
    """The per-source and shift benchmarks run on the device's base install."""
    from conftest import CXR, SHARED

    report = run_in_fresh_python(
        ["bench", "sources", str(SHARED / "data" / "cxr-more"), "--model", str(models_dir),
         "--limit", "1", "--json"],
        ["bench", "shift", str(CXR), "--model", str(models_dir), "--limit", "1",
         "-p", "jpeg-q75", "-p", "export-16bit-2048", "-p", "camera-capture", "--json"],
    )
    assert report["codes"] in ([0, 0], [None, None])
    assert report["loaded"] == []
