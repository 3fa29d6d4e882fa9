"""`covid-edge train DATA_DIR [DATA_DIR...] --out RUN_DIR`"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .. import DISCLAIMER
from ..cli_paths import WRITING_EXIT_CODES, check_out_folder, file_error, no_empty_folder_left
from .keras_files import HDF5_SIGNATURE, ZIP_SIGNATURE, check_keras_file
from ..tf_quiet import verbose_option
from .train import SOURCE_BALANCES


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



def _check_weights(weights: str) -> None:
    """--weights as a file: there, and HDF5 (or a .keras zip), before the images load
    (minutes) rather than after."""
    if weights == "imagenet" or weights.lower() == "none":
        return
    path = Path(weights)
    if not path.is_file():
        raise click.BadParameter(
            f"{weights}: no such file (give 'imagenet', 'none' or a path to "
            "mobilenet_v2_1.0_224_imagenet_no_top.weights.h5)", param_hint="--weights")
    try:
        with open(path, "rb") as handle:
            head = handle.read(8)
    except OSError as exc:
        raise file_error(f"--weights {weights}: cannot read it ({exc.strerror})") from None
    if head != HDF5_SIGNATURE and not head.startswith(ZIP_SIGNATURE):
        raise file_error(f"--weights {weights}: not a Keras weights file (HDF5 .weights.h5, "
                         "e.g. mobilenet_v2_1.0_224_imagenet_no_top.weights.h5)")


def _check_split_from(split_from) -> None:
    """--split-from must be a split.csv that train wrote: checked before the images load."""
    from ..dataset import read_split

    try:
        read_split(split_from)
    except (UnicodeDecodeError, KeyError, ValueError, TypeError) as exc:
        what = f"no {exc.args[0]!r} column" if isinstance(exc, KeyError) else "unreadable"
        raise click.BadParameter(f"{split_from} is not a split.csv that `covid-edge train` "
                                 f"wrote ({what})", param_hint="--split-from") from None


def _check_start_from(run_dir: str) -> None:
    """The starting run's model.keras, checked as convert checks its MODEL: Keras would
    refuse it only after TensorFlow and every image have loaded."""
    model = Path(run_dir) / "model.keras"
    if not model.is_file():
        raise click.BadParameter(f"{run_dir} holds no model.keras: give a run folder that "
                                 "`covid-edge train --out` wrote", param_hint="--start-from")
    check_keras_file(str(model))


def _check_validation_sources(config) -> None:
    """Unknown --validation-source names, found from the manifests (a fraction of a second)
    instead of after every image has loaded."""
    from .train import gather_items

    try:
        items, _ = gather_items(config, lambda message: None)
    except (OSError, ValueError):
        return  # training says what is wrong with the data
    sources = {item.source for item in items}
    unknown = sorted(set(config.validation_sources) - sources)
    if unknown:
        raise click.BadParameter(f"{', '.join(unknown)}: no such source (sources: "
                                 f"{', '.join(sorted(sources))})",
                                 param_hint="--validation-source")


def _check_fine_tune_from(first_layer: str) -> None:
    """A layer name MobileNetV2 does not have, found now rather than after the head epochs."""
    import keras

    backbone = keras.applications.MobileNetV2(input_shape=(32, 32, 3), include_top=False,
                                              weights=None)
    names = [layer.name for layer in backbone.layers]
    keras.backend.clear_session()  # the training's layers are named as without this check
    if first_layer not in names:
        raise click.BadParameter(f"no layer {first_layer!r} in MobileNetV2 (e.g. "
                                 "block_12_expand, block_14_expand)",
                                 param_hint="--fine-tune-from")


def parse_map(ctx, param, values) -> dict:
    mapping = {}
    for value in values:
        old, sep, new = value.partition("=")
        if not sep or not old.strip() or not new.strip():
            raise click.BadParameter(f"{value!r}: write OLD=NEW or OLD=drop "
                                     "(e.g. tuberculosis=drop)")
        mapping[old.strip()] = new.strip()
    return mapping


@click.command(epilog=f"{WRITING_EXIT_CODES}\n{DISCLAIMER}")
@click.argument("data_dirs", nargs=-1, required=True,
                type=click.Path(exists=True, file_okay=False))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Run folder for model.keras, split, metrics and plots.")
@click.option("--map", "label_map", multiple=True, callback=parse_map, metavar="OLD=NEW",
              help="Rename, merge or drop a label before training: nodule=drop, "
                   "viral=pneumonia (repeatable). Images of a dropped label are left out.")
@click.option("--validation-source", "validation_sources", multiple=True, metavar="SOURCE",
              help="Hold a source (a manifest's source column, e.g. jsrt) out of training and "
                   "testing: all its images join the validation split, so the threshold and "
                   "early stopping see a hospital the model never trained on (repeatable).")
@click.option("--positive", default="covid", show_default=True,
              help="The screened-for class: the verdict is this class when its probability "
                   "reaches the threshold, else the most probable other class.")
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
@click.option("--head-epochs", default=2, show_default=True, type=click.IntRange(0),
              help="Phase 1: epochs for the new head on the frozen backbone (0 only with "
                   "--start-from, whose head has trained).")
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
@click.option("--invariance", default=0.0, show_default=True, type=click.FloatRange(0.0, 1.0),
              metavar="P",
              help="Share of training images (every class alike) re-encoded by a random chain "
                   "of 1-3 of: JPEG at quality 10-95, a resample chain, a 12/16-bit export read "
                   "back through the device's window, noise, blur, gamma, borders, burned-in "
                   "text, a camera capture; so that how an image was encoded tells the model "
                   "nothing. 0 (the default) trains as release 0.2.0 did; 0.5 is a good start.")
@click.option("--consistency", default=0.0, show_default=True, type=click.FloatRange(0.0),
              metavar="WEIGHT",
              help="Show every training picture twice, as drawn and re-encoded by a random "
                   "chain of the --invariance transforms, and add WEIGHT x the Jensen-Shannon "
                   "divergence between the two verdicts' probabilities to the loss, so that "
                   "moving a picture across the threshold by re-encoding it costs loss (AugMix's "
                   "weight: 12). Each step then costs about twice as much. 0: off.")
@click.option("--source-balance", type=click.Choice(SOURCE_BALANCES), default="none",
              show_default=True,
              help="How a class's loss weight is shared among its sources (a manifest's "
                   "source column): 'none' by image count, so the largest collection "
                   "dominates each class (releases 0.2.0-0.3.0); 'sqrt' by the square root of "
                   "the count, so a small hospital's images count for more and telling "
                   "hospitals apart buys the model less. Classes stay equal either way.")
@click.option("--start-from", type=click.Path(exists=True, file_okay=False), default=None,
              metavar="RUN_DIR",
              help="Continue training from another run's model.keras, on that run's split "
                   "(its test images stay unseen), e.g. --start-from runs/0.3.0 --head-epochs 0 "
                   "--fine-tune-epochs 1. The card lists both runs' commands.")
@click.option("--high-bit-depth", "high_bit_window", default="percentile", show_default=True,
              type=click.Choice(["percentile", "minmax"]),
              help="How 12/16-bit files (and DICOM without a VOI window) become 8 bit, in "
                   "training and, through the model card, on the device: 'percentile' is a "
                   "robust window that a burned-in marker or hot pixels cannot squeeze; "
                   "'minmax' is release 0.2.0's stretch.")
@click.option("--split-from", type=click.Path(exists=True, dir_okay=False), default=None,
              metavar="SPLIT_CSV",
              help="Reuse an earlier run's split.csv image for image, so two settings (e.g. "
                   "--crop lungs against the full image) are compared on the same train, "
                   "validation and test images. Needs the same DATA_DIRS and --map options.")
@click.option("--limit-per-class", type=click.IntRange(1), default=None,
              help="Use only this many images per class (quick trials).")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--force", is_flag=True, help="Overwrite an existing run in --out.")
@verbose_option
def train(data_dirs, out_dir, label_map, validation_sources, positive, weights, image_size, batch_size,
          head_epochs, fine_tune_epochs, fine_tune_from, target_sensitivity, corner_erase, crop,
          invariance, consistency, source_balance, start_from, high_bit_window, split_from,
          limit_per_class, seed, force, verbose):
    """Train MobileNetV2 to classify chest X-rays into the classes its data names.

    Each DATA_DIR holds one folder per class (covid/, normal/, pneumonia/, ...) or a
    MANIFEST.csv with path and label columns and, optionally, a source column naming each
    image's hospital. Two classes give one sigmoid output (release 0.2.0); three or more a
    softmax output with one probability per class. The verdict screens for --positive
    (covid): covid when P(covid) reaches the threshold chosen on validation for
    --target-sensitivity, else the most probable other class.

    The split keeps near-duplicate images on one side and, with several sources, splits each
    source's share of each class alike (saved as split.csv). Classes are weighted equally in
    the loss, and the sources within a class as --source-balance says. Needs the [train]
    extra (pip install '.[train]' in a clone).

    \b
    Examples (offline, with the shared ImageNet weights):
      covid-edge train ../shared/data/cxr --out runs/v1 \\
        --weights ../shared/weights/mobilenet_v2_1.0_224_imagenet_no_top.weights.h5
      covid-edge train ../shared/data/cxr ../shared/data/cxr-more --out runs/3class \\
        --map tuberculosis=drop --map nodule=drop --weights ...
    """
    if head_epochs == 0 and not start_from:
        raise click.BadParameter("0 needs --start-from: a new head must train first",
                                 param_hint="--head-epochs")
    check_out_folder(out_dir)
    _check_weights(weights)
    if split_from:
        _check_split_from(split_from)
    if start_from:
        _check_start_from(start_from)
    from ..tf_quiet import quiet_tensorflow

    quiet_tensorflow(verbose)
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        raise click.ClickException(
            "training needs TensorFlow: pip install '.[train]' in a clone of covid-edge") from None
    from .train import TrainConfig
    from .train import train as run_training

    config = TrainConfig(
        data_dir=data_dirs[0], more_data=tuple(data_dirs[1:]), label_map=label_map,
        positive=positive, validation_sources=tuple(validation_sources), out_dir=out_dir, weights=weights, image_size=image_size,
        batch_size=batch_size, head_epochs=head_epochs, fine_tune_epochs=fine_tune_epochs,
        fine_tune_from=fine_tune_from, target_sensitivity=target_sensitivity,
        corner_erase=corner_erase, crop=crop, invariance=invariance, consistency=consistency,
        source_balance=source_balance, start_from=start_from,
        high_bit_window=high_bit_window, split_from=split_from,
        limit_per_class=limit_per_class, seed=seed)
    if validation_sources:
        _check_validation_sources(config)
    if fine_tune_epochs and fine_tune_from != TrainConfig.fine_tune_from:  # default is good
        _check_fine_tune_from(fine_tune_from)
    try:
        with no_empty_folder_left(out_dir):
            summary = run_training(config, Log(), progress, force=force)
    except (FileNotFoundError, FileExistsError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    # Validation figures only: settings are chosen on them, and a test figure on the screen
    # invites choosing on it too. The test split's are in metrics.json, for after the choice.
    val = summary["metrics"]["val"]
    click.echo(f"validation: accuracy {val['accuracy']:.4f}, ROC AUC {val['roc_auc']:.4f}, "
               f"sensitivity {val['sensitivity']:.4f}, specificity {val['specificity']:.4f} "
               f"at threshold {summary['threshold']:.4f}")
    if len(summary["labels"]) > 2:
        click.echo(f"{len(summary['labels'])}-class validation accuracy "
                   f"{val['class_accuracy']:.4f}; one-vs-rest ROC AUC " + ", ".join(
                       f"{label} {values['roc_auc']:.4f}"
                       for label, values in val["per_class"].items()))
    click.echo(f"model and report in {out_dir} (test-split figures: {out_dir}/metrics.json); "
               f"next: covid-edge convert {out_dir}/model.keras --out DIR")
