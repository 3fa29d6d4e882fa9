"""`covid-edge train-lungs DATA --out RUN_DIR` (and `--pack FILE.npz`)"""

from __future__ import annotations

import os
from pathlib import Path

import click

from .. import DISCLAIMER
from .lungs_data import SOURCES
from ..cli_paths import WRITING_EXIT_CODES, check_out_folder, file_error, no_empty_folder_left
from .train_cli import Log, progress
from ..tf_quiet import verbose_option


@click.command("train-lungs", epilog=f"{WRITING_EXIT_CODES}\n{DISCLAIMER}")
@click.argument("data", type=click.Path(exists=True))
@click.option("--out", "out_dir", type=click.Path(file_okay=False),
              help="Run folder for model.keras, run.json, history.csv and split.csv.")
@click.option("--pack", "pack_path", type=click.Path(dir_okay=False),
              help="Only read DATA (a lungs folder) through the preprocessing and save it as "
                   "this .npz, which DATA can then be (for training on another machine).")
@click.option("--hold-out", type=click.Choice(SOURCES),
              default=None, help="Leave this source out of training and score it as the test "
                                 "set (leave-one-source-out evaluation).")
@click.option("--leave-out", multiple=True, type=click.Choice(SOURCES),
              help="Use this source nowhere (repeatable): e.g. train only on the sources "
                   "whose masks share the held-out source's convention.")
@click.option("--image-size", default=128, show_default=True, type=click.IntRange(32, 512),
              help="Square input side in pixels (divisible by 2**depth).")
@click.option("--base-filters", default=8, show_default=True, type=click.IntRange(1, 64))
@click.option("--depth", default=4, show_default=True, type=click.IntRange(1, 6))
@click.option("--decoder-convs", default=1, show_default=True, type=click.IntRange(1, 2),
              help="Convolutions per decoder level.")
@click.option("--separable/--full-convs", default=True, show_default=True,
              help="Depthwise-separable convolutions after the first layer (faster on CPUs).")
@click.option("--epochs", default=60, show_default=True, type=click.IntRange(1))
@click.option("--batch-size", default=16, show_default=True, type=click.IntRange(1))
@click.option("--learning-rate", default=2e-3, show_default=True,
              type=click.FloatRange(0, min_open=True))
@click.option("--limit-per-source", type=click.IntRange(1), default=None,
              help="Use only the first N pairs of each source (quick trials, tests).")
@click.option("--max-minutes", type=click.FloatRange(0.1), default=None,
              help="Stop training after this long (the best epoch so far is kept).")
@click.option("--convention-heads", is_flag=True,
              help="One output per mask convention (channel 0: the lung behind the heart left "
                   "out, as Montgomery, Shenzhen and JSRT mark it; channel 1: Kermany's V7 "
                   "masks, which include it), each image's loss on its own; channel 0 is what "
                   "the runtime reads (docs/bench/lungs/convention-heads.md).")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--force", is_flag=True, help="Overwrite an existing run in --out (or --pack file).")
@verbose_option
def train_lungs(data, out_dir, pack_path, hold_out, leave_out, image_size, base_filters, depth,
                decoder_convs, separable, epochs,
                batch_size, learning_rate, limit_per_source, max_minutes, convention_heads, seed,
                force, verbose):
    """Train the U-Net lung segmenter on image + lung-mask pairs.

    DATA is ../shared/data/lungs (MANIFEST.csv, images/, masks/) or a pack of it made with
    --pack. Needs Keras (the [train] extra); any Keras backend trains it
    (KERAS_BACKEND=jax on a GPU machine).

    \b
    Examples:
      covid-edge train-lungs ../shared/data/lungs --out runs/lungs
      covid-edge train-lungs ../shared/data/lungs --hold-out jsrt --out runs/lungs-loso-jsrt
      covid-edge train-lungs ../shared/data/lungs --pack lungs-128.npz
    Next: covid-edge convert-lungs RUN_DIR --data ../shared/data/lungs --out models/lungs
    """
    if Path(data).is_file() and Path(data).suffix == ".npz":
        _check_pack_data(data)
    if pack_path:
        _check_pack(pack_path, force)
    else:
        if not out_dir:
            raise click.UsageError("give --out RUN_DIR (or --pack FILE.npz)")
        check_out_folder(out_dir)
        if image_size % 2 ** depth:
            raise click.BadParameter(f"{image_size} is not divisible by 2**{depth} = "
                                     f"{2 ** depth} (--depth)", param_hint="--image-size")
        _check_split(data, hold_out, tuple(leave_out), limit_per_source, seed)
    from ..tf_quiet import quiet_tensorflow, tensorflow_settings

    if os.environ.get("KERAS_BACKEND", "tensorflow") == "tensorflow":
        quiet_tensorflow(verbose)
    else:  # another backend (jax on a GPU machine) needs no TensorFlow imported to quiet it
        tensorflow_settings()
    try:
        import keras  # noqa: F401
    except ImportError:
        raise click.ClickException(
            "training needs Keras: pip install 'covid-edge[train]'") from None
    from . import lungs_data
    from .lungs_train import LungTrainConfig, spec_for, train

    try:
        if pack_path:
            loaded = lungs_data.load_folder(data, spec_for(image_size), progress,
                                            limit_per_source)
            lungs_data.save_pack(loaded, pack_path)
            click.echo(f"packed {len(loaded)} pairs at {image_size}px into {pack_path}")
            return
        config = LungTrainConfig(
            data=data, out_dir=out_dir, image_size=image_size, base_filters=base_filters,
            depth=depth, decoder_convs=decoder_convs, separable=separable,
            batch_size=batch_size, epochs=epochs, learning_rate=learning_rate,
            hold_out=hold_out, leave_out=tuple(leave_out), limit_per_source=limit_per_source,
            max_minutes=max_minutes, convention_heads=convention_heads, seed=seed)
        with no_empty_folder_left(out_dir):
            summary = train(config, Log(), progress, force=force)
    except (FileNotFoundError, FileExistsError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    part = "test" if hold_out else "val"
    overall = summary["metrics_float"][part]["all"]
    click.echo(f"{part}: Dice {overall['dice_mean']:.4f} (p5 {overall['dice_p5']:.4f}), "
               f"IoU {overall['iou_mean']:.4f}")
    click.echo(f"model and report in {out_dir}; next: covid-edge convert-lungs {out_dir} "
               "--data DATA --out DIR")


def _check_split(data, hold_out, leave_out, limit_per_source, seed) -> None:
    """The split from the pairs' sources alone (no image read, no Keras loaded): a part left
    empty is refused now, not by Keras after the pairs have loaded."""
    from . import lungs_data
    from .lungs_train import LungTrainConfig, check_parts

    try:
        sources = lungs_data.sources_of(data, limit_per_source)
    except (OSError, KeyError, ValueError):
        return  # training says what is wrong with the data
    if len(set(leave_out) | {hold_out} - {None}) >= len(SOURCES):
        return  # training says no source is left
    parts = lungs_data.split(sources, hold_out, LungTrainConfig.val_fraction, seed, leave_out)
    try:
        check_parts(parts, hold_out)
    except ValueError as exc:
        raise click.ClickException(f"{data}: {exc}") from None


def _check_pack(pack_path: str, force: bool) -> None:
    """Before the pairs are read: a .npz name (numpy adds the suffix otherwise, and DATA is
    read as a pack by it), no file replaced without --force, a folder to write it in."""
    path = Path(pack_path)
    if path.suffix != ".npz":
        raise click.BadParameter(f"{pack_path}: name a .npz file (DATA is read as a pack by "
                                 "that suffix)", param_hint="--pack")
    if os.path.lexists(path) and not force:
        raise click.BadParameter(f"{pack_path} exists; pass --force to replace it",
                                 param_hint="--pack")
    folder = path.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise click.BadParameter(f"cannot write {pack_path}: {folder} is not a writable "
                                 "folder", param_hint="--pack")


def _check_pack_data(data: str) -> None:
    """A DATA .npz that --pack did not write: said plainly, not as numpy's advice to load it
    unsafely with pickle."""
    import zipfile

    try:
        with zipfile.ZipFile(data) as pack:
            names = set(pack.namelist())
    except (zipfile.BadZipFile, OSError):
        names = set()
    if not {"spec.npy", "pixels.npy", "masks.npy"} <= names:
        raise file_error(f"{data}: not a pack that `covid-edge train-lungs --pack` wrote")
