"""The README's table of the release issue's targets is what scripts/release_targets.py prints
from the committed reports and model card (all but the latency row, which it measures)."""

import re
import subprocess
import sys

from conftest import REPO_ROOT, subprocess_env


def test_readme_targets_table_comes_from_the_reports():
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"<!-- targets:start -->\n(.*?)\n<!-- targets:end -->", readme, re.S)
    assert block, "README has no targets table"
    done = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "release_targets.py"), "--markdown",
         "--sources", str(REPO_ROOT / "docs/bench/0.3.0/sources/sources.json"),
         "--shift", str(REPO_ROOT / "docs/bench/0.3.0/shift/shift.json")],
        capture_output=True, text=True, env=subprocess_env(), timeout=120)
    assert done.returncode == 0, done.stderr
    printed = done.stdout.strip().splitlines()
    documented = [line for line in block.group(1).splitlines()
                  if not line.startswith("| int8 latency")]
    # JSRT's row carries a note in the README (its normals validate); the figures are equal.
    documented = [re.sub(r"n/a: [^|]*", "n/a ", line) for line in documented]
    assert documented == printed
    assert sum("MISSED" in line for line in printed) >= 1  # misses are reported as misses


def test_a_report_from_another_conversion_of_the_same_version_is_refused(tmp_path):
    """Two conversions can both be 0.3.0: the committed reports must be the shipped file's."""
    import json

    from covid_edge.model_card import report_mismatch

    card = json.loads((REPO_ROOT / "models/model_card.json").read_text(encoding="utf-8"))
    shift = json.loads((REPO_ROOT / "docs/bench/0.3.0/shift/shift.json").read_text(
        encoding="utf-8"))
    assert report_mismatch(shift["model"], card) is None
    assert shift["model"]["sha256"] == card["variants"]["int8"]["sha256"]

    other = {**shift["model"], "sha256": "0" * 64}
    assert "another int8 file" in report_mismatch(other, card)
    older = {**shift["model"], "version": "0.2.0"}
    assert "0.2.0" in report_mismatch(older, card)

    forged = dict(shift, model=other)
    (tmp_path / "shift.json").write_text(json.dumps(forged), encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "release_targets.py"),
         "--sources", str(REPO_ROOT / "docs/bench/0.3.0/sources/sources.json"),
         "--shift", str(tmp_path / "shift.json")],
        capture_output=True, text=True, env=subprocess_env(), timeout=120)
    assert done.returncode != 0 and "another int8 file" in done.stderr
