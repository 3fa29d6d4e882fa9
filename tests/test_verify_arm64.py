"""scripts/verify_arm64.sh (the Raspberry Pi install under emulated 64-bit Arm) and its report.

The emulation itself needs root and minutes (`sudo scripts/verify_arm64.sh`); here: the script
parses, still runs the docs' commands verbatim, the committed result is complete and agrees
with the docs, and the report fails what it must fail, judged on real outputs of this host.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import REPO_ROOT, cli_runner, load_script

from covid_edge.edge_runtime.interpreter import _numpy_abi_mismatch

SCRIPT = REPO_ROOT / "scripts" / "verify_arm64.sh"
RESULT_DIR = REPO_ROOT / "docs" / "arm64"
SAMPLES = REPO_ROOT / "models" / "samples"


def _report_module():
    return load_script("arm64_report")


def test_script_parses():
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)


def test_the_docs_hold_the_commands_the_script_runs():
    done = subprocess.run(["bash", str(SCRIPT), "--check-docs"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_check_docs_notices_a_changed_install_command(tmp_path):
    (tmp_path / "scripts").mkdir()
    (tmp_path / "docs").mkdir()
    shutil.copy(SCRIPT, tmp_path / "scripts")
    shutil.copy(REPO_ROOT / "docs" / "kiosk.md", tmp_path / "docs")
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    changed = readme.replace('pip install ~/covid-edge "numpy<2" tflite-runtime',
                             "pip install ~/covid-edge tflite-runtime")
    assert changed != readme
    (tmp_path / "README.md").write_text(changed, encoding="utf-8")
    done = subprocess.run(["bash", str(tmp_path / "scripts" / SCRIPT.name), "--check-docs"],
                          capture_output=True, text=True)
    assert done.returncode != 0
    assert 'not in README.md: pip install ~/covid-edge "numpy<2" tflite-runtime' in done.stderr


def test_the_committed_result_is_complete_and_agrees_with_the_docs():
    report = _report_module()
    result = json.loads((RESULT_DIR / "result.json").read_text(encoding="utf-8"))
    assert report.validate(result) == []
    # The page is generated from the JSON, not edited by hand.
    assert (RESULT_DIR / "README.md").read_text(encoding="utf-8") == report.markdown(result) + "\n"
    for config in result["configurations"]:
        lines = {line.strip() for line in
                 (REPO_ROOT / config["doc"]).read_text(encoding="utf-8").splitlines()}
        for command in config["commands"]:
            assert command in lines, f"{config['name']}: {command!r} is no longer in {config['doc']}"
    # The README quotes the result: pass or fail, and the largest difference in output steps.
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    quoted = re.search(r"last run\s+\(\[docs/arm64\]\(docs/arm64/README\.md\)\): \*\*(PASS|FAIL)\*\*"
                       r".*?at most\s+\*\*(\d+)\*\*\s+int8\s+output\s+steps", readme, re.S)
    assert quoted, "README: the sentence quoting docs/arm64/result.json is missing"
    assert quoted.group(1) == ("PASS" if result["passed"] else "FAIL")
    steps = max((c.get("classify") or {}).get("max_steps_vs_card") or 0
                for c in result["configurations"])
    assert int(quoted.group(2)) == steps
    assert "none are reported" in result["note"]


def _collect_like_the_script(out: Path, name: str) -> None:
    """What verify_arm64.sh writes for one configuration, from real runs on this host."""
    from covid_edge.cli import main

    runner = cli_runner()
    d = out / name
    d.mkdir(parents=True)
    (d / "doc.txt").write_text("README.md")
    (d / "commands.txt").write_text("pip install ~/covid-edge\n")
    (d / "install.rc").write_text("0")
    (d / "packages.json").write_text("[]")
    for step, args in {"check": ["bench", "check", "--json"],
                       "classify": ["classify", str(SAMPLES), "--json"],
                       "info": ["info", "--json"],
                       "explain": ["explain", str(sorted(SAMPLES.glob("covid-*.jpg"))[0]), "-o",
                                   str(d / "explain.png"), "--json"]}.items():
        done = runner.invoke(main, args)
        (d / f"{step}.json").write_text(done.stdout)
        (d / f"{step}.rc").write_text(str(done.exit_code))


@pytest.mark.skipif(not list(SAMPLES.glob("covid-*.jpg")), reason="no samples")
def test_the_report_passes_equal_outputs_and_fails_different_ones(tmp_path):
    report = _report_module()
    out = tmp_path / "out"
    _collect_like_the_script(out, "litert")
    (out / "host").mkdir()
    shutil.copy(out / "litert" / "classify.json", out / "host" / "classify.json")
    card_raw, quantization, tolerance = report.card_reference()
    x86 = report.classify_rows(json.loads((out / "host" / "classify.json").read_text()),
                               quantization)

    same = report.judge_config(out, "litert", x86, card_raw, quantization, tolerance)
    assert same["problems"] == [] and same["passed"]
    assert same["classify"]["max_steps_vs_x86_64"] == 0

    # The same outputs where tflite_runtime was expected: the runtime is wrong.
    shutil.copytree(out / "litert", out / "tflite-runtime")
    wrong_runtime = report.judge_config(out, "tflite-runtime", x86, card_raw, quantization,
                                        tolerance)
    assert not wrong_runtime["passed"]
    assert any("expected tflite_runtime" in p for p in wrong_runtime["problems"])

    # One verdict flipped and one output moved past the tolerance.
    document = json.loads((out / "litert" / "classify.json").read_text())
    first, second = document["results"][0], document["results"][1]
    first["verdict"] = "normal" if first["verdict"] == "covid" else "covid"
    second["raw_probability"] += (tolerance + 1) * quantization["scale"]
    (out / "litert" / "classify.json").write_text(json.dumps(document))
    differs = report.judge_config(out, "litert", x86, card_raw, quantization, tolerance)
    assert not differs["passed"]
    flipped = first["path"].split("/")[-1]
    assert f"classify verdicts differ from x86-64 ({flipped})" in differs["problems"]
    assert differs["classify"]["max_steps_vs_x86_64"] == tolerance + 1
    assert any("steps from the card" in p for p in differs["problems"])

    # Unless bench check called that sample near a verdict boundary: then it may differ.
    check = json.loads((out / "litert" / "check.json").read_text())
    for row in check["images"]:
        if row["file"].endswith(flipped):
            row["near_boundary"] = "near the threshold: its verdict may differ"
    (out / "litert" / "check.json").write_text(json.dumps(check))
    near = report.judge_config(out, "litert", x86, card_raw, quantization, tolerance)
    assert not any(p.startswith("classify verdicts differ") for p in near["problems"])
    assert near["classify"]["verdicts_differing_near_boundary"] == [flipped]
    assert flipped in near["bench_check"]["near_boundary"]


def test_numpy_abi_mismatch_is_recognised_through_the_exception_chain():
    # The chain tflite-runtime 2.14 raises under numpy 2: SystemError caused by ImportError
    # caused by AttributeError("_ARRAY_API not found").
    try:
        try:
            try:
                raise AttributeError("_ARRAY_API not found")
            except AttributeError as inner:
                raise ImportError("numpy.core.multiarray failed to import") from inner
        except ImportError:
            raise SystemError("<built-in method CreateWrapperFromFile> returned a result "
                              "with an exception set")
    except SystemError as exc:
        assert _numpy_abi_mismatch(exc)
    assert not _numpy_abi_mismatch(SystemError("something else entirely"))
