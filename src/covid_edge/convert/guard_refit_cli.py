"""`covid-edge fit-guard MODELS_DIR`"""

from __future__ import annotations

import click

from .. import DISCLAIMER
from .convert_cli import guard_options
from .train_cli import Log, progress


def _data(values) -> dict[str, str]:
    data = {}
    for value in values:
        root, sep, path = value.partition("=")
        if not sep or not root or not path:
            raise click.BadParameter(f"{value!r}: expected ROOT=DIR, e.g. cxr=../shared/data/cxr",
                                     param_hint="--data")
        data[root] = path
    return data


@click.command(epilog=f"""\b
Exit codes:
  0  done: the folder's guard and model card are rewritten
  1  the guard could not be fitted, with the reason: no model card or split.csv in the
     folder, a guard already there (--force replaces it), training images not where the
     card says (--data ROOT=DIR), an image that cannot be read
  2  usage error: a bad option or value, or MODELS_DIR is no folder

{DISCLAIMER}""")
@click.argument("models_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--data", "data", multiple=True, metavar="ROOT=DIR",
              help="Where the images of one root of training/split.csv are, if not where the "
                   "card's data.folders says. Repeatable.")
@guard_options
@click.option("--seed", default=0, show_default=True, type=int,
              help="Draws the training subsample and the tuning and evaluation images.")
@click.option("--force", is_flag=True,
              help="Replace the guard the folder has (its statistics and card entry).")
def fit_guard(models_dir, data, non_xray_dirs, ood_train_images, ood_components, ood_quantile,
              ood_per_label, seed, force):
    """Fit the out-of-distribution guard's feature check again, for a converted model.

    The guard's statistics (ood_stats.npz) describe the int8 file's own features, so they
    can be fitted again without the Keras model: on the training and validation images of the
    folder's training/split.csv, as `covid-edge convert` fits them, then measured on its test
    split and the non-X-ray images. The model card's ood_guard entry, MODEL_CARD.md and
    training/ood_distances.png are rewritten, and the command is added to the card's
    reproduce list; the model files, threshold and calibration are not touched.

    It replaces the folder's guard, so it asks for --force; to compare a setting with the
    shipped one, fit a copy of the folder.

    \b
    Examples:
      cp -r models runs/per-label
      covid-edge fit-guard runs/per-label --force --ood-per-label --ood-components 64 \\
          --ood-quantile 0.999 --non-xray ../shared/reference/photos
    """
    from ..image_io import ImageReadError
    from ..model_card import ModelCardError
    from .guard_refit import RefitError, command_line, refit_guard

    overrides = _data(data)
    _check_images_there(models_dir, overrides)
    command = command_line(models_dir, data=overrides, train_images=ood_train_images,
                           components=ood_components, quantile=ood_quantile,
                           per_label=ood_per_label, seed=seed, non_xray_dirs=non_xray_dirs)
    try:
        entry = refit_guard(models_dir, data=overrides, train_images=ood_train_images,
                            components=ood_components, quantile=ood_quantile,
                            per_label=ood_per_label, seed=seed, non_xray_dirs=non_xray_dirs,
                            command=command, force=force, log=Log(), progress=progress)
    except (RefitError, ModelCardError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    except ImageReadError as exc:
        raise click.ClickException(f"cannot read a training image ({exc}): pass --data "
                                   "ROOT=DIR where training/split.csv's images are") from None
    click.echo(f"guard: {entry['components']} components per group "
               f"({', '.join(entry['groups'])}), threshold {entry['threshold']:.2f}; test "
               f"X-rays accepted {entry['test']['acceptance']:.2%}, non-X-ray images refused "
               f"{entry['non_xray']['rejection']:.2%}; wrote {models_dir}/model_card.json")


def _check_images_there(models_dir: str, overrides: dict[str, str]) -> None:
    """Each data folder must hold training/split.csv's images under its root: checked before
    the fit, instead of the image reader's traceback at the first missing file."""
    from pathlib import Path

    from ..dataset import read_split
    from ..model_card import CARD_FILENAME, ModelCardError, load_card
    from .guard_refit import RefitError, data_folders

    try:
        folders = data_folders(load_card(Path(models_dir) / CARD_FILENAME), overrides)
        items, _, _ = read_split(Path(models_dir) / "training" / "split.csv")
    except (RefitError, ModelCardError, OSError, ValueError, KeyError):
        return  # refit_guard says what is wrong, as it always did
    for root, folder in folders.items():
        under = [item for item in items if item.root == root]
        if under and not any((folder / item.path).is_file() for item in under[:50]):
            raise click.ClickException(
                f"{folder} holds none of training/split.csv's images under root {root!r} "
                f"(e.g. {under[0].path}): pass --data {root or 'ROOT'}=DIR where they are")
