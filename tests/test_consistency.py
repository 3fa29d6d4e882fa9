"""`train --consistency`: the pair loss is cross-entropy plus the weighted Jensen-Shannon
divergence of the two views; `--start-from` continues a run on its own split, and the card
lists both runs' commands."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from conftest import CXR, CXR_MORE, run_covid_edge
from test_average import refused


@pytest.fixture(scope="module")
def keras():
    return pytest.importorskip("keras")


def test_jensen_shannon_values(keras):
    from covid_edge.convert.consistency import jensen_shannon

    p = np.array([[1.0, 0.0], [0.5, 0.5], [0.2, 0.8]], dtype=np.float32)
    q = np.array([[0.0, 1.0], [0.5, 0.5], [0.2, 0.8]], dtype=np.float32)
    js = np.asarray(jensen_shannon(p, q))
    # Disjoint distributions: ln 2, the largest value; equal ones: 0.
    np.testing.assert_allclose(js, [math.log(2), 0.0, 0.0], atol=1e-5)
    a, b = np.array([[0.9, 0.1]]), np.array([[0.6, 0.4]])
    m = (a + b) / 2
    expected = 0.5 * (np.sum(a * np.log(a / m)) + np.sum(b * np.log(b / m)))
    np.testing.assert_allclose(np.asarray(jensen_shannon(a, b)), [expected], rtol=1e-5)


def test_pair_loss_softmax_and_sigmoid(keras):
    from covid_edge.convert.consistency import pair_loss

    y = np.array([0, 2])
    a = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]], dtype=np.float32)
    b = np.array([[0.3, 0.4, 0.3], [0.1, 0.1, 0.8]], dtype=np.float32)
    loss = np.asarray(pair_loss(3, 12.0, sparse=True)(y, np.concatenate([a, b], axis=1)))
    entropy = 0.5 * (-np.log(a[np.arange(2), y]) - np.log(b[np.arange(2), y]))
    m = (a[0] + b[0]) / 2
    js = 0.5 * (np.sum(a[0] * np.log(a[0] / m)) + np.sum(b[0] * np.log(b[0] / m)))
    np.testing.assert_allclose(loss, [entropy[0] + 12 * js, entropy[1]], rtol=1e-4)

    # A sigmoid unit p is the distribution (1 - p, p): equal views cost the plain
    # binary cross-entropy, different ones more.
    sigmoid = pair_loss(1, 12.0, sparse=False)
    y = np.array([[1.0]], dtype=np.float32)
    same = np.asarray(sigmoid(y, np.array([[0.8, 0.8]], dtype=np.float32)))
    apart = np.asarray(sigmoid(y, np.array([[0.8, 0.3]], dtype=np.float32)))
    np.testing.assert_allclose(same, [-math.log(0.8)], rtol=1e-4)
    assert apart[0] > 0.5 * (-math.log(0.8) - math.log(0.3)) + 0.1


def test_pair_batches_are_the_picture_and_its_re_encoding():
    from covid_edge.convert.augment import Augmenter
    from covid_edge.convert.consistency import make_pair_batches
    from covid_edge.convert.invariance import InvarianceAugmenter
    from covid_edge.preprocess import PreprocessSpec

    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (5, 32, 32), dtype=np.uint8)
    labels = np.array([0, 1, 2, 0, 1])
    spec = PreprocessSpec(height=32, width=32)
    chain_calls = []

    def chain(image, generator):
        chain_calls.append(image.dtype)
        return InvarianceAugmenter(p=1.0).chain(image, generator)

    def batches():
        return make_pair_batches(pixels, labels, spec, 4, augmenter=Augmenter(), chain=chain,
                                 weights=np.array([1.0, 2.0, 3.0])[labels], seed=3,
                                 sparse=True)

    (view_a, view_b), y, w = batches()[0]
    assert view_a.shape == view_b.shape == (4, 32, 32, 3)
    assert not np.array_equal(view_a, view_b)  # B is A re-encoded
    assert chain_calls == [np.uint8] * 4
    (again_a, again_b), _, _ = batches()[0]  # seeded: the same pairs again
    np.testing.assert_array_equal(view_a, again_a)
    np.testing.assert_array_equal(view_b, again_b)
    assert set(zip(y.tolist(), w.tolist())) <= {(0, 1.0), (1, 2.0), (2, 3.0)}


def test_start_from_with_consistency(three_class_run, tmp_path):
    """One consistency epoch from a trained run: its split is reused, its config recorded,
    and the card's reproduce lists the first run's command, then this one's."""
    out = tmp_path / "continued"
    run_covid_edge("train", CXR, CXR_MORE, "--out", out,
                   "--map", "tuberculosis=drop", "--map", "nodule=drop",
                   "--image-size", 96, "--limit-per-class", 40, "--batch-size", 16,
                   "--start-from", three_class_run, "--head-epochs", 0,
                   "--fine-tune-epochs", 1, "--consistency", 12, "--invariance", 0)
    assert (out / "split.csv").read_bytes() == (three_class_run / "split.csv").read_bytes()
    run = json.loads((out / "run.json").read_text())
    assert run["config"]["consistency"] == 12
    assert run["config"]["extra"]["start_from"]["run"] == str(three_class_run)
    history = (out / "history.csv").read_text().splitlines()
    assert len(history) == 2 and history[1].startswith("fine-tune,1,")

    from covid_edge.convert.convert import reproduce_commands

    first, second, convert = reproduce_commands(run, "data", 300, 0)
    assert f"--out {three_class_run} " in first and "--start-from" not in first
    assert f"--start-from {three_class_run}" in second and "--consistency 12" in second
    assert "--head-epochs 0" in second and "--split-from" not in second
    assert convert.startswith(f"covid-edge convert {out}/model.keras")


def test_start_from_refusals(three_class_run, tmp_path):
    code, err = refused("train", CXR, "--out", tmp_path / "a",
                        "--head-epochs", 0)
    assert code == 2 and "--start-from" in err
    code, err = refused("train", CXR, "--out", tmp_path / "b",
                        "--start-from", tmp_path)
    # checked before TensorFlow loads: a usage error
    assert code == 2 and "holds no model.keras" in err and "--start-from" in err
    other = tmp_path / "other.csv"
    lines = (three_class_run / "split.csv").read_text().splitlines()
    other.write_text("\n".join(lines[:-1]) + "\n")
    code, err = refused("train", CXR, "--out", tmp_path / "c",
                        "--start-from", three_class_run, "--split-from", other)
    assert code == 1 and "split the images differently" in err
