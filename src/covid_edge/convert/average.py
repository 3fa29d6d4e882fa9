"""`covid-edge average`: one model whose weights are the average of several training runs'.

Runs fine-tuned from one starting point (the same ImageNet backbone, the same head after the
same first epoch) usually lie in one basin of the loss, where the mean of their weights is a
good network too, and often steadier under distribution shift than either ("model soups",
Wortsman et al. 2022). Averaging costs minutes where another training run costs hours.

RUN_DIR... (model.keras, run.json, split.csv each; the same data, classes, preprocessing and
split) -> the mean of every floating-point weight -> a run folder like `train`'s (model.keras,
split.csv, predictions, metrics, threshold on validation, run.json naming its ingredients),
which `covid-edge convert` takes as it takes a trained run.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import fields, replace
from pathlib import Path

import numpy as np

from .. import dataset
from .train import TrainConfig, check_out_dir, prepare, record_run

# What must agree for two runs' weights to be averaged and their split reused: the images,
# their labels, and what the network sees.
SAME_DATA = ("data_dir", "more_data", "label_map", "positive", "validation_sources",
             "image_size", "crop", "high_bit_window", "limit_per_class")


class AverageError(Exception):
    """Runs that cannot be averaged, or an output folder that would be overwritten."""


def load_run(run_dir: Path) -> dict:
    for name in ("model.keras", "run.json", "split.csv"):
        if not (run_dir / name).is_file():
            raise AverageError(f"{run_dir} has no {name}: give run folders that `covid-edge "
                               "train` wrote")
    return json.loads((run_dir / "run.json").read_text(encoding="utf-8"))


def check_compatible(run_dirs: list[Path], runs: list[dict]) -> None:
    first_dir, first = run_dirs[0], runs[0]
    first_split = dataset.read_split(first_dir / "split.csv")
    for run_dir, run in zip(run_dirs[1:], runs[1:]):
        for key in ("labels", "positive_label", "output_kind", "preprocessing"):
            if run.get(key) != first.get(key):
                raise AverageError(f"{run_dir} and {first_dir} differ in {key}: only runs of "
                                   "the same classes and preprocessing can be averaged")
        for key in SAME_DATA:
            mine, theirs = run["config"].get(key), first["config"].get(key)
            if _normal(mine) != _normal(theirs):
                raise AverageError(f"{run_dir} and {first_dir} differ in {key} ({theirs!r} "
                                   f"against {mine!r}): only runs of the same data can be "
                                   "averaged")
        items, _, split = dataset.read_split(run_dir / "split.csv")
        if ([(i.root, i.path) for i in items] != [(i.root, i.path) for i in first_split[0]]
                or list(split) != list(first_split[2])):
            raise AverageError(f"{run_dir} and {first_dir} split their images differently: "
                               "train the ingredients with --split-from the same split.csv")


def _normal(value):
    return list(value) if isinstance(value, (list, tuple)) else value


def mean_weights(models) -> list[np.ndarray]:
    """The mean of each floating-point variable over `models`; other variables (e.g. a seed
    generator's state) are the first model's."""
    reference = models[0].weights
    for model in models[1:]:
        if [(w.path, tuple(w.shape)) for w in model.weights] != [
                (w.path, tuple(w.shape)) for w in reference]:
            raise AverageError("the models' layers differ: only runs of one architecture "
                               "can be averaged")
    averaged = []
    for index, variable in enumerate(reference):
        values = [np.asarray(model.weights[index].numpy()) for model in models]
        if np.issubdtype(values[0].dtype, np.floating):
            averaged.append(np.mean(np.stack(values).astype(np.float64), axis=0)
                            .astype(values[0].dtype))
        else:
            averaged.append(values[0])
    return averaged


def check_runs(run_dirs: list[Path], out_dir: Path, force: bool = False) -> list[dict]:
    """The runs' run.json, once they are known to average into `out_dir` (no TensorFlow
    needed: a command that cannot run says so before TensorFlow's seconds of start-up)."""
    if len(run_dirs) < 2:
        raise AverageError("give at least two run folders to average")
    if any(out_dir.resolve() == run_dir.resolve() for run_dir in run_dirs):
        raise AverageError(f"--out {out_dir} is one of the runs: write the average elsewhere")
    try:
        check_out_dir(out_dir, force)
    except FileExistsError as exc:
        raise AverageError(str(exc)) from None
    runs = [load_run(run_dir) for run_dir in run_dirs]
    check_compatible(run_dirs, runs)
    return runs


def average(run_dirs: list[str | Path], out_dir: str | Path, log, progress,
            force: bool = False) -> dict:
    """Average the runs' weights into a new run folder; returns its run.json summary."""
    import keras

    started = time.time()
    run_dirs = [Path(run_dir) for run_dir in run_dirs]
    out_dir = Path(out_dir)
    runs = check_runs(run_dirs, out_dir, force)

    known = {f.name for f in fields(TrainConfig)}
    first = {key: value for key, value in runs[0]["config"].items() if key in known}
    first = {key: tuple(value) if isinstance(value, list) else value
             for key, value in first.items()}
    weights = [1 / len(run_dirs)] * len(run_dirs)
    config = replace(TrainConfig(**first), out_dir=str(out_dir),
                     split_from=str(run_dirs[0] / "split.csv"),
                     extra={"average": {"runs": [str(run_dir) for run_dir in run_dirs],
                                        "weights": weights,
                                        "configs": [run["config"] for run in runs]}})

    log(f"averaging {len(run_dirs)} runs with equal weights: "
        + ", ".join(str(run_dir) for run_dir in run_dirs))
    models = [keras.saving.load_model(run_dir / "model.keras", compile=False)
              for run_dir in run_dirs]
    model = models[0]
    model.set_weights(mean_weights(models))

    data = prepare(config, log, progress)
    out_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(run_dirs[0] / "split.csv", out_dir / "split.csv")
    model.save(out_dir / "model.keras")
    return record_run(model, data, config, out_dir, [], log, started)
