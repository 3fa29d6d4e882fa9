"""`covid-edge train`: two-phase MobileNetV2 training on a folder of labelled chest X-rays.

DATA_DIR/{covid,normal} -> pixels (covid_edge.preprocess, the same code the device runs) ->
duplicate-aware stratified split -> phase 1: new head on the frozen backbone -> phase 2: the
top blocks fine-tuned with BatchNormalization frozen -> screening threshold on validation ->
metrics, pictures and model.keras in RUN_DIR.
"""

from __future__ import annotations

import csv
import json
import math
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .. import dataset, metrics
from ..preprocess import PreprocessSpec, load_pixels, to_model_input
from .augment import Augmenter

RUN_FILES = ("model.keras", "run.json", "metrics.json", "split.csv", "history.csv", "predictions.csv")


@dataclass
class TrainConfig:
    data_dir: str
    out_dir: str
    weights: str | None = "imagenet"
    image_size: int = 224
    batch_size: int = 32
    head_epochs: int = 2
    fine_tune_epochs: int = 6
    head_learning_rate: float = 1e-3
    fine_tune_learning_rate: float = 1e-4
    fine_tune_from: str = "block_12_expand"
    dropout: float = 0.2
    target_sensitivity: float = 0.98
    corner_erase: float = 0.5
    crop: str | None = None  # "lungs": crop to the lung fields before the resize (preprocess)
    split_fractions: tuple[float, float, float] = (0.70, 0.15, 0.15)
    limit_per_class: int | None = None
    seed: int = 0
    extra: dict = field(default_factory=dict)


def check_out_dir(out_dir: Path, force: bool) -> None:
    existing = [name for name in RUN_FILES if (out_dir / name).exists()]
    if existing and not force:
        raise FileExistsError(
            f"{out_dir} already holds a run ({', '.join(existing)}); choose another --out "
            "or pass --force to overwrite it")


def select_items(items: list[dataset.Item], limit_per_class: int | None,
                 seed: int) -> list[dataset.Item]:
    """All items, or a seeded random `limit_per_class` of each class (for quick trials)."""
    if not limit_per_class:
        return items
    rng = np.random.default_rng(seed)
    chosen = []
    for label in dataset.LABELS:
        of_class = [item for item in items if item.label == label]
        picks = rng.permutation(len(of_class))[:limit_per_class]
        chosen += [of_class[i] for i in sorted(picks)]
    return chosen


def load_all_pixels(data_dir: Path, items: list[dataset.Item], spec: PreprocessSpec,
                    progress: Callable) -> np.ndarray:
    pixels = np.empty((len(items), spec.height, spec.width), dtype=np.uint8)
    for index, item in enumerate(progress(items, "reading images")):
        pixels[index] = load_pixels(data_dir / item.path, spec)
    return pixels


def class_weights(labels: np.ndarray) -> np.ndarray:
    """Weights so that each class contributes equally to the loss (COVID is the minority)."""
    counts = np.bincount(labels, minlength=2).astype(np.float64)
    return len(labels) / (2.0 * np.maximum(counts, 1))


def seeded_batches(count: int, batch_size: int, make_batch, *, seed: int = 0,
                   shuffle: bool = False):
    """A Keras PyDataset over `count` items: the order reshuffled every epoch from
    (seed, epoch), and make_batch(chosen indices, rng) given a generator seeded by
    (seed, epoch, batch), so a run is reproducible bit for bit (the classifier and the lung
    model train on it)."""
    import keras

    class SeededBatches(keras.utils.PyDataset):
        def __init__(self):
            super().__init__(workers=1, use_multiprocessing=False)
            self.epoch = 0
            self.order = self._order()

        def _order(self):
            if not shuffle:
                return np.arange(count)
            return np.random.default_rng([seed, self.epoch]).permutation(count)

        def __len__(self):
            return math.ceil(count / batch_size)

        def __getitem__(self, index):
            chosen = self.order[index * batch_size:(index + 1) * batch_size]
            return make_batch(chosen, np.random.default_rng([seed, self.epoch, index]))

        def on_epoch_end(self):
            self.epoch += 1
            self.order = self._order()

    return SeededBatches()


def make_batches(pixels, labels, spec, batch_size, *, augmenter=None, weights=None, seed=0,
                 shuffle=False):
    """Batches of model inputs and labels (and class weights when given)."""

    def make_batch(chosen, rng):
        images = pixels[chosen]
        if augmenter is not None:
            images = augmenter(images, rng)
        x = to_model_input(images, spec)
        y = labels[chosen].astype(np.float32)
        if weights is None:
            return x, y
        return x, y, weights[labels[chosen]].astype(np.float32)

    return seeded_batches(len(labels), batch_size, make_batch, seed=seed, shuffle=shuffle)


def fit_phase(model, name, train_data, val_data, epochs, learning_rate, history_rows, log):
    import keras

    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss="binary_crossentropy",
        metrics=[keras.metrics.BinaryAccuracy(name="accuracy"), keras.metrics.AUC(name="auc"),
                 keras.metrics.Recall(name="sensitivity")],
    )
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=2, restore_best_weights=True)
    log(f"{name}: {epochs} epoch(s), learning rate {learning_rate:g}, "
        f"{sum(int(np.prod(w.shape)) for w in model.trainable_weights):,} trainable parameters")
    history = model.fit(train_data, validation_data=val_data, epochs=epochs, callbacks=[stop],
                        verbose=log.keras_verbosity)
    for epoch in range(len(history.history["loss"])):
        history_rows.append({"phase": name, "epoch": epoch + 1,
                             **{key: float(values[epoch]) for key, values in history.history.items()}})


def predict(model, pixels, spec, batch_size=64) -> np.ndarray:
    data = make_batches(pixels, np.zeros(len(pixels), dtype=np.int64), spec, batch_size)
    return model.predict(data, verbose=0).reshape(-1).astype(np.float64)


def versions() -> dict:
    import keras
    import PIL
    import tensorflow as tf

    return {"python": platform.python_version(), "tensorflow": tf.__version__,
            "keras": keras.__version__, "numpy": np.__version__, "pillow": PIL.__version__}


def train(config: TrainConfig, log, progress, force: bool = False) -> dict:
    """Run the whole training; returns the run summary written to run.json."""
    import keras
    import tensorflow as tf

    from . import model as model_lib
    from .. import plots

    started = time.time()
    data_dir, out_dir = Path(config.data_dir), Path(config.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    check_out_dir(out_dir, force)
    keras.utils.set_random_seed(config.seed)
    tf.config.experimental.enable_op_determinism()
    spec = PreprocessSpec(height=config.image_size, width=config.image_size)
    if config.crop:
        from ..preprocess import default_lung_segmenter

        spec = PreprocessSpec(height=config.image_size, width=config.image_size, crop=config.crop,
                              crop_model_sha256=default_lung_segmenter().card.get("sha256"))
        log(f"crop mode {config.crop}: lung model {spec.crop_model_sha256[:12]}")

    items = select_items(dataset.scan(data_dir), config.limit_per_class, config.seed)
    labels = dataset.label_indices(items)
    log(f"{len(items)} images: {int(labels.sum())} covid, {int((labels == 0).sum())} normal")
    pixels = load_all_pixels(data_dir, items, spec, progress)
    groups = dataset.duplicate_groups(pixels)
    group_sizes = np.bincount(groups)
    split = dataset.group_split(labels, groups, config.split_fractions, config.seed)
    dataset.write_split(out_dir / "split.csv", items, groups, split)
    parts = {name: np.flatnonzero(split == name) for name in dataset.SPLITS}
    log(f"duplicate groups: {int((group_sizes > 1).sum())} groups hold "
        f"{int(group_sizes[group_sizes > 1].sum())} images, each kept within one split; "
        + ", ".join(f"{name} {len(index)} ({int(labels[index].sum())} covid)"
                    for name, index in parts.items()))

    weights = class_weights(labels[parts["train"]])
    train_data = make_batches(pixels[parts["train"]], labels[parts["train"]], spec,
                              config.batch_size,
                              augmenter=Augmenter(corner_erase_p=config.corner_erase),
                              weights=weights,
                              seed=config.seed, shuffle=True)
    val_data = make_batches(pixels[parts["val"]], labels[parts["val"]], spec, config.batch_size)

    model = model_lib.build(spec, config.weights, config.dropout)
    history_rows: list[dict] = []
    fit_phase(model, "head", train_data, val_data, config.head_epochs,
              config.head_learning_rate, history_rows, log)
    if config.fine_tune_epochs > 0:
        count = model_lib.unfreeze_top(model, config.fine_tune_from)
        log(f"fine-tuning {count} backbone layers from {config.fine_tune_from} "
            "(BatchNormalization frozen)")
        fit_phase(model, "fine-tune", train_data, val_data, config.fine_tune_epochs,
                  config.fine_tune_learning_rate, history_rows, log)
    model.save(out_dir / "model.keras")

    probabilities = predict(model, pixels, spec)
    val = parts["val"]
    threshold = metrics.screening_threshold(labels[val], probabilities[val],
                                            config.target_sensitivity)
    threshold_rule = (
        f"highest threshold with validation COVID sensitivity >= {config.target_sensitivity:.0%} "
        "(screening: a missed COVID case costs more than a false alarm)")
    split_metrics = {name: metrics.binary_metrics(labels[index], probabilities[index], threshold)
                     for name, index in parts.items()}
    for name, values in split_metrics.items():
        log(f"{name:>5}: accuracy {values['accuracy']:.4f}  ROC AUC {values['roc_auc']:.4f}  "
            f"sensitivity {values['sensitivity']:.4f}  specificity {values['specificity']:.4f}")
    log(f"threshold {threshold:.4f}: {threshold_rule}")

    write_rows(out_dir / "history.csv", history_rows)
    write_rows(out_dir / "predictions.csv", [
        {"path": item.path, "label": item.label, "split": part, "probability": f"{prob:.6f}"}
        for item, part, prob in zip(items, split, probabilities)])
    (out_dir / "metrics.json").write_text(json.dumps(split_metrics, indent=2) + "\n")

    test = parts["test"]
    plots.training_curves(history_rows, out_dir / "training_curves.png")
    plots.confusion_matrix(split_metrics["test"]["confusion_matrix"], dataset.LABELS,
                           out_dir / "confusion_matrix.png", title="test split")
    plots.prediction_grid(pixels[test], labels[test], probabilities[test], threshold,
                          out_dir / "test_predictions.png", seed=config.seed)

    summary = {
        "config": asdict(config),
        "data_dir": str(data_dir.resolve()),
        "data_sha256": dataset.content_hash(data_dir, items),
        "preprocessing": spec.to_dict(),
        "labels": list(dataset.LABELS),
        "positive_label": dataset.POSITIVE,
        "threshold": threshold,
        "threshold_rule": threshold_rule,
        "metrics": split_metrics,
        "split_counts": {name: {"images": int(len(index)), "covid": int(labels[index].sum())}
                         for name, index in parts.items()},
        "duplicate_groups": {"groups": int((group_sizes > 1).sum()),
                             "images": int(group_sizes[group_sizes > 1].sum()),
                             "method": "32x32 thumbnails, cosine similarity > 0.97"},
        "versions": versions(),
        "seconds": round(time.time() - started, 1),
    }
    (out_dir / "run.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def write_rows(path: Path, rows: list[dict]) -> None:
    fields = list(dict.fromkeys(key for row in rows for key in row))
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
