"""`covid-edge average RUN_DIR RUN_DIR... --out RUN_DIR`"""

from __future__ import annotations

import click

from .. import DISCLAIMER
from ..cli_paths import WRITING_EXIT_CODES, check_out_folder
from .train_cli import Log, progress
from ..tf_quiet import verbose_option


@click.command(epilog=f"{WRITING_EXIT_CODES}\n{DISCLAIMER}")
@click.argument("run_dirs", nargs=-1, required=True,
                type=click.Path(exists=True, file_okay=False))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Run folder for the averaged model.keras, its split, metrics and plots.")
@click.option("--force", is_flag=True, help="Overwrite an existing run in --out.")
@verbose_option
def average(run_dirs, out_dir, force, verbose):
    """Average the weights of several training runs into one model (a "model soup").

    Each RUN_DIR is a folder `covid-edge train` wrote, on the same data, classes,
    preprocessing and split (train the later ones with --split-from the first's split.csv).
    Runs fine-tuned from one starting point (same --weights and --seed) usually average into
    a good network; runs from different starting points usually do not. Whether the average
    beats its ingredients is an empirical question (for 0.3.0 it did on false covid calls,
    not on steadiness: docs/bench/0.3.0/weight-average.md), so judge it on validation images
    (`bench shift --part val`) before shipping it. The result is a run folder like train's:
    its threshold is chosen on validation, and `covid-edge convert` takes it as it takes a
    trained run. Needs the [train] extra.

    \b
    Example:
      covid-edge average runs/0.3.0 runs/0.3.0-long --out runs/0.3.0-avg
      covid-edge convert runs/0.3.0-avg/model.keras --out runs/0.3.0-avg/export
    """
    from pathlib import Path

    from .average import AverageError, check_runs

    check_out_folder(out_dir)
    try:
        check_runs([Path(run_dir) for run_dir in run_dirs], Path(out_dir), force)
    except AverageError as exc:
        raise click.ClickException(str(exc)) from None
    from .keras_files import check_keras_file

    for run_dir in run_dirs:  # each is known to hold a model.keras now
        check_keras_file(str(Path(run_dir) / "model.keras"))
    from ..tf_quiet import quiet_tensorflow

    quiet_tensorflow(verbose)
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        raise click.ClickException(
            "averaging needs TensorFlow: pip install '.[train]' in a clone of covid-edge"
        ) from None
    from .average import average as run_average

    try:
        summary = run_average(list(run_dirs), out_dir, Log(), progress, force=force)
    except (AverageError, FileNotFoundError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    val = summary["metrics"]["val"]
    click.echo(f"validation: ROC AUC {val['roc_auc']:.4f}, sensitivity {val['sensitivity']:.4f} "
               f"at threshold {summary['threshold']:.4f}")
    click.echo(f"averaged model and report in {out_dir}; next: covid-edge convert "
               f"{out_dir}/model.keras --out DIR")
