"""A wheel built from this repository, installed into a fresh virtual environment, classifies
a bundled sample with the released model: what a user gets from `pip install covid-edge`."""

import json
import subprocess
import sys
import venv

import pytest

from conftest import REPO_ROOT

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    if not (REPO_ROOT / "models" / "model_card.json").is_file():
        pytest.skip("no released model in models/")
    work = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w",
                    str(work / "dist"), str(REPO_ROOT)], check=True, timeout=600)
    wheel = next((work / "dist").glob("covid_edge-*.whl"))
    env_dir = work / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", str(wheel)], check=True,
                   timeout=900)
    return env_dir


def test_wheel_classifies_a_bundled_sample(installed):
    python = installed / "bin" / "python"
    info = subprocess.run([str(installed / "bin" / "covid-edge"), "info", "--json"],
                          capture_output=True, text=True, timeout=120, cwd=installed)
    assert info.returncode == 0, info.stderr
    samples = json.loads(info.stdout)["model"]["samples"]
    assert samples, "the wheel carries no sample X-rays"
    # The model and samples come from inside site-packages, not from this checkout.
    assert all(str(installed) in sample for sample in samples)

    result = subprocess.run([str(installed / "bin" / "covid-edge"), "classify", "--json",
                             samples[0]], capture_output=True, text=True, timeout=120,
                            cwd=installed)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["results"][0]["verdict"] in ("covid", "normal")
    assert str(installed) in report["model"]["file"]

    # The base install is runtime-only: no TensorFlow came with it.
    probe = subprocess.run([str(python), "-c", "import importlib.util as u; "
                            "print(u.find_spec('tensorflow') is None)"],
                           capture_output=True, text=True)
    assert probe.stdout.strip() == "True"


@pytest.mark.parametrize("command, extra", [("serve", "serve"), ("train", "train")])
def test_commands_of_an_extra_name_it_instead_of_a_traceback(installed, command, extra):
    args = [command] if command == "serve" else [command, str(installed), "--out", "x"]
    result = subprocess.run([str(installed / "bin" / "covid-edge"), *args],
                            capture_output=True, text=True, timeout=120, cwd=installed)
    assert result.returncode != 0
    # Installed from a wheel: the extra's own packages, which pip finds without a clone.
    assert "pip install '" in result.stderr and f"'.[{extra}]'" in result.stderr
    assert "Traceback" not in result.stderr
    if extra == "serve":
        assert "'fastapi>=" in result.stderr
