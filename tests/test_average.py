"""`covid-edge average`: the weights' mean of several runs, written as a run folder that
`convert` takes; runs of other data or splits are refused with a reason."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest

from conftest import run_covid_edge, subprocess_env


def refused(*args):
    """`covid-edge ARGS` expected to fail: (exit code, stderr)."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "covid_edge.cli", *map(str, args)],
                          capture_output=True, text=True, env=subprocess_env(), timeout=600)
    return done.returncode, done.stderr


def predictions(run_dir):
    with open(run_dir / "predictions.csv", newline="") as handle:
        return {row["path"]: float(row["probability"]) for row in csv.DictReader(handle)}


def test_reproduce_commands_of_an_average():
    from covid_edge.convert.convert import reproduce_commands

    def config(out, head):
        return {"out_dir": out, "data_dir": "data", "weights": "w.h5", "image_size": 224,
                "batch_size": 32, "head_epochs": head, "fine_tune_epochs": 2,
                "fine_tune_from": "block_12_expand", "target_sensitivity": 0.98, "seed": 0}

    ingredients = [config("runs/a", 1), config("runs/b", 2)]
    run = {"config": {**config("runs/avg", 1),
                      "extra": {"average": {"runs": ["runs/a", "runs/b"], "weights": [0.5, 0.5],
                                            "configs": ingredients}}}}
    commands = reproduce_commands(run, "data", 300, 0)
    assert commands[0].startswith("covid-edge train data --out runs/a ")
    assert "--head-epochs 2" in commands[1] and "--out runs/b " in commands[1]
    assert commands[2] == "covid-edge average runs/a runs/b --out runs/avg"
    assert commands[3].startswith("covid-edge convert runs/avg/model.keras")

    # Two runs continued from one: that run's command appears once, first.
    continued = [{**config(out, 0), "extra": {"start_from": {"config": config("runs/a", 1)}}}
                 for out in ("runs/c", "runs/d")]
    run["config"]["extra"]["average"] = {"runs": ["runs/c", "runs/d"], "weights": [0.5, 0.5],
                                         "configs": continued}
    commands = reproduce_commands(run, "data", 300, 0)
    assert [c.split(" --out ")[1].split()[0] for c in commands[:3]] == [
        "runs/a", "runs/c", "runs/d"]
    assert commands[3] == "covid-edge average runs/c runs/d --out runs/avg"


def test_average_of_two_runs(three_class_run, tmp_path):
    """A copy of a run with every weight shifted: the average's weights are the mean, it
    records its ingredients, and averaging a run with itself gives that run's outputs."""
    keras = pytest.importorskip("keras")
    shifted = tmp_path / "shifted"
    shutil.copytree(three_class_run, shifted)
    model = keras.saving.load_model(three_class_run / "model.keras", compile=False)
    model.set_weights([w + 0.01 if np.issubdtype(w.dtype, np.floating) else w
                       for w in model.get_weights()])
    model.save(shifted / "model.keras")

    out = tmp_path / "avg"
    done = run_covid_edge("average", three_class_run, shifted, "--out", out)
    assert "next: covid-edge convert" in done.stdout
    averaged = keras.saving.load_model(out / "model.keras", compile=False)
    original = keras.saving.load_model(three_class_run / "model.keras", compile=False)
    for mean, first in zip(averaged.get_weights(), original.get_weights()):
        if np.issubdtype(first.dtype, np.floating):
            np.testing.assert_allclose(mean, first + 0.005, atol=1e-6)
    run = json.loads((out / "run.json").read_text())
    recorded = run["config"]["extra"]["average"]
    assert recorded["runs"] == [str(three_class_run), str(shifted)]
    assert recorded["weights"] == [0.5, 0.5]
    assert run["config"]["split_from"] == str(three_class_run / "split.csv")
    assert (out / "split.csv").read_bytes() == (three_class_run / "split.csv").read_bytes()
    assert set(run["metrics"]) == {"train", "val", "test"}
    assert not (out / "history.csv").exists() and (out / "predictions.csv").is_file()

    same = tmp_path / "same"
    run_covid_edge("average", three_class_run, three_class_run, "--out", same)
    mine, theirs = predictions(same), predictions(three_class_run)
    assert mine.keys() == theirs.keys()
    assert max(abs(mine[path] - theirs[path]) for path in mine) <= 2e-6


def test_average_refuses_what_it_cannot_average(three_class_run, tmp_path):
    other = tmp_path / "other-split"
    shutil.copytree(three_class_run, other)
    with open(other / "split.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    rows[0]["split"] = "test" if rows[0]["split"] != "test" else "train"  # one image moves
    with open(other / "split.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    code, said = refused("average", three_class_run, other, "--out", tmp_path / "x")
    assert code == 1 and "split their images differently" in said

    code, said = refused("average", three_class_run, "--out", tmp_path / "y")
    assert code == 1 and "at least two run folders" in said

    code, said = refused("average", three_class_run, other, "--out", other)
    assert code == 1 and "is one of the runs" in said

    not_a_run = tmp_path / "empty"
    not_a_run.mkdir()
    code, said = refused("average", three_class_run, not_a_run, "--out", tmp_path / "z")
    assert code == 1 and "has no model.keras" in said


def test_the_card_links_only_the_training_pictures_it_has(tmp_path):
    """An averaged run trained nothing: its card links no curves, and no stale curves of an
    earlier conversion remain to be linked."""
    from conftest import REPO_ROOT
    from covid_edge.convert.card_markdown import write_markdown

    card = json.loads((REPO_ROOT / "models" / "model_card.json").read_text())
    (tmp_path / "training").mkdir()
    (tmp_path / "training" / "confusion_matrix.png").write_bytes(b"")
    text = write_markdown(card, tmp_path).read_text()
    assert "Training pictures: [confusion matrix](training/confusion_matrix.png)." in text
    assert "training_curves.png" not in text


def test_the_cards_limits_name_the_models_own_classes(tmp_path):
    """The limits follow the card's labels: the three-class release does not call itself a
    two-class model, and 0.2.0's card (two classes) still says two."""
    from conftest import REPO_ROOT
    from covid_edge.convert.card_markdown import write_markdown

    release = json.loads((REPO_ROOT / "models" / "model_card.json").read_text())
    text = write_markdown(release, tmp_path).read_text()
    assert "- Three classes only (normal, pneumonia, covid)" in text
    assert "normal/pneumonia/covid answer anyway" in text
    assert "Two classes only" not in text
    assert "COVID images and the normal and pneumonia ones come from" in text

    two = dict(release, labels=["normal", "covid"])
    text = write_markdown(two, tmp_path).read_text()
    assert "- Two classes only (normal, covid)" in text
    assert "COVID and normal images come from" in text
