"""`covid-edge train-lungs`: train the small U-Net lung segmenter.

lung pairs (folder or pack, lungs_data) -> split by source (optionally one source held out
whole, for leave-one-source-out evaluation) -> seeded training with geometric augmentation
applied to image and mask alike -> the best epoch by validation loss -> Dice/IoU per source
at the masks' own resolution -> model.keras, run.json, history.csv, split.csv in RUN_DIR.

Backend-neutral: no TensorFlow import, so it trains on Keras' JAX backend on a GPU machine as
well as on TensorFlow here.
"""

from __future__ import annotations

import csv
import json
import math
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from .. import lung_metrics
from ..preprocess import PreprocessSpec, to_model_input
from . import lungs_data
from .augment import random_affine

RUN_FILES = ("model.keras", "run.json", "history.csv", "split.csv")
MASK_THRESHOLD = 0.5


@dataclass
class LungTrainConfig:
    data: str
    out_dir: str
    image_size: int = 128
    base_filters: int = 8
    depth: int = 4
    decoder_convs: int = 1
    separable: bool = True
    batch_size: int = 16
    epochs: int = 60
    learning_rate: float = 2e-3
    hold_out: str | None = None
    leave_out: tuple[str, ...] = ()  # sources used nowhere, neither trained on nor scored
    val_fraction: float = 0.1
    limit_per_source: int | None = None
    max_minutes: float | None = None
    convention_heads: bool = False  # one output per mask convention (lungs_data.CONVENTION_HEADS)
    seed: int = 0
    extra: dict = field(default_factory=dict)


def spec_for(image_size: int) -> PreprocessSpec:
    # One grey channel: the segmenter is trained from scratch, so nothing asks for three.
    # The classifier's scale and offset keep the int8 input lossless (pixel - 128).
    return PreprocessSpec(height=image_size, width=image_size, channels=1)


@dataclass(frozen=True)
class PairAugmenter:
    """The same random affine warp for the image and its mask; exposure changes for the image
    only. No horizontal flip: a frontal film never shows the heart on the right."""

    max_rotation_deg: float = 10.0
    max_shift: float = 0.08
    zoom_range: tuple[float, float] = (0.85, 1.15)
    max_contrast: float = 0.3
    max_brightness: float = 0.1
    gamma_range: tuple[float, float] = (0.7, 1.4)

    def __call__(self, pixels, targets, rng):
        out_x = np.empty(pixels.shape, dtype=np.float32)
        out_y = np.empty(targets.shape, dtype=np.float32)
        for i in range(len(pixels)):
            out_x[i], out_y[i] = self.one(pixels[i], targets[i], rng)
        return out_x, out_y

    def one(self, pixels, target, rng):
        height, width = pixels.shape
        matrix = random_affine(rng, width, height, self.max_rotation_deg, self.zoom_range,
                               self.max_shift)
        warp = dict(size=(width, height), method=Image.Transform.AFFINE, data=matrix,
                    resample=Image.Resampling.BILINEAR, fillcolor=0)
        x = np.asarray(Image.fromarray(pixels).transform(**warp), dtype=np.float32)
        y = np.asarray(Image.fromarray(target).transform(**warp), dtype=np.float32) / 255.0
        gamma = rng.uniform(*self.gamma_range)
        x = 255.0 * (x / 255.0) ** gamma
        contrast = rng.uniform(1 - self.max_contrast, 1 + self.max_contrast)
        brightness = rng.uniform(-self.max_brightness, self.max_brightness) * 255.0
        mean = x.mean()
        # Whole grey levels, as a decoded file has.
        x = np.clip(np.rint((x - mean) * contrast + mean + brightness), 0.0, 255.0)
        return x, y


def make_batches(pixels, targets, spec, batch_size, *, augmenter=None, seed=0, shuffle=False,
                 heads=None):
    """Batches of (model input, soft mask), on the classifier's seeded batch sequence.
    `heads`: each image's output channel (one per mask convention); the mask then goes in
    that channel and NO_TARGET in the others, which the loss leaves out."""
    from .train import seeded_batches

    def make_batch(chosen, rng):
        images, masks = pixels[chosen], targets[chosen].astype(np.float32) / 255.0
        if augmenter is not None:
            images, masks = augmenter(pixels[chosen], targets[chosen], rng)
        if heads is None:
            return to_model_input(images, spec), masks[..., np.newaxis]
        channels = np.full(masks.shape + (len(lungs_data.CONVENTION_HEADS),), NO_TARGET,
                           dtype=np.float32)
        channels[np.arange(len(chosen)), ..., heads[chosen]] = masks
        return to_model_input(images, spec), channels

    return seeded_batches(len(pixels), batch_size, make_batch, seed=seed, shuffle=shuffle)


NO_TARGET = -1.0  # a channel an image has no mask for (another convention's output)


def dice_bce_loss(y_true, y_pred):
    """Binary cross-entropy plus soft Dice per image: the Dice term keeps small lung fields
    (children, cropped films) from being drowned by the background."""
    import keras
    from keras import ops

    bce = ops.mean(keras.losses.binary_crossentropy(y_true, y_pred), axis=(1, 2))
    overlap = ops.sum(y_true * y_pred, axis=(1, 2, 3))
    sizes = ops.sum(y_true, axis=(1, 2, 3)) + ops.sum(y_pred, axis=(1, 2, 3))
    return bce + 1.0 - (2.0 * overlap + 1.0) / (sizes + 1.0)


def own_channel_loss(y_true, y_pred):
    """dice_bce_loss on each image's own output only: channels whose target is NO_TARGET
    (another convention's) count neither in the cross-entropy nor in the Dice term."""
    from keras import ops

    valid = ops.cast(y_true > NO_TARGET / 2, y_pred.dtype)
    truth = ops.maximum(y_true, 0.0)
    p = ops.clip(y_pred, 1e-7, 1.0 - 1e-7)
    bce = -(truth * ops.log(p) + (1.0 - truth) * ops.log(1.0 - p)) * valid
    bce = ops.sum(bce, axis=(1, 2, 3)) / ops.maximum(ops.sum(valid, axis=(1, 2, 3)), 1.0)
    overlap = ops.sum(truth * y_pred * valid, axis=(1, 2, 3))
    sizes = ops.sum(truth * valid, axis=(1, 2, 3)) + ops.sum(y_pred * valid, axis=(1, 2, 3))
    return bce + 1.0 - (2.0 * overlap + 1.0) / (sizes + 1.0)


def predict(model, pixels, spec, batch_size=32, channels=None) -> np.ndarray:
    """uint8 (n, h, w) -> lung probability (n, h, w) float32: output channel 0 (what the
    runtime reads), or each image's own channel (`channels`, one per image)."""
    out = np.concatenate([model.predict_on_batch(to_model_input(pixels[i:i + batch_size], spec))
                          for i in range(0, len(pixels), batch_size)])
    if channels is None:
        return out[..., 0].astype(np.float32)
    return out[np.arange(len(out)), ..., np.asarray(channels)].astype(np.float32)


def score(probabilities: np.ndarray, data: lungs_data.LungData,
          threshold: float = MASK_THRESHOLD) -> tuple[dict, np.ndarray, np.ndarray]:
    """Per-source Dice/IoU at the masks' own resolution."""
    dice, iou, precision, recall = [], [], [], []
    for start in range(0, len(data), 64):  # bounded memory for the upsampled maps
        up = lung_metrics.upsample_probabilities(probabilities[start:start + 64],
                                                 data.masks.shape[1:]) >= threshold
        truth = data.masks[start:start + 64]
        d, i = lung_metrics.dice_iou(up, truth)
        p, r = lung_metrics.precision_recall(up, truth)
        dice.append(d)
        iou.append(i)
        precision.append(p)
        recall.append(r)
    dice, iou = np.concatenate(dice), np.concatenate(iou)
    precision, recall = np.concatenate(precision), np.concatenate(recall)
    result = lung_metrics.per_source(dice, iou, data.sources, precision, recall)
    result["all"] = lung_metrics.summarize(dice, iou, precision, recall)
    return result, dice, iou


class BestWeights:
    """Keep the weights of the epoch with the lowest validation loss, restored at the end;
    stop after `max_seconds` (a time-boxed run still ends with its best weights saved)."""

    def __new__(cls, max_seconds: float | None = None):
        import keras

        class _Best(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.best, self.best_epoch, self.weights = math.inf, -1, None
                self.started, self.stopped_early = time.time(), False

            def on_epoch_end(self, epoch, logs=None):
                if max_seconds is not None and time.time() - self.started > max_seconds:
                    self.model.stop_training = self.stopped_early = True
                loss = (logs or {}).get("val_loss", math.inf)
                if loss < self.best:
                    self.best, self.best_epoch = loss, epoch
                    self.weights = self.model.get_weights()

            def on_train_end(self, logs=None):
                if self.weights is not None:
                    self.model.set_weights(self.weights)

        return _Best()


def versions() -> dict:
    import keras
    import PIL

    return {"python": platform.python_version(), "keras": keras.__version__,
            "keras_backend": keras.backend.backend(), "numpy": np.__version__,
            "pillow": PIL.__version__}


def check_out_dir(out_dir: Path, force: bool) -> None:
    existing = [name for name in RUN_FILES if (out_dir / name).exists()]
    if existing and not force:
        raise FileExistsError(f"{out_dir} already holds a run ({', '.join(existing)}); choose "
                              "another --out or pass --force to overwrite it")


def check_parts(parts: dict[str, np.ndarray], hold_out: str | None) -> None:
    """Keras cannot fit on an empty part ("PyDataset has length 0"): said with the counts."""
    counts = {name: len(index) for name, index in parts.items()}
    needed = {"train": 1, "val": 1, "test": 1 if hold_out else 0}
    if any(counts[name] < least for name, least in needed.items()):
        raise ValueError(
            "too few lung pairs to train: " + ", ".join(
                f"{name} {counts[name]}" for name in needed if needed[name])
            + " (each needs at least one; validation takes one pair of every source with "
              "two or more, so each training source needs 2+ pairs"
            + (f", and --hold-out {hold_out} needs pairs of its own" if hold_out else "")
            + "): use more pairs per source (--limit-per-source, or a pack made with a larger "
              "one) or leave out fewer sources")


def train(config: LungTrainConfig, log, progress=None, force: bool = False) -> dict:
    import keras

    from . import lungs_model

    started = time.time()
    out_dir = Path(config.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    check_out_dir(out_dir, force)
    if config.hold_out is not None and config.hold_out not in lungs_data.SOURCES:
        raise ValueError(f"--hold-out {config.hold_out}: choose from "
                         f"{', '.join(lungs_data.SOURCES)}")
    unknown = [s for s in config.leave_out if s not in lungs_data.SOURCES]
    if unknown or config.hold_out in config.leave_out:
        raise ValueError(f"--leave-out {', '.join(unknown or [config.hold_out])}: choose "
                         f"sources of {', '.join(lungs_data.SOURCES)} other than --hold-out")
    if len(set(config.leave_out) | {config.hold_out} - {None}) >= len(lungs_data.SOURCES):
        raise ValueError("--leave-out and --hold-out leave no source to train on")
    keras.utils.set_random_seed(config.seed)
    spec = spec_for(config.image_size)
    data = lungs_data.load(config.data, spec, progress, config.limit_per_source)
    parts = lungs_data.split(data.sources, config.hold_out, config.val_fraction, config.seed,
                             tuple(config.leave_out))
    check_parts(parts, config.hold_out)
    log(f"{len(data)} lung pairs; " + ", ".join(f"{name} {len(index)}"
                                                 for name, index in parts.items())
        + (f" (held out: {config.hold_out})" if config.hold_out else "")
        + (f" (not used: {', '.join(config.leave_out)})" if config.leave_out else ""))
    with open(out_dir / "split.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "source", "split"])
        part_of = np.full(len(data), "unused", dtype=object)
        for name, index in parts.items():
            part_of[index] = name
        writer.writerows(zip(data.names, data.sources, part_of))

    train_part, val_part = data.subset(parts["train"]), data.subset(parts["val"])

    def heads_of(part):
        return (np.array([lungs_data.CONVENTION_HEAD_OF[s] for s in part.sources])
                if config.convention_heads else None)

    train_batches = make_batches(train_part.pixels, train_part.targets, spec, config.batch_size,
                                 augmenter=PairAugmenter(), seed=config.seed, shuffle=True,
                                 heads=heads_of(train_part))
    val_batches = make_batches(val_part.pixels, val_part.targets, spec, config.batch_size,
                               heads=heads_of(val_part))
    outputs = len(lungs_data.CONVENTION_HEADS) if config.convention_heads else 1
    model = lungs_model.build(spec, config.base_filters, config.depth, config.decoder_convs,
                              config.separable, outputs)
    steps = len(train_batches) * config.epochs
    schedule = keras.optimizers.schedules.CosineDecay(config.learning_rate, steps, alpha=0.02)
    model.compile(optimizer=keras.optimizers.Adam(schedule),
                  loss=own_channel_loss if config.convention_heads else dice_bce_loss)
    log(f"U-Net {config.image_size}px, {config.base_filters} base filters, depth "
        f"{config.depth}, {config.decoder_convs} decoder conv(s), "
        f"{'separable' if config.separable else 'full'} convolutions"
        + (f", {outputs} outputs (one per mask convention)" if outputs > 1 else "") + ": "
        f"{model.count_params():,} parameters; {config.epochs} epochs")
    best = BestWeights(None if config.max_minutes is None else config.max_minutes * 60)
    history = model.fit(train_batches, validation_data=val_batches, epochs=config.epochs,
                        callbacks=[best], verbose=getattr(log, "keras_verbosity", 2))
    log(f"best epoch {best.best_epoch + 1} of {len(history.history['loss'])} (validation loss "
        f"{best.best:.4f})" + (" - stopped at --max-minutes" if best.stopped_early else ""))
    model.save(out_dir / "model.keras")

    results = {}
    for name in ("val", "test"):
        if len(parts[name]):
            part = data.subset(parts[name])
            # Each image on its own convention's output: a held-out adult source on channel 0,
            # as the runtime reads it.
            results[name], _, _ = score(predict(model, part.pixels, spec,
                                                channels=heads_of(part)), part)
            for source, values in results[name].items():
                log(f"{name:>4} {source:>11}: Dice {values['dice_mean']:.4f} "
                    f"(p5 {values['dice_p5']:.4f}), IoU {values['iou_mean']:.4f} "
                    f"on {values['images']} images")
    history_rows = [{"epoch": epoch + 1, **{key: float(values[epoch])
                                            for key, values in history.history.items()}}
                    for epoch in range(len(history.history["loss"]))]
    with open(out_dir / "history.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(history_rows[0]))
        writer.writeheader()
        writer.writerows(history_rows)
    summary = {
        "config": asdict(config),
        "preprocessing": spec.to_dict(),
        "data_sha256": data.data_hash,
        "mask_threshold": MASK_THRESHOLD,
        "mask_conventions": lungs_data.MASK_CONVENTIONS,
        **({"outputs": {str(i): name for i, name in enumerate(lungs_data.CONVENTION_HEADS)}}
           if config.convention_heads else {}),
        "split_counts": {name: {source: int((data.sources[index] == source).sum())
                                for source in lungs_data.SOURCES}
                         for name, index in parts.items()},
        "best_epoch": best.best_epoch + 1,
        "epochs_run": len(history.history["loss"]),
        "metrics_float": results,
        "scored_at": f"the masks' own resolution {data.masks.shape[2]}x{data.masks.shape[1]}, "
                     "model output upsampled bilinearly, threshold "
                     f"{MASK_THRESHOLD}",
        "versions": versions(),
        "seconds": round(time.time() - started, 1),
    }
    (out_dir / "run.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
