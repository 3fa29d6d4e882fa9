"""`covid-edge convert-lungs RUN_DIR --data DATA --out DIR`"""

from __future__ import annotations

import click

from .. import DISCLAIMER
from .lungs_train_cli import _check_pack_data
from ..cli_paths import WRITING_EXIT_CODES, check_out_folder, file_error, no_empty_folder_left
from ..edge_runtime.json_command import JsonFailureCommand
from .keras_files import check_keras_file
from .train_cli import Log
from ..tf_quiet import verbose_option


def _loso_folders(ctx, param, folders):
    """Each --loso folder must hold a leave-one-source-out conversion's card: checked before
    the conversion, which used to fail after writing lungs-int8.tflite (a rerun then found
    "a lung model" there and asked for --force)."""
    import json
    from pathlib import Path

    from ..edge_runtime.lungs import LUNG_CARD_FILENAME

    for folder in folders:
        try:
            card = json.loads((Path(folder) / LUNG_CARD_FILENAME).read_text(encoding="utf-8"))
            held_out = card.get("held_out_source") if isinstance(card, dict) else None
        except (OSError, ValueError):
            held_out = None
        if not held_out:
            raise click.BadParameter(f"{folder} holds no leave-one-source-out conversion "
                                     f"({LUNG_CARD_FILENAME} naming its held-out source)",
                                     ctx, param)
    return folders


@click.command("convert-lungs", cls=JsonFailureCommand,
               epilog=f"{WRITING_EXIT_CODES}\n{DISCLAIMER}")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--data", required=True, type=click.Path(exists=True),
              help="The lung pairs the run was trained on (folder or --pack file).")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Folder for lungs-int8.tflite and lung_model_card.json (models/lungs for "
                   "the release).")
@click.option("--loso", "loso_dirs", multiple=True, type=click.Path(exists=True, file_okay=False),
              callback=_loso_folders,
              help="A converted leave-one-source-out run (repeatable): its held-out figures go "
                   "into this card.")
@click.option("--calibration-images", default=200, show_default=True, type=click.IntRange(10))
@click.option("--model-version", default="dev", show_default=True,
              help="The version the card gives this lung model (a release names its own).")
@click.option("--force", is_flag=True,
              help="Replace a lung model already in --out (else exit 1 and leave it alone).")
@click.option("--json", "as_json", is_flag=True, help="Print the card as JSON.")
@verbose_option
def convert_lungs(run_dir, data, out_dir, loso_dirs, calibration_images, model_version, force,
                  as_json, verbose):
    """Convert a `train-lungs` run to a full-integer int8 TFLite lung model with its card.

    Checks that every tensor is integer, that the int8 input loses no grey level, and that
    int8 loses at most 0.005 mean Dice against the float model on the run's scored part (the
    held-out source of a leave-one-source-out run, else validation). Exit 1 when a check
    misses. Needs the [train] extra (TensorFlow).

    \b
    Example (the release, with the four held-out runs converted first):
      for s in montgomery shenzhen jsrt kermany-v7; do
        covid-edge convert-lungs runs/lungs-loso-$s --data ../shared/data/lungs \\
          --out runs/lungs-loso-$s/int8; done
      covid-edge convert-lungs runs/lungs --data ../shared/data/lungs --out models/lungs \\
        --loso runs/lungs-loso-montgomery/int8 --loso runs/lungs-loso-shenzhen/int8 \\
        --loso runs/lungs-loso-jsrt/int8 --loso runs/lungs-loso-kermany-v7/int8 \\
        --model-version 0.2.0 --force
    """
    check_out_folder(out_dir)
    from pathlib import Path

    if Path(data).is_file() and Path(data).suffix == ".npz":
        _check_pack_data(data)
    _check_run(Path(run_dir))
    from ..tf_quiet import quiet_tensorflow

    quiet_tensorflow(verbose)
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        raise click.ClickException(
            "conversion needs TensorFlow: pip install 'covid-edge[train]'") from None
    import json

    from .lungs_convert import convert

    log = Log()
    try:
        with no_empty_folder_left(out_dir):
            card = convert(run_dir, data, out_dir, calibration_images=calibration_images,
                           loso=loso_dirs, version=model_version, force=force, log=log)
    except (FileNotFoundError, FileExistsError, ValueError, KeyError) as exc:
        raise click.ClickException(str(exc)) from None
    metrics = card["metrics"]
    if as_json:
        click.echo(json.dumps(card, indent=2))
    else:
        click.echo(f"{card['file']}: {card['size_bytes'] / 1e6:.2f} MB, sha256 "
                   f"{card['sha256'][:12]}; scored on {metrics['scored_on']}")
        click.echo(f"{'source':>11} {'images':>6} {'Dice float':>10} {'Dice int8':>9} "
                   f"{'p5 int8':>7} {'IoU int8':>8} {'loss':>7}")
        for source, values in metrics["int8"].items():
            click.echo(f"{source:>11} {values['images']:>6} "
                       f"{metrics['float'][source]['dice_mean']:>10.4f} "
                       f"{values['dice_mean']:>9.4f} {values['dice_p5']:>7.4f} "
                       f"{values['iou_mean']:>8.4f} {metrics['int8_dice_loss'][source]:>7.4f}")
        for source, values in card.get("leave_one_source_out", {}).items():
            click.echo(f"held out {source}: int8 Dice {values['int8']['dice_mean']:.4f} "
                       f"(p5 {values['int8']['dice_p5']:.4f}), IoU "
                       f"{values['int8']['iou_mean']:.4f}")
    if not card["input"]["lossless"]:
        click.echo("warning: the int8 input merges grey levels (not lossless)", err=True)
    if not (metrics["int8_within_target"] and metrics["file_within_target"]):
        click.echo(f"int8 check missed: Dice loss {max(metrics['int8_dice_loss'].values()):.4f} "
                   f"(max {metrics['int8_dice_loss_max']}), file {card['size_bytes']:,} bytes",
                   err=True)
        raise SystemExit(1)


def _check_run(run_dir) -> None:
    """RUN_DIR must be what train-lungs wrote, its model.keras a Keras file: exit 3 with one
    line before TensorFlow loads (Keras said "File not found" of a file that is there)."""
    missing = [name for name in ("run.json", "model.keras") if not (run_dir / name).is_file()]
    if missing:
        raise file_error(f"{run_dir} has no {' or '.join(missing)}: give a run folder that "
                         "`covid-edge train-lungs` wrote")
    check_keras_file(str(run_dir / "model.keras"))
