"""`train-lungs` and `convert-lungs` on a tiny U-Net (32 px, a few pairs per source): the
commands' plumbing, the pack, the split and the int8 checks. Real Keras, real LiteRT."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import SHARED, subprocess_env

pytest.importorskip("tensorflow", reason="needs the [train] extra")
pytestmark = [pytest.mark.train]

LUNGS = SHARED / "data" / "lungs"


def covid_edge(*args, check=True):
    result = subprocess.run([sys.executable, "-m", "covid_edge.cli", *map(str, args)],
                            capture_output=True, text=True, env=subprocess_env(), timeout=600)
    if check and result.returncode != 0:
        raise AssertionError(f"covid-edge {' '.join(map(str, args))} failed:\n"
                             f"{result.stderr[-3000:]}")
    return result


@pytest.fixture(scope="module")
def pack(tmp_path_factory):
    if not (LUNGS / "MANIFEST.csv").is_file():
        pytest.skip("../shared/data/lungs not found")
    path = tmp_path_factory.mktemp("pack") / "lungs-32.npz"
    covid_edge("train-lungs", LUNGS, "--pack", path, "--image-size", 32,
               "--limit-per-source", 6)
    return path


@pytest.fixture(scope="module")
def run_dir(pack, tmp_path_factory):
    out = tmp_path_factory.mktemp("lungs-run")
    covid_edge("train-lungs", pack, "--out", out, "--image-size", 32, "--base-filters", 2,
               "--depth", 2, "--epochs", 1, "--batch-size", 8, "--hold-out", "jsrt")
    return out


def test_pack_keeps_masks_at_their_resolution(pack):
    from covid_edge.convert import lungs_data
    from covid_edge.convert.lungs_train import spec_for

    data = lungs_data.load(pack, spec_for(32))
    assert len(data) == 24 and data.pixels.shape == (24, 32, 32)
    assert data.masks.shape == (24, 256, 256) and data.masks.dtype == bool
    with pytest.raises(ValueError, match="packed with preprocessing"):
        lungs_data.load(pack, spec_for(64))


def test_hold_out_source_is_never_trained_on(run_dir):
    with open(run_dir / "split.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert {r["split"] for r in rows if r["source"] == "jsrt"} == {"test"}
    assert "test" not in {r["split"] for r in rows if r["source"] != "jsrt"}
    run = json.loads((run_dir / "run.json").read_text())
    assert run["config"]["hold_out"] == "jsrt"
    assert set(run["metrics_float"]["test"]) == {"jsrt", "all"}
    assert run["versions"]["keras_backend"]


def test_convert_writes_an_integer_only_model_and_card(run_dir, pack, tmp_path):
    result = covid_edge("convert-lungs", run_dir, "--data", pack, "--out", tmp_path,
                        "--calibration-images", 10, check=False)
    card = json.loads((tmp_path / "lung_model_card.json").read_text())
    # an untrained tiny model may miss the int8 Dice target: exit 1 then, and the card says so
    assert result.returncode == (0 if card["metrics"]["int8_within_target"] else 1)
    assert card["integer_only"] and card["input"]["lossless"]
    assert card["held_out_source"] == "jsrt"
    assert card["preprocessing"]["height"] == 32 and card["preprocessing"]["channels"] == 1
    # both upsamplings of the depth-2 U-Net as ops XNNPACK runs (convert/upsample_ops.py)
    assert "TILE" not in card["ops"] and "DEPTH_TO_SPACE" in card["ops"]
    assert list(card["conversion"]["graph_rewrites"].values()) == [2]
    from covid_edge.edge_runtime.lungs import LungSegmenter
    from covid_edge.model_card import sha256_file

    assert sha256_file(tmp_path / card["file"]) == card["sha256"]
    assert card["version"] == "dev"
    again = covid_edge("convert-lungs", run_dir, "--data", pack, "--out", tmp_path, check=False)
    assert again.returncode == 1 and "--force" in again.stderr
    assert sha256_file(tmp_path / card["file"]) == card["sha256"]  # left alone
    segmenter = LungSegmenter.load(tmp_path)
    result = segmenter.segment(np.full((300, 200), 90, dtype=np.uint8))
    assert result.mask.shape == (32, 32) and 0.0 <= result.probabilities.min()


def test_other_data_is_refused(run_dir, tmp_path):
    result = covid_edge("convert-lungs", run_dir, "--data", LUNGS, "--out", tmp_path,
                        check=False)
    assert result.returncode == 1
    assert "not the data" in result.stderr


def test_left_out_sources_are_in_no_part():
    from covid_edge.convert import lungs_data

    sources = np.array(["montgomery"] * 10 + ["shenzhen"] * 10 + ["jsrt"] * 10
                       + ["kermany-v7"] * 10)
    parts = lungs_data.split(sources, "shenzhen", 0.1, seed=0, leave_out=("kermany-v7",))
    used = np.concatenate(list(parts.values()))
    assert set(sources[used]) == {"montgomery", "shenzhen", "jsrt"}
    assert set(sources[parts["test"]]) == {"shenzhen"}
    assert len(np.unique(used)) == len(used) == 30


def test_leave_out_refuses_the_held_out_source(pack, tmp_path):
    done = covid_edge("train-lungs", pack, "--out", tmp_path / "run", "--image-size", 32,
                      "--hold-out", "jsrt", "--leave-out", "jsrt", check=False)
    assert done.returncode == 1 and "other than --hold-out" in done.stderr
    assert "Traceback" not in done.stderr


def test_convention_heads_train_each_image_on_its_own_output(pack, tmp_path):
    """--convention-heads: the mask goes in the image's own convention's channel, the loss
    ignores the other, and the run (two outputs) converts to a model the runtime reads on
    channel 0, the adult convention's."""
    from covid_edge.convert import lungs_data
    from covid_edge.convert.lungs_train import (NO_TARGET, dice_bce_loss, make_batches,
                                                own_channel_loss, spec_for)

    data = lungs_data.load(pack, spec_for(32))
    heads = np.array([lungs_data.CONVENTION_HEAD_OF[s] for s in data.sources])
    assert set(heads[data.sources == "kermany-v7"]) == {1}
    assert set(heads[data.sources != "kermany-v7"]) == {0}
    x, y = make_batches(data.pixels, data.targets, data.spec, 24, heads=heads)[0]
    assert y.shape == (24, 32, 32, 2)
    for i, head in enumerate(heads):
        np.testing.assert_allclose(y[i, ..., head], data.targets[i] / 255.0, atol=1e-6)
        assert (y[i, ..., 1 - head] == NO_TARGET).all()
    # On one channel it is the plain loss; another convention's channel changes nothing.
    rng = np.random.default_rng(0)
    prediction = rng.uniform(0.01, 0.99, y.shape).astype(np.float32)
    own = prediction.copy()
    own[np.arange(24), ..., 1 - heads] = rng.uniform(0.01, 0.99, (24, 32, 32))
    np.testing.assert_allclose(np.asarray(own_channel_loss(y, prediction)),
                               np.asarray(own_channel_loss(y, own)), rtol=1e-5)
    single = data.targets[..., None].astype(np.float32) / 255.0
    np.testing.assert_allclose(np.asarray(own_channel_loss(single, prediction[..., :1])),
                               np.asarray(dice_bce_loss(single, prediction[..., :1])), rtol=1e-4)

    run = tmp_path / "run"
    covid_edge("train-lungs", pack, "--out", run, "--image-size", 32, "--base-filters", 2,
               "--depth", 2, "--epochs", 1, "--batch-size", 8, "--hold-out", "shenzhen",
               "--convention-heads")
    summary = json.loads((run / "run.json").read_text())
    assert summary["config"]["convention_heads"] and summary["outputs"]["0"].startswith("adult")
    covid_edge("convert-lungs", run, "--data", pack, "--out", tmp_path / "int8",
               "--calibration-images", 10, check=False)
    card = json.loads((tmp_path / "int8" / "lung_model_card.json").read_text())
    assert all("--convention-heads" in line for line in card["reproduce"]
               if line.startswith("covid-edge train-lungs"))
    from covid_edge.edge_runtime.lungs import LungSegmenter

    segmenter = LungSegmenter.load(tmp_path / "int8")
    # A fold converted into a freely named folder is named by its card's held-out source.
    covid_edge("convert-lungs", run, "--data", pack, "--out", tmp_path / "release",
               "--calibration-images", 10, "--loso", tmp_path / "int8", check=False)
    release = json.loads((tmp_path / "release" / "lung_model_card.json").read_text())
    assert set(release["leave_one_source_out"]) == {"shenzhen"}
    assert any(line.startswith("covid-edge train-lungs ../shared/data/lungs --hold-out shenzhen "
                               f"--out {run} ") for line in release["reproduce"])
    # What ships is channel 0 alone, with channel 0's values unchanged.
    assert list(segmenter.output_details["shape"]) == [1, 32, 32, 1]
    assert "adult convention" in card["output"]
    import keras

    from covid_edge.convert.lungs_model import runtime_model
    trained = keras.saving.load_model(run / "model.keras", compile=False)
    single = runtime_model(trained)
    assert single.output_shape == (None, 32, 32, 1)
    np.testing.assert_allclose(np.asarray(single(x[:4])), np.asarray(trained(x[:4]))[..., :1],
                               rtol=1e-6, atol=1e-6)
    assert segmenter.segment(np.full((300, 200), 90, dtype=np.uint8)).mask.shape == (32, 32)
