"""`covid-edge convert MODEL --out DIR`"""

from __future__ import annotations

import click

from .. import DISCLAIMER
from .train_cli import Log, progress


@click.command(epilog=DISCLAIMER)
@click.argument("model", type=click.Path(exists=True, dir_okay=False))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Folder for the .tflite files, model_card.json/MODEL_CARD.md and samples/.")
@click.option("--data", "data_dir", type=click.Path(exists=True, file_okay=False),
              help="The training data folder, if it moved since training (default: from run.json).")
@click.option("--calibration-size", default=300, show_default=True, type=click.IntRange(1),
              help="Training images used to calibrate int8 activation ranges.")
@click.option("--samples", "sample_count", default=6, show_default=True,
              type=click.IntRange(2, 50),
              help="Test images copied to samples/ with their int8 reference outputs.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--force", is_flag=True, help="Overwrite model files already in --out.")
def convert(model, out_dir, data_dir, calibration_size, sample_count, seed, force):
    """Convert a trained model to float32, float16, dynamic-range and int8 TFLite.

    MODEL is the model.keras that `covid-edge train` wrote; its run.json and split.csv
    beside it give the preprocessing, threshold and test split. Every file is loaded back
    in the edge runtime (the int8 one must be integer-only end to end) and evaluated on the
    test split; the results go into model_card.json and MODEL_CARD.md.

    \b
    Example:
      covid-edge convert runs/v1/model.keras --out models
    """
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        raise click.ClickException(
            "conversion needs TensorFlow: pip install 'covid-edge[train]'") from None
    from .convert import ConvertError
    from .convert import convert as run_conversion

    try:
        card = run_conversion(model, out_dir, data_dir=data_dir, calibration_size=calibration_size,
                              sample_count=sample_count, seed=seed, log=Log(), progress=progress,
                              force=force)
    except ConvertError as exc:
        raise click.ClickException(str(exc)) from None
    int8 = card["variants"]["int8"]
    click.echo(f"int8: {int8['bytes'] / 1e6:.2f} MB, test accuracy "
               f"{int8['metrics']['accuracy']:.4f}, agreement with Keras "
               f"{int8['versus_keras']['agreement']:.4f}")
    click.echo(f"wrote {out_dir}/model_card.json and MODEL_CARD.md; try: covid-edge classify "
               f"--model {out_dir}/{int8['file']} {out_dir}/samples")
