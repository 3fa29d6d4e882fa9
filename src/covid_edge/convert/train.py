"""`covid-edge train`: two-phase MobileNetV2 training on folders of labelled chest X-rays.

DATA_DIR/<class>/ folders or a MANIFEST.csv (path, label, source), one or several roots ->
classes (--map merges or drops labels; two classes: one sigmoid unit, more: softmax) -> pixels (covid_edge.preprocess, the same code the device runs) ->
duplicate-aware stratified split -> phase 1: new head on the frozen backbone -> phase 2: the
top blocks fine-tuned with BatchNormalization frozen -> screening threshold on validation ->
metrics, pictures and model.keras in RUN_DIR. --start-from continues another run's model on
its split; --consistency trains on pairs of a picture and its re-encoding
(convert/consistency.py).
"""

from __future__ import annotations

import csv
import json
import math
import platform
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np

from .. import dataset, metrics
from ..classes import SIGMOID, SOFTMAX, ClassScheme
from ..preprocess import PreprocessSpec, load_pixels, to_model_input
from . import invariance as invariance_lib
from .augment import Augmenter

RUN_FILES = ("model.keras", "run.json", "metrics.json", "split.csv", "history.csv", "predictions.csv")


@dataclass
class TrainConfig:
    data_dir: str
    out_dir: str
    more_data: tuple[str, ...] = ()  # further data roots (e.g. ../shared/data/cxr-more)
    label_map: dict = field(default_factory=dict)  # OLD -> NEW or "drop" (--map)
    positive: str = dataset.POSITIVE
    # Sources held out of training and testing: all their images validate (threshold, early
    # stopping, the choice between settings), so a choice is made with a hospital it never saw.
    validation_sources: tuple[str, ...] = ()
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
    # Share of training images re-encoded by a random chain (convert/invariance.py); 0 keeps
    # release 0.2.0's training draw for draw.
    invariance: float = 0.0
    # Weight of the Jensen-Shannon term between a picture and its re-encoding
    # (convert/consistency.py); 0: no pairs, one view per picture.
    consistency: float = 0.0
    # "sqrt": within each class, each source's images weigh 1/sqrt(their number) rather than
    # 1/number (training_weights); "none" weighs classes only, as releases 0.2.0-0.3.0 did.
    source_balance: str = "none"
    # A run folder whose model.keras training continues from (its split is reused).
    start_from: str | None = None
    # 12/16-bit window recorded in the card (stretch.py); 0.2.0 was "minmax".
    high_bit_window: str = "percentile"
    split_fractions: tuple[float, float, float] = (0.70, 0.15, 0.15)
    limit_per_class: int | None = None
    # Another run's split.csv to reuse image for image: settings (crop or full image) are then
    # compared on the same train/validation/test images. Without it the split depends on the
    # pixels (near-duplicates are found after the crop), so two settings would split apart.
    split_from: str | None = None
    seed: int = 0
    extra: dict = field(default_factory=dict)


def check_out_dir(out_dir: Path, force: bool) -> None:
    existing = [name for name in RUN_FILES if (out_dir / name).exists()]
    if existing and not force:
        raise FileExistsError(
            f"{out_dir} already holds a run ({', '.join(existing)}); choose another --out "
            "or pass --force to overwrite it")


def data_roots(config: TrainConfig) -> dict[str, Path]:
    """{root name: folder}. One root is named "" (release 0.2.0's run layout); several are
    named by their folder (made unique)."""
    folders = [Path(config.data_dir), *map(Path, config.more_data)]
    if len(folders) == 1:
        return {"": folders[0]}
    roots = {}
    for folder in folders:
        name, suffix = folder.resolve().name, 2
        while name in roots:
            name, suffix = f"{folder.resolve().name}-{suffix}", suffix + 1
        roots[name] = folder
    return roots


def gather_items(config: TrainConfig, log) -> tuple[list[dataset.Item], tuple[str, ...]]:
    """Every image of every root, relabelled by --map, in class order then path (for 0.2.0's
    two folders exactly the order it was trained in); the class order for the card."""
    items = []
    for name, folder in data_roots(config).items():
        items += dataset.scan(folder, root=name)
    found = sorted({item.label for item in items})
    items = dataset.relabel(items, config.label_map)
    dropped = sorted({label for label in found
                      if config.label_map.get(label, label) == dataset.DROP})
    labels = dataset.class_order({item.label for item in items}, config.positive)
    if dropped:
        log(f"left out by --map: {', '.join(dropped)}")
    order = {label: index for index, label in enumerate(labels)}
    items.sort(key=lambda item: (order[item.label], item.root, item.path))
    return items, labels


def select_items(items: list[dataset.Item], limit_per_class: int | None,
                 seed: int, labels=dataset.LABELS) -> list[dataset.Item]:
    """All items, or a seeded random `limit_per_class` of each class (for quick trials)."""
    if not limit_per_class:
        return items
    rng = np.random.default_rng(seed)
    chosen = []
    for label in labels:
        of_class = [item for item in items if item.label == label]
        picks = rng.permutation(len(of_class))[:limit_per_class]
        chosen += [of_class[i] for i in sorted(picks)]
    return chosen


def load_all_pixels(data_dirs, items: list[dataset.Item], spec: PreprocessSpec,
                    progress: Callable) -> np.ndarray:
    pixels = np.empty((len(items), spec.height, spec.width), dtype=np.uint8)
    for index, item in enumerate(progress(items, "reading images")):
        pixels[index] = load_pixels(dataset.item_path(data_dirs, item), spec)
    return pixels


def class_weights(labels: np.ndarray, count: int = 2) -> np.ndarray:
    """Weights so that each class contributes equally to the loss (COVID is the minority)."""
    counts = np.bincount(labels, minlength=count).astype(np.float64)
    return len(labels) / (count * np.maximum(counts, 1))


SOURCE_BALANCES = ("none", "sqrt")


def training_weights(labels: np.ndarray, sources: np.ndarray, count: int,
                     source_balance: str = "none") -> np.ndarray:
    """The loss weight of each training image. Classes contribute equally (class_weights).
    With "sqrt", a class's weight is then shared among its sources in proportion to the square
    root of their image counts instead of the counts: 56 Montgomery normals weigh as much as
    sqrt(56/5708) of the database's 5708 normals, not 56/5708 of them. A small hospital's
    images then count for more, so telling hospitals apart buys the model less. Each class's
    total weight is unchanged."""
    if source_balance not in SOURCE_BALANCES:
        raise ValueError(f"source balance {source_balance!r}: one of {', '.join(SOURCE_BALANCES)}")
    per_class = class_weights(labels, count)
    weights = per_class[labels]
    if source_balance == "none":
        return weights
    for label in range(count):
        in_class = labels == label
        names, sizes = np.unique(sources[in_class], return_counts=True)
        roots = np.sqrt(sizes.astype(np.float64))
        for name, size, root in zip(names, sizes, roots):
            cell = in_class & (sources == name)
            weights[cell] = per_class[label] * in_class.sum() * (root / roots.sum()) / size
    return weights


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
                 shuffle=False, sparse=False):
    """Batches of model inputs and labels (and each image's loss weight when `weights`, one
    per image, is given: training_weights). sparse: class indices for a softmax head, else
    float targets for a sigmoid one."""

    def make_batch(chosen, rng):
        images = pixels[chosen]
        if augmenter is not None:
            images = augmenter(images, rng)
        x = to_model_input(images, spec)
        y = labels[chosen].astype(np.int32 if sparse else np.float32)
        if weights is None:
            return x, y
        return x, y, weights[chosen].astype(np.float32)

    return seeded_batches(len(labels), batch_size, make_batch, seed=seed, shuffle=shuffle)


def fit_phase(model, name, train_data, val_data, epochs, learning_rate, history_rows, log,
              softmax: bool = False, consistency: float = 0.0):
    """One phase of fit(); with consistency > 0, `model` is consistency.pair_model's and the
    data come in pairs."""
    import keras

    if consistency > 0:
        from . import consistency as pairs

        outputs = 1 if not softmax else model.output_shape[-1] // 2
        loss = pairs.pair_loss(outputs, consistency, sparse=softmax)
        tracked = [pairs.view_a_accuracy(outputs, sparse=softmax)]
    elif softmax:
        loss, tracked = "sparse_categorical_crossentropy", [
            keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
    else:
        loss, tracked = "binary_crossentropy", [
            keras.metrics.BinaryAccuracy(name="accuracy"), keras.metrics.AUC(name="auc"),
            keras.metrics.Recall(name="sensitivity")]
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=loss, metrics=tracked)
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=2, restore_best_weights=True)
    log(f"{name}: {epochs} epoch(s), learning rate {learning_rate:g}, "
        f"{sum(int(np.prod(w.shape)) for w in model.trainable_weights):,} trainable parameters")
    history = model.fit(train_data, validation_data=val_data, epochs=epochs, callbacks=[stop],
                        verbose=log.keras_verbosity)
    for epoch in range(len(history.history["loss"])):
        history_rows.append({"phase": name, "epoch": epoch + 1,
                             **{key: float(values[epoch]) for key, values in history.history.items()}})


def predict(model, pixels, spec, scheme, batch_size=64) -> np.ndarray:
    """Per-class probabilities (n, N) in the scheme's label order."""
    data = make_batches(pixels, np.zeros(len(pixels), dtype=np.int64), spec, batch_size)
    output = model.predict(data, verbose=0).astype(np.float64)
    return scheme.probabilities(output.reshape(len(pixels), scheme.output_size))


def versions() -> dict:
    import keras
    import PIL
    import tensorflow as tf

    return {"python": platform.python_version(), "tensorflow": tf.__version__,
            "keras": keras.__version__, "numpy": np.__version__, "pillow": PIL.__version__}


@dataclass
class RunData:
    """A run's images, read and split: what training fits on and what a run folder records."""
    items: list
    class_labels: tuple
    scheme: ClassScheme
    spec: PreprocessSpec
    pixels: np.ndarray
    labels: np.ndarray
    groups: np.ndarray
    split: np.ndarray
    roots: dict
    data_dirs: object
    several_sources: bool

    @property
    def parts(self) -> dict[str, np.ndarray]:
        return {name: np.flatnonzero(self.split == name) for name in dataset.SPLITS}


def prepare(config: TrainConfig, log, progress) -> RunData:
    """The images of config's data folders, relabelled, read through the device's
    preprocessing and split (or the split of --split-from)."""
    spec = PreprocessSpec(height=config.image_size, width=config.image_size)
    if config.crop:
        from ..preprocess import default_lung_segmenter

        spec = PreprocessSpec(height=config.image_size, width=config.image_size, crop=config.crop,
                              crop_model_sha256=default_lung_segmenter().card.get("sha256"))
        log(f"crop mode {config.crop}: lung model {spec.crop_model_sha256[:12]}")
    spec = replace(spec, high_bit_window=config.high_bit_window)

    items, class_labels = gather_items(config, log)
    scheme = ClassScheme(class_labels, config.positive,
                         SIGMOID if len(class_labels) == 2 else SOFTMAX)
    roots = data_roots(config)
    data_dirs = roots[""] if "" in roots else roots
    items = select_items(items, config.limit_per_class, config.seed, class_labels)
    labels = dataset.label_indices(items, class_labels)
    counts = np.bincount(labels, minlength=scheme.count)
    log(f"{len(items)} images: " + ", ".join(f"{int(n)} {label}"
                                              for label, n in zip(class_labels, counts))
        + (f"; {scheme.count} classes, softmax head" if scheme.output_kind == SOFTMAX else ""))
    # Checked before the pixels load (minutes): a split that does not fit fails at once.
    reused = dataset.reuse_split(config.split_from, items) if config.split_from else None
    pixels = load_all_pixels(data_dirs, items, spec, progress)
    several_sources = len({(item.root, item.source) for item in items}) > 1
    if reused is not None:
        groups, split = reused
        log(f"split from {config.split_from}: the same images train, validate and test")
    else:
        groups = dataset.with_patients(items, dataset.duplicate_groups(pixels))
        strata = dataset.strata(items, class_labels) if several_sources else labels
        split = dataset.group_split(strata, groups, config.split_fractions, config.seed)
    if config.validation_sources:
        unknown = set(config.validation_sources) - {item.source for item in items}
        if unknown:
            raise ValueError(f"--validation-source {', '.join(sorted(unknown))}: no such source "
                             f"(sources: {', '.join(sorted({i.source for i in items}))})")
        held = np.array([item.source in config.validation_sources for item in items])
        split[held] = "val"
        log(f"validation sources {', '.join(config.validation_sources)}: all {int(held.sum())} "
            "of their images validate, none trains or tests")
    return RunData(items, class_labels, scheme, spec, pixels, labels, groups, split, roots,
                   data_dirs, several_sources)


def train(config: TrainConfig, log, progress, force: bool = False) -> dict:
    """Run the whole training; returns the run summary written to run.json."""
    import keras
    import tensorflow as tf

    from . import model as model_lib

    started = time.time()
    out_dir = Path(config.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    check_out_dir(out_dir, force)
    keras.utils.set_random_seed(config.seed)
    tf.config.experimental.enable_op_determinism()
    if config.start_from:
        config, start_run = continued(config)
    data = prepare(config, log, progress)
    scheme, spec, labels, parts = data.scheme, data.spec, data.labels, data.parts
    softmax = scheme.output_kind == SOFTMAX
    dataset.write_split(out_dir / "split.csv", data.items, data.groups, data.split)
    group_sizes = np.bincount(data.groups)
    positive = scheme.positive_index
    log(f"duplicate groups: {int((group_sizes > 1).sum())} groups hold "
        f"{int(group_sizes[group_sizes > 1].sum())} images (near-duplicates and images of one "
        "patient), each kept within one split; "
        + ", ".join(f"{name} {len(index)} ({int((labels[index] == positive).sum())} "
                    f"{scheme.positive})" for name, index in parts.items())
        + ("; stratified by class and source" if data.several_sources else ""))

    train_data, val_data = training_batches(config, data)
    if config.start_from:
        check_same_task(Path(config.start_from), start_run, data)
        model = keras.saving.load_model(Path(config.start_from) / "model.keras", compile=False)
        log(f"starting from {config.start_from}/model.keras")
    else:
        model = model_lib.build(spec, config.weights, config.dropout, classes=scheme.output_size)
    fitted = model
    if config.consistency > 0:
        from .consistency import pair_model

        fitted = pair_model(model)
        log(f"consistency: every training picture twice, as drawn and re-encoded; loss = "
            f"cross-entropy of both + {config.consistency:g} x Jensen-Shannon(A, B)")
    history_rows: list[dict] = []
    if config.head_epochs > 0:
        model_lib.freeze_backbone(model)
        fit_phase(fitted, "head", train_data, val_data, config.head_epochs,
                  config.head_learning_rate, history_rows, log, softmax, config.consistency)
    if config.fine_tune_epochs > 0:
        count = model_lib.unfreeze_top(model, config.fine_tune_from)
        log(f"fine-tuning {count} backbone layers from {config.fine_tune_from} "
            "(BatchNormalization frozen)")
        fit_phase(fitted, "fine-tune", train_data, val_data, config.fine_tune_epochs,
                  config.fine_tune_learning_rate, history_rows, log, softmax, config.consistency)
    model.save(out_dir / "model.keras")
    return record_run(model, data, config, out_dir, history_rows, log, started)


def training_batches(config: TrainConfig, data: RunData):
    """(training batches, validation batches): single pictures, or pairs with consistency."""
    parts, labels, spec = data.parts, data.labels, data.spec
    softmax = data.scheme.output_kind == SOFTMAX
    train, val = parts["train"], parts["val"]
    sources = np.array([data.items[index].source for index in train])
    weights = training_weights(labels[train], sources, data.scheme.count, config.source_balance)
    augmenter = invariance_lib.augmenter(Augmenter(corner_erase_p=config.corner_erase),
                                         config.invariance, spec.high_bit_window)
    if config.consistency > 0:
        from . import consistency as pairs

        chain = invariance_lib.InvarianceAugmenter(p=1.0,
                                                   high_bit_window=spec.high_bit_window).chain
        return (pairs.make_pair_batches(data.pixels[train], labels[train], spec,
                                        config.batch_size, augmenter=augmenter, chain=chain,
                                        weights=weights, seed=config.seed, sparse=softmax),
                pairs.make_validation_pairs(data.pixels[val], labels[val], spec,
                                            config.batch_size, sparse=softmax))
    return (make_batches(data.pixels[train], labels[train], spec, config.batch_size,
                         augmenter=augmenter, weights=weights, seed=config.seed, shuffle=True,
                         sparse=softmax),
            make_batches(data.pixels[val], labels[val], spec, config.batch_size, sparse=softmax))


def continued(config: TrainConfig) -> tuple[TrainConfig, dict]:
    """(config for training on from config.start_from, that run's run.json): its split
    (its test images must stay unseen) and its config recorded, so the card can list both
    commands."""
    run_dir = Path(config.start_from)
    split = run_dir / "split.csv"
    if not split.is_file() or not (run_dir / "run.json").is_file():
        raise FileNotFoundError(f"--start-from {run_dir}: no split.csv and run.json there "
                                "(give a run folder that `covid-edge train` wrote)")
    if not (run_dir / "model.keras").is_file():
        raise FileNotFoundError(f"--start-from {run_dir}: no model.keras there "
                                "(give a run folder that `covid-edge train` wrote)")
    if config.split_from and Path(config.split_from).read_bytes() != split.read_bytes():
        raise ValueError(f"--start-from {run_dir} and --split-from {config.split_from} split "
                         "the images differently: the starting run's test images would train")
    run = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    extra = {**config.extra, "start_from": {"run": str(run_dir), "config": run["config"]}}
    return replace(config, split_from=str(split), extra=extra), run


def check_same_task(run_dir: Path, run: dict, data: RunData) -> None:
    """A run training continues from (run: its run.json) must have had these classes and
    this preprocessing."""
    if run.get("labels") != list(data.class_labels):
        raise ValueError(f"--start-from {run_dir}: its classes {run.get('labels')} are not "
                         f"these ({', '.join(data.class_labels)}); use the same data and --map")
    if run.get("preprocessing") != data.spec.to_dict():
        raise ValueError(f"--start-from {run_dir}: its preprocessing differs from this "
                         "run's (image size, --crop or --high-bit-depth)")


def record_run(model, data: RunData, config: TrainConfig, out_dir: Path, history_rows: list,
               log, started: float) -> dict:
    """Everything a run folder holds beside model.keras, from the model's outputs on every
    image: the screening threshold (validation), metrics per split, predictions.csv, the
    plots and run.json. Training and `covid-edge average` both end here."""
    from .. import plots

    scheme, labels, parts = data.scheme, data.labels, data.parts
    class_labels, items, split = data.class_labels, data.items, data.split
    softmax = scheme.output_kind == SOFTMAX
    positive = scheme.positive_index
    group_sizes = np.bincount(data.groups)
    probabilities = predict(model, data.pixels, data.spec, scheme)
    val = parts["val"]
    threshold = metrics.screening_threshold(labels[val] == positive,
                                            probabilities[val, positive],
                                            config.target_sensitivity)
    positive_name = "COVID" if scheme.positive == "covid" else scheme.positive
    threshold_rule = (
        f"highest threshold with validation {positive_name} "
        f"sensitivity >= {config.target_sensitivity:.0%} "
        "(screening: a missed COVID case costs more than a false alarm)")
    if softmax:
        threshold_rule += (f"; below it, the verdict is the most probable of "
                           f"{', '.join(scheme.others)}")
    split_metrics = {name: metrics.class_metrics(labels[index], probabilities[index], scheme,
                                                 threshold)
                     for name, index in parts.items()}
    for name, values in split_metrics.items():
        log(f"{name:>5}: accuracy {values['accuracy']:.4f}  ROC AUC {values['roc_auc']:.4f}  "
            f"sensitivity {values['sensitivity']:.4f}  specificity {values['specificity']:.4f}"
            + (f"  {scheme.count}-class accuracy {values['class_accuracy']:.4f}"
               if softmax else ""))
    log(f"threshold {threshold:.4f}: {threshold_rule}")

    if history_rows:
        write_rows(out_dir / "history.csv", history_rows)
    else:  # an average trained nothing: no curves, and none left from a run it overwrites
        for name in ("history.csv", "training_curves.png"):
            (out_dir / name).unlink(missing_ok=True)
    write_rows(out_dir / "predictions.csv", [
        {"path": item.path, "label": item.label, "split": part,
         "probability": f"{probs[positive]:.6f}",
         **({"root": item.root, "source": item.source} if data.several_sources else {}),
         **({f"p_{label}": f"{p:.6f}" for label, p in zip(class_labels, probs)}
            if softmax else {})}
        for item, part, probs in zip(items, split, probabilities)])
    (out_dir / "metrics.json").write_text(json.dumps(split_metrics, indent=2) + "\n")

    test = parts["test"]
    if history_rows:
        plots.training_curves(history_rows, out_dir / "training_curves.png")
    plots.confusion_matrix(split_metrics["test"]["class_confusion_matrix"], class_labels,
                           out_dir / "confusion_matrix.png", title="test split")
    plots.prediction_grid(data.pixels[test], labels[test], probabilities[test], threshold,
                          out_dir / "test_predictions.png", seed=config.seed, scheme=scheme)

    summary = {
        "config": asdict(config),
        "data_dir": str(Path(config.data_dir).resolve()),
        **({"data_dirs": {name: str(folder.resolve()) for name, folder in data.roots.items()}}
           if len(data.roots) > 1 else {}),
        "data_sha256": dataset.content_hash(data.data_dirs, items),
        "preprocessing": data.spec.to_dict(),
        "labels": list(class_labels),
        "positive_label": scheme.positive,
        "output_kind": scheme.output_kind,
        "threshold": threshold,
        "threshold_rule": threshold_rule,
        "metrics": split_metrics,
        "split_counts": {name: {"images": int(len(index)),
                                scheme.positive: int((labels[index] == positive).sum()),
                                **({label: int((labels[index] == i).sum())
                                    for i, label in enumerate(class_labels)} if softmax else {}),
                                **({"by_source": _source_counts(
                                    [items[i] for i in index])} if data.several_sources else {})}
                         for name, index in parts.items()},
        "duplicate_groups": {"groups": int((group_sizes > 1).sum()),
                             "images": int(group_sizes[group_sizes > 1].sum()),
                             "method": "32x32 thumbnails, cosine similarity > 0.97; and one "
                                       "patient's images (NIH and Kermany file names)"},
        "versions": versions(),
        "seconds": round(time.time() - started, 1),
    }
    (out_dir / "run.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _source_counts(items: list[dataset.Item]) -> dict:
    counts: dict = {}
    for item in items:
        key = f"{item.source}/{item.label}"
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))


def write_rows(path: Path, rows: list[dict]) -> None:
    fields = list(dict.fromkeys(key for row in rows for key in row))
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
