"""`covid-edge convert MODEL --out DIR`"""

from __future__ import annotations

import click

from .. import DISCLAIMER
from ..cli_paths import WRITING_EXIT_CODES, check_out_folder, file_error, no_empty_folder_left
from .keras_files import check_keras_file
from .train_cli import Log, progress
from ..tf_quiet import verbose_option


class ComponentsParam(click.ParamType):
    name = "auto|N"

    def convert(self, value, param, ctx):
        if value is None or str(value).lower() == "auto":
            return None
        try:
            number = int(value)
        except ValueError:
            number = 0
        if number < 1:
            self.fail(f"{value!r} is neither 'auto' nor a whole number >= 1", param, ctx)
        return number


def _non_xray_folders(ctx, param, folders):
    """Each --non-xray folder must add images: one without any (the guard reads the images
    directly inside, not in sub-folders) would be named in the card but measure nothing."""
    from ..formats import ACCEPTED_TEXT
    from .non_xray import images_in

    for folder in folders:
        if not images_in(folder):
            raise click.BadParameter(f"{folder} holds no {ACCEPTED_TEXT} image directly "
                                     "inside (sub-folders are not searched)", ctx, param)
    return folders


def guard_options(command):
    """The options of the out-of-distribution guard's fit, shared by `convert` and
    `fit-guard`."""
    options = [
        click.option("--non-xray", "non_xray_dirs", multiple=True,
                     type=click.Path(exists=True, file_okay=False),
                     callback=_non_xray_folders,
                     help="A folder of real images that are not chest X-rays (photos, scans "
                          "of other things), added to the set the out-of-distribution guard "
                          "is measured on. Repeatable. Bundled sample images and drawn frames "
                          "are always used."),
        click.option("--ood-train-images", default=2000, show_default=True,
                     type=click.IntRange(10),
                     help="Training images whose features the guard's statistics are fitted "
                          "on (a seeded subsample; each costs one int8 inference)."),
        click.option("--ood-components", default="auto", show_default=True,
                     type=ComponentsParam(),
                     help="Principal components of the guard's feature model: a number, or "
                          "'auto' to pick among 16/32/64/128 the one that refuses most of a "
                          "separate tuning set of non-X-ray images (never the set the guard "
                          "is measured on)."),
        click.option("--ood-quantile", default=0.995, show_default=True,
                     type=click.FloatRange(0.5, 1.0),
                     help="The guard refuses features farther than this quantile of the "
                          "validation X-rays' distances."),
        click.option("--ood-per-label/--ood-pooled", "ood_per_label", default=False,
                     show_default=True,
                     help="One feature model per label (the nearest counts) or one for all "
                          "training images. Per label is tighter around each label: on "
                          "release 0.3.0's tuning sets it refused as many CT slices or more "
                          "at every threshold tried, and fewer non-X-ray tuning images at "
                          "looser ones (docs/bench/0.3.0/guard-per-label.md)."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@click.command(epilog=f"{WRITING_EXIT_CODES}\n{DISCLAIMER}")
@click.argument("model", type=click.Path(exists=True, dir_okay=False))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Folder for the .tflite files, model_card.json/MODEL_CARD.md and samples/.")
@click.option("--data", "data_dir", type=click.Path(exists=True, file_okay=False),
              help="The training data folder, if it moved since training (default: from run.json).")
@click.option("--calibration-size", default=300, show_default=True, type=click.IntRange(1),
              help="Training images used to calibrate int8 activation ranges (and to "
                   "measure the bias correction).")
@click.option("--bias-correction/--no-bias-correction", default=True, show_default=True,
              help="Correct the int8 model's biases layer by layer so its outputs stay centred "
                   "on the float model's (measured on the calibration images; ~1 min). Without "
                   "it the int8 probabilities drift from the float model's.")
@click.option("--samples", "sample_count", default=6, show_default=True,
              type=click.IntRange(2, 50),
              help="Validation images copied to samples/ with their int8 reference outputs "
                   "(correctly classified, clear of the threshold by the measured tolerance).")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--force", is_flag=True, help="Overwrite model files already in --out.")
@click.option("--edgetpu", is_flag=True,
              help="Also prepare the int8 model for a Coral Edge TPU: check that every op maps "
                   "(else fail), then run edgetpu_compiler if it is on PATH (log kept in "
                   "edgetpu_compiler.log) or print the command to run where it is.")
@guard_options
@click.option("--target-sensitivity", type=click.FloatRange(0.5, 1.0), default=None,
              help="Choose the screening threshold again, on the run's validation split "
                   "(the Keras model's probabilities in predictions.csv), for this COVID "
                   "sensitivity instead of training's --target-sensitivity. The threshold is "
                   "a deployment choice: this makes it without retraining.")
@click.option("--tolerance-images", default=0, show_default=True, type=click.IntRange(0),
              help="Validation images on which the int8 kernel sets of LiteRT are compared to "
                   "measure `bench check`'s tolerance (0: all; a seeded draw otherwise). The "
                   "reference kernels are slow: 800 images took 12 min on the development "
                   "machine.")
@verbose_option
def convert(model, out_dir, data_dir, calibration_size, bias_correction, sample_count, seed,
            force, edgetpu, non_xray_dirs, ood_train_images, ood_components, ood_quantile,
            ood_per_label, target_sensitivity, tolerance_images, verbose):
    """Convert a trained model to float32, float16, dynamic-range and int8 TFLite.

    MODEL is the model.keras that `covid-edge train` wrote; its run.json and split.csv
    beside it give the preprocessing, threshold and test split. Every file is loaded back
    in the edge runtime (the int8 one must be integer-only end to end) and evaluated on the
    test split; the results go into model_card.json and MODEL_CARD.md.

    It also fits what the runtime needs to be trusted: the out-of-distribution guard's feature
    statistics (ood_stats.npz, from the int8 model's features of training images, threshold
    from the validation split; measured on the test split and on non-X-ray images) and the
    temperature that calibrates the probability shown (fitted on the validation split;
    reliability diagram in training/reliability.png).

    \b
    Examples:
      covid-edge convert runs/v1/model.keras --out models
      covid-edge convert runs/v1/model.keras --out models --edgetpu
      covid-edge convert runs/v1/model.keras --out models --non-xray ../shared/reference/photos
    """
    check_out_folder(out_dir)
    check_keras_file(model)
    from ..tf_quiet import quiet_tensorflow

    quiet_tensorflow(verbose)
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        raise click.ClickException(
            "conversion needs TensorFlow: pip install '.[train]' in a clone of covid-edge"
        ) from None
    from .convert import ConvertError, ModelFileError
    from .convert import convert as run_conversion

    try:
        with no_empty_folder_left(out_dir):
            card = run_conversion(
                model, out_dir, data_dir=data_dir, calibration_size=calibration_size,
                target_sensitivity=target_sensitivity, sample_count=sample_count, seed=seed,
                log=Log(), progress=progress, force=force, edgetpu=edgetpu,
                non_xray_dirs=non_xray_dirs, ood_train_images=ood_train_images,
                ood_components=ood_components, ood_quantile=ood_quantile,
                ood_per_label=ood_per_label, bias_correction=bias_correction,
                tolerance_images=tolerance_images or None)
    except ModelFileError as exc:
        raise file_error(str(exc)) from None
    except ConvertError as exc:
        raise click.ClickException(str(exc)) from None
    int8 = card["variants"]["int8"]
    click.echo(f"int8: {int8['bytes'] / 1e6:.2f} MB, test accuracy "
               f"{int8['metrics']['accuracy']:.4f}, agreement with Keras "
               f"{int8['versus_keras']['agreement']:.4f}")
    guard, calibration = card["ood_guard"], card["calibration"]
    click.echo(f"guard: test X-rays accepted {guard['test']['acceptance']:.2%}, non-X-ray images "
               f"rejected {guard['non_xray']['rejection']:.2%} "
               f"({guard['non_xray']['images']} images); calibration: temperature "
               f"{calibration['temperature']:.2f}, test ECE {calibration['ece_before']:.4f} -> "
               f"{calibration['ece_after']:.4f}")
    click.echo(f"wrote {out_dir}/model_card.json and MODEL_CARD.md; try: covid-edge classify "
               f"--model {out_dir}/{int8['file']} {out_dir}/samples")
    compiled = card.get("edgetpu")
    if compiled and compiled["compiled"]:
        click.echo(f"Edge TPU: {out_dir}/{compiled['file']} (compiler "
                   f"{compiled.get('compiler_version')}, needs Edge TPU runtime "
                   f">= {compiled.get('min_runtime_version')}); try: covid-edge classify "
                   f"--device edgetpu --model {out_dir} {out_dir}/samples")
    elif compiled:
        import platform

        if platform.system() == "Linux" and platform.machine() in ("x86_64", "AMD64"):
            where = ("edgetpu_compiler is not installed here; install it from Coral's apt "
                     "repository (`sudo apt-get install edgetpu-compiler` after adding "
                     "https://packages.cloud.google.com/apt coral-edgetpu-stable main; "
                     "docs/coral.md), then run:")
        else:
            where = ("edgetpu_compiler runs on x86-64 Linux only (or Coral's Colab); on such a "
                     "machine run:")
        click.echo(f"Edge TPU: every op of {int8['file']} maps. {where}\n"
                   f"  {compiled['command']}\n"
                   f"and copy {compiled['file']} into {out_dir}. See docs/coral.md.")
