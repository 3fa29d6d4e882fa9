"""`bench sources` and `bench shift` on the real model and real X-rays from ../shared, and the
statistics under them."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import CXR, RELEASE_0_2_0, SHARED, cli_runner
from covid_edge.benchmarks.labelled_sets import (LabelledSetError, keep_part, limit_per_group,
                                                 load_set, load_sets)
from covid_edge.intervals import delong_auc, wilson

CXR_MORE = SHARED / "data" / "cxr-more"


# -- statistics ------------------------------------------------------------------------------

def test_wilson_matches_published_values():
    # Newcombe (1998), Statistics in Medicine 17:857, table I: 81/263 -> 0.2553-0.3662.
    low, high = wilson(81, 263)
    assert (round(low, 4), round(high, 4)) == (0.2553, 0.3662)
    assert wilson(0, 10)[0] == 0.0 and wilson(10, 10)[1] == 1.0
    assert wilson(0, 0) == (None, None)


def _delong_by_pairs(y, s):
    """DeLong's variance from its definition (every positive-negative pair), O(m n)."""
    pos, neg = s[y], s[~y]
    psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    v10, v01 = psi.mean(axis=1), psi.mean(axis=0)
    return psi.mean(), np.var(v10, ddof=1) / len(pos) + np.var(v01, ddof=1) / len(neg)


def test_delong_agrees_with_its_definition_and_with_ties():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 400).astype(bool)
    s = np.round(y * 0.7 + rng.normal(size=400), 1)  # rounded: many ties
    auc, variance = _delong_by_pairs(y, s)
    result = delong_auc(y, s)
    assert result["auc"] == pytest.approx(auc, abs=1e-12)
    half = 1.959963984540054 * np.sqrt(variance)
    assert result["low"] == pytest.approx(auc - half, abs=1e-9)
    assert result["high"] == pytest.approx(auc + half, abs=1e-9)
    assert delong_auc([True, True], [0.2, 0.3])["auc"] is None


# -- labelled sets ---------------------------------------------------------------------------

def test_a_manifest_gives_each_image_its_source():
    images = load_set(str(CXR_MORE))
    assert {i.source for i in images} == {"nih", "kermany", "montgomery", "shenzhen", "jsrt"}
    assert {i.label for i in images} == {"normal", "pneumonia", "tuberculosis", "nodule"}
    assert all(i.path.is_file() for i in images[:50])
    named = load_set(f"more={CXR_MORE}")
    assert {i.source for i in named} == {f"more/{s}" for s in
                                         ("nih", "kermany", "montgomery", "shenzhen", "jsrt")}


def test_the_training_data_is_reduced_to_its_test_split():
    images = load_set(str(CXR))
    kept, notes, trained = keep_part(images, RELEASE_0_2_0 / "training" / "split.csv")
    assert len(kept) == 1656 and "test-split" in notes[0] and trained == ["cxr"]
    limited = limit_per_group(kept, 5, seed=1)
    assert sorted(i.label for i in limited) == ["covid"] * 5 + ["normal"] * 5
    assert limited == limit_per_group(kept, 5, seed=1)


def test_part_val_keeps_the_validation_images_only(tmp_path):
    """--part val: a set of the training data gives its validation images (those its split
    names so, nothing the split does not name); a set the split does not name is left out;
    the selection says these are not held-out figures."""
    import csv

    split = RELEASE_0_2_0 / "training" / "split.csv"
    with open(split, newline="") as handle:
        val_names = {row["path"] for row in csv.DictReader(handle) if row["split"] == "val"}
    kept, notes, trained = keep_part(load_set(str(CXR)), split, part="val")
    assert {i.name for i in kept} == val_names and trained == ["cxr"]
    assert "not held-out" in notes[0]

    other = tmp_path / "elsewhere" / "normal"
    other.mkdir(parents=True)
    (other / "a.jpg").write_bytes(next(CXR.glob("normal/*.jpg")).read_bytes())
    kept, notes, _ = keep_part(load_set(str(tmp_path / "elsewhere")), split, part="val")
    assert kept == [] and "left out" in notes[-1]
    images, selection = load_sets([str(CXR)], split, limit=3, part="val")
    assert selection["part"] == "val" and len(images) == 6
    with pytest.raises(LabelledSetError, match="needs the model's split file"):
        keep_part(load_set(str(CXR)), None, part="val")


def test_class_folders_and_bad_sets(tmp_path, covid_xray):
    (tmp_path / "site" / "covid").mkdir(parents=True)
    (tmp_path / "site" / "covid" / "a.jpg").write_bytes(covid_xray.read_bytes())
    images = load_set(str(tmp_path / "site"))
    assert [(i.name, i.label, i.source) for i in images] == [("covid/a.jpg", "covid", "site")]
    with pytest.raises(LabelledSetError, match="no such folder"):
        load_sets([str(tmp_path / "missing")], None)
    (tmp_path / "bad.csv").write_text("file,class\nx.jpg,covid\n")
    with pytest.raises(LabelledSetError, match="path and label"):
        load_set(str(tmp_path / "bad.csv"))


# -- bench sources ---------------------------------------------------------------------------

def run_cli(*args):
    from covid_edge.cli import main

    result = cli_runner().invoke(main, list(args))
    return result


@pytest.fixture(scope="module")
def sources_report(models_dir):
    result = run_cli("bench", "sources", str(CXR), str(CXR_MORE), "--model", str(models_dir),
                     "--limit", "4", "--json")
    assert result.exit_code == 0, result.output + result.stderr
    return json.loads(result.stdout)


def test_sources_report_counts_what_the_model_said(sources_report):
    report = sources_report
    predictions = report["predictions"]
    # 12 (source, label) groups; 11 when the model validated on a whole hospital's normals
    # (release 0.3.0: JSRT), which then are neither training nor test images.
    assert len(report["groups"]) in (11, 12)
    assert len(predictions) == report["selection"]["images"] == 4 * len(report["groups"])
    for group in report["groups"]:
        mine = [p for p in predictions
                if (p["source"], p["label"]) == (group["source"], group["label"])]
        called = group["guard_off"]["called"]["covid"]
        assert called["n"] == len(mine)
        assert called["k"] == sum(p["verdict"] == "covid" for p in mine)
        refused = sum(p["refused"] is not None for p in mine)
        assert group["refused"]["k"] == refused
        assert group["guard_on"]["n"] == len(mine) - refused
        assert called["low"] <= (called["rate"] or 0) <= called["high"]
    cxr = next(s for s in report["sources"] if s["source"] == "cxr" and s["mode"] == "guard_off")
    assert (cxr["n_positive"], cxr["n_negative"]) == (4, 4)
    assert cxr["roc_auc"]["auc"] is not None
    nih = next(s for s in report["sources"] if s["source"] == "nih" and s["mode"] == "guard_off")
    assert nih["roc_auc"]["auc"] is None and nih["roc_auc_against_pooled_positives"]["n_pos"] == 4


def test_sources_verdicts_are_the_ones_classify_gives(sources_report, models_dir):
    first = next(p for p in sources_report["predictions"] if p["source"] == "cxr")
    path = CXR / first["path"]
    result = run_cli("classify", str(path), "--model", str(models_dir), "--json")
    classified = json.loads(result.stdout)
    prediction = classified["results"][0]
    if first["refused"] is None:
        assert prediction["verdict"] == first["verdict"]
        assert prediction["probability"] == pytest.approx(first["probability"], abs=1e-9)


def test_sources_table_report_and_errors(models_dir, tmp_path):
    out = tmp_path / "report"
    result = run_cli("bench", "sources", str(CXR_MORE), "--model", str(models_dir), "--limit",
                     "2", "--out", str(out))
    assert result.exit_code == 0, result.output + result.stderr
    assert "called covid" in result.stdout and "kermany" in result.stdout
    assert max(len(line) for line in result.stdout.splitlines()) <= 100
    assert (out / "sources.json").is_file() and "# Per-source results" in (
        out / "sources.md").read_text()
    again = run_cli("bench", "sources", str(CXR_MORE), "--model", str(models_dir), "--limit",
                    "2", "--out", str(out))
    assert again.exit_code == 2 and "--force" in again.stderr
    missing = run_cli("bench", "sources", str(tmp_path / "nope"), "--model", str(models_dir),
                      "--json")
    assert missing.exit_code == 2 and json.loads(missing.stdout)["exit_code"] == 2


# -- bench shift -----------------------------------------------------------------------------

def test_shift_lossless_rotation_changes_nothing_and_jpeg_q10_changes_much(models_dir):
    result = run_cli("bench", "shift", str(CXR), "--model", str(models_dir), "--limit", "3",
                     "-p", "exif-rotated", "-p", "jpeg-q10", "--json")
    assert result.exit_code == 0, result.output + result.stderr
    report = json.loads(result.stdout)
    rows = {row["name"]: row for row in report["perturbations"]}
    assert list(rows) == ["exif-rotated", "jpeg-q10"]
    assert rows["exif-rotated"]["n"] == 6
    assert rows["exif-rotated"]["flips"]["k"] == 0
    assert rows["exif-rotated"]["max_abs_delta_p"] == 0.0  # the very same pixels
    assert rows["jpeg-q10"]["mean_abs_delta_p"] > 0.001
    assert sum(rows["jpeg-q10"]["delta_p_histogram"]) == rows["jpeg-q10"]["n"]
    flips = rows["jpeg-q10"]["flipped_images"]
    assert rows["jpeg-q10"]["flips"]["k"] == len(flips)


def test_shift_is_deterministic_and_writes_its_report(models_dir, tmp_path):
    args = ["bench", "shift", str(CXR), "--model", str(models_dir), "--limit", "2", "-p",
            "camera-capture", "-p", "noise-8", "--seed", "5"]
    first = json.loads(run_cli(*args, "--json").stdout)
    result = run_cli(*args, "--out", str(tmp_path / "shift"))
    assert result.exit_code == 0, result.stderr
    second = json.loads((tmp_path / "shift" / "shift.json").read_text())
    assert first["perturbations"] == second["perturbations"]
    assert "camera-capture" in (tmp_path / "shift" / "shift.md").read_text()


def test_shift_lists_and_refuses_unknown_perturbations(models_dir):
    listed = run_cli("bench", "shift", "--list")
    assert listed.exit_code == 0 and "camera-capture" in listed.stdout
    unknown = run_cli("bench", "shift", str(CXR), "--model", str(models_dir), "-p", "sepia",
                      "--json")
    assert unknown.exit_code == 2 and "sepia" in json.loads(unknown.stdout)["error"]


# -- the README and the model card quote the committed reports ------------------------------

def test_readme_and_card_quote_the_committed_reports(models_dir):
    from conftest import REPO_ROOT
    from covid_edge.benchmarks import card_summary

    card = json.loads((models_dir / "model_card.json").read_text())
    recorded = card[card_summary.CARD_KEY]
    # The reports the card quotes (their Markdown), with their JSON beside them.
    sources, shift = (json.loads((REPO_ROOT / recorded["reports"][name]).with_suffix(".json")
                                 .read_text()) for name in ("sources", "shift"))
    expected = card_summary.summarise(sources, shift, recorded["reports"]["sources"],
                                      recorded["reports"]["shift"])
    assert json.loads(json.dumps(expected)) == recorded, "re-run scripts/record_behaviour.py"
    section = "\n".join(card_summary.markdown(recorded)).rstrip()
    readme = (REPO_ROOT / "README.md").read_text()
    assert section in readme
    assert (sources["model"]["name"], sources["model"]["version"]) == (card["name"],
                                                                        card["version"])


def test_sources_refuses_exactly_what_classify_refuses(models_dir):
    """Guard on in the benchmark is the guard of `classify`: every check, the lung check
    and the feature test included, on images it should refuse (lateral views, CT, knees)."""
    folder = SHARED / "data" / "not-frontal-chest"
    result = run_cli("bench", "sources", str(folder), "--model", str(models_dir), "--limit", "3",
                     "--json")
    assert result.exit_code == 0, result.output + result.stderr
    predictions = json.loads(result.stdout)["predictions"]
    assert {p["label"] for p in predictions} == {"lateral", "ct", "knee"}
    classified = json.loads(run_cli("classify", *[str(folder / p["path"]) for p in predictions],
                                    "--model", str(models_dir), "--json").stdout)["results"]
    for benchmark, answer in zip(predictions, classified):
        assert (benchmark["refused"] is not None) == (answer["verdict"] == "not a chest X-ray"), (
            benchmark, answer)
        assert benchmark["refused"] == answer["reason"]


def test_sources_on_the_validation_part(models_dir):
    """`--part val` scores the validation images of the model's own split, says so, and the
    command it records reruns the same choice."""
    result = run_cli("bench", "sources", str(CXR), "--model", str(models_dir), "--part", "val",
                     "--limit", "2", "--json")
    assert result.exit_code == 0, result.output + result.stderr
    report = json.loads(result.stdout)
    assert report["selection"]["part"] == "val" and report["selection"]["images"] == 4
    assert "not held-out" in report["selection"]["notes"][0]
    assert "--part val" in report["command"]
