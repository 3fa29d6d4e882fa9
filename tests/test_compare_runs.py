"""scripts/compare_runs.py: the crop-or-full-image rule, on two small hand-made runs."""

import csv
import json
from pathlib import Path

import pytest

from conftest import load_script

LABELS = ["normal", "pneumonia", "covid"]


def _run(folder: Path, rows: list[tuple[str, str, str, float]]) -> Path:
    """rows: (label, source, split, P(covid)); the rest of the probability goes to the label
    itself, or to normal for covid images."""
    folder.mkdir()
    (folder / "run.json").write_text(json.dumps({
        "labels": LABELS, "positive_label": "covid", "output_kind": "softmax",
        "threshold": 0.5}))
    with open(folder / "predictions.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "split", "source", *(f"p_{x}" for x in LABELS)])
        for i, (label, source, split, p_covid) in enumerate(rows):
            rest = {x: 0.0 for x in LABELS}
            rest["normal" if label == "covid" else label] = 1 - p_covid
            rest["covid"] = p_covid
            writer.writerow([f"{i}.jpg", label, split, source, *(rest[x] for x in LABELS)])
    return folder


BASE = [("covid", "cxr", "val", 0.9), ("covid", "cxr", "val", 0.8),
        ("normal", "cxr", "val", 0.1), ("normal", "jsrt", "val", 0.7),
        ("pneumonia", "nih", "val", 0.2), ("normal", "jsrt", "test", 0.1)]


def test_the_candidate_wins_only_with_fewer_false_covid_calls_and_the_conditions(tmp_path):
    compare = load_script("compare_runs")
    first = compare.summarise(_run(tmp_path / "full", BASE), "val")
    # The test row is not read: validation alone decides.
    assert first["images"] == 5
    assert first["by_source"]["jsrt/normal"]["called covid"] == 1.0
    better = BASE.copy()
    better[3] = ("normal", "jsrt", "val", 0.3)
    candidate = compare.summarise(_run(tmp_path / "crop", better), "val")
    decision = compare.decide(first, candidate)
    # Cells: cxr/normal 0, jsrt/normal 1 -> 0, nih/pneumonia 0.
    assert decision["false_positive_share"] == pytest.approx([1 / 3, 0.0])
    assert decision["choose"] == str(tmp_path / "crop")

    missed = better.copy()
    missed[1] = ("covid", "cxr", "val", 0.4)  # sensitivity 0.5 < 0.95
    weaker = compare.summarise(_run(tmp_path / "weak", missed), "val")
    decision = compare.decide(first, weaker)
    assert decision["conditions"]["sensitivity_reached"] is False
    assert decision["choose"] == str(tmp_path / "full")
    # A tie keeps the current model.
    assert compare.decide(first, first)["choose"] == str(tmp_path / "full")


def test_an_unfinished_run_folder_is_an_error_not_a_traceback(tmp_path):
    import subprocess
    import sys

    from conftest import REPO_ROOT, subprocess_env

    unfinished = tmp_path / "runs" / "still-averaging"
    unfinished.mkdir(parents=True)
    done = subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / "compare_runs.py"),
                           str(unfinished)], capture_output=True, text=True,
                          env=subprocess_env(), timeout=60)
    assert done.returncode == 2
    assert "has no run.json" in done.stderr and "Traceback" not in done.stderr
