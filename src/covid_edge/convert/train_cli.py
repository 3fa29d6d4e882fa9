"""`covid-edge train DATA_DIR --out RUN_DIR`"""

from __future__ import annotations

import sys

import click

from .. import DISCLAIMER


class Log:
    """Timestamped progress lines on stderr; Keras' own bar only on a terminal."""

    def __init__(self):
        import time

        self._time = time
        self._start = time.time()
        self.keras_verbosity = 1 if sys.stderr.isatty() else 2

    def __call__(self, message: str) -> None:
        elapsed = self._time.time() - self._start
        click.echo(f"[{elapsed:7.1f}s] {message}", err=True)


def progress(items, label):
    from ..progress import wanted

    if not wanted():  # a log file or a pipe: the timestamped lines are the progress
        yield from items
        return
    with click.progressbar(items, label=label, file=sys.stderr, show_pos=True) as bar:
        yield from bar


@click.command(epilog=DISCLAIMER)
@click.argument("data_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Run folder for model.keras, split, metrics and plots.")
@click.option("--weights", default="imagenet", show_default=True,
              help="'imagenet' (Keras downloads it once into ~/.keras; offline this fails with "
                   "a message saying what to pass), a local no-top .weights.h5 file (offline, "
                   "e.g. ../shared/weights/mobilenet_v2_1.0_224_imagenet_no_top.weights.h5), "
                   "or 'none' (random init).")
@click.option("--image-size", default=224, show_default=True,
              type=click.IntRange(32, 512), help="Square input side in pixels.")
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(1))
# The defaults are the release's settings (model card, "reproduce"): the short command in the
# README rebuilds the released model.
@click.option("--head-epochs", default=2, show_default=True, type=click.IntRange(1),
              help="Phase 1: epochs for the new head on the frozen backbone.")
@click.option("--fine-tune-epochs", default=6, show_default=True, type=click.IntRange(0),
              help="Phase 2: epochs fine-tuning the top blocks (BatchNorm frozen).")
@click.option("--fine-tune-from", default="block_12_expand", show_default=True,
              help="First MobileNetV2 layer to fine-tune.")
@click.option("--target-sensitivity", default=0.98, show_default=True,
              type=click.FloatRange(0.5, 1.0),
              help="COVID sensitivity the decision threshold must reach on validation.")
@click.option("--corner-erase", default=0.5, show_default=True, type=click.FloatRange(0.0, 1.0),
              help="Share of training images whose corners are painted flat grey, so the model "
                   "cannot lean on side markers and burned-in text there (0: off).")
@click.option("--crop", type=click.Choice(["lungs"]), default=None,
              help="Crop every X-ray to the lung fields (the lung model's bounding box plus a "
                   "margin) before the resize; recorded in the model card, so the device "
                   "crops the same way.")
@click.option("--limit-per-class", type=click.IntRange(1), default=None,
              help="Use only this many images per class (quick trials).")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--force", is_flag=True, help="Overwrite an existing run in --out.")
@click.option("--verbose", is_flag=True, help="Show TensorFlow's own log lines (hidden by default).")
def train(data_dir, out_dir, weights, image_size, batch_size, head_epochs, fine_tune_epochs,
          fine_tune_from, target_sensitivity, corner_erase, crop, limit_per_class, seed, force,
          verbose):
    """Train MobileNetV2 to tell COVID-19 from normal chest X-rays.

    DATA_DIR holds one folder per class: covid/ and normal/ (e.g. ../shared/data/cxr).
    Duplicate and near-duplicate images are grouped and kept on one side of the
    train/validation/test split (saved as split.csv). Needs the [train] extra
    (pip install '.[train]' in a clone).

    \b
    Example (offline, with the shared ImageNet weights):
      covid-edge train ../shared/data/cxr --out runs/v1 \\
        --weights ../shared/weights/mobilenet_v2_1.0_224_imagenet_no_top.weights.h5
    """
    from .tf_quiet import quiet_tensorflow

    quiet_tensorflow(verbose)
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        raise click.ClickException(
            "training needs TensorFlow: pip install '.[train]' in a clone of covid-edge") from None
    from .train import TrainConfig
    from .train import train as run_training

    config = TrainConfig(
        data_dir=data_dir, out_dir=out_dir, weights=weights, image_size=image_size,
        batch_size=batch_size, head_epochs=head_epochs, fine_tune_epochs=fine_tune_epochs,
        fine_tune_from=fine_tune_from, target_sensitivity=target_sensitivity,
        corner_erase=corner_erase, crop=crop,
        limit_per_class=limit_per_class, seed=seed)
    try:
        summary = run_training(config, Log(), progress, force=force)
    except (FileNotFoundError, FileExistsError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    test = summary["metrics"]["test"]
    click.echo(f"test: accuracy {test['accuracy']:.4f}, ROC AUC {test['roc_auc']:.4f}, "
               f"sensitivity {test['sensitivity']:.4f}, specificity {test['specificity']:.4f} "
               f"at threshold {summary['threshold']:.4f}")
    click.echo(f"model and report in {out_dir}; next: covid-edge convert "
               f"{out_dir}/model.keras --out DIR")
