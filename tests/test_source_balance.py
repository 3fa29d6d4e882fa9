"""--source-balance: how a class's loss weight is shared among its hospitals."""

import numpy as np
import pytest

from covid_edge.convert.train import class_weights, training_weights


LABELS = np.array([0] * 100 + [0] * 4 + [1] * 30 + [2] * 9)
SOURCES = np.array(["cxr"] * 100 + ["montgomery"] * 4 + ["kermany"] * 30 + ["cxr"] * 9)


def test_none_is_the_class_weights_of_every_release_so_far():
    np.testing.assert_array_equal(training_weights(LABELS, SOURCES, 3, "none"),
                                  class_weights(LABELS, 3)[LABELS])


def test_sqrt_shares_each_class_by_the_root_of_its_sources_sizes():
    weights = training_weights(LABELS, SOURCES, 3, "sqrt")
    plain = class_weights(LABELS, 3)[LABELS]
    for label in range(3):  # each class weighs what it did
        assert weights[LABELS == label].sum() == pytest.approx(plain[LABELS == label].sum())
    big, small = weights[0], weights[100]
    # 100 and 4 normals: cell totals 10 : 2, so one small-source image weighs 5x one big.
    assert weights[:100].sum() / weights[100:104].sum() == pytest.approx(10 / 2)
    assert small / big == pytest.approx(5.0)
    # A class with one source is unchanged.
    np.testing.assert_allclose(weights[LABELS == 1], plain[LABELS == 1])


def test_an_unknown_balance_is_refused():
    with pytest.raises(ValueError, match="sqrt"):
        training_weights(LABELS, SOURCES, 3, "log")


def test_the_cards_train_command_carries_the_option():
    from pathlib import Path

    from covid_edge.convert.convert import train_command

    config = {"data_dir": "../shared/data/cxr", "weights": "w.h5", "image_size": 224,
              "batch_size": 32, "head_epochs": 1, "fine_tune_epochs": 2,
              "fine_tune_from": "block_12_expand", "target_sensitivity": 0.98, "seed": 0}
    assert "--source-balance" not in train_command(config, Path("runs/a"))
    command = train_command({**config, "source_balance": "sqrt"}, Path("runs/a"))
    assert command.endswith("--source-balance sqrt --invariance 0.0 --high-bit-depth minmax")
