"""`covid-edge bench drift`: how accuracy holds up from the float model to int8, on labelled data."""

from __future__ import annotations

import contextlib
import shlex
from pathlib import Path

import click

from .. import DISCLAIMER
from ..progress import progress_bar
from ..tf_quiet import quiet_tensorflow, verbose_option
from ..edge_runtime.json_command import JsonErrorCommand
from .labelled_cli import EXIT_ERROR, EXIT_MODEL, EXIT_USAGE, check_out, fail, finish
from ..edge_runtime.cli_options import runtime_option, threads_option

EPILOG = f"""\b
Examples:
  covid-edge bench drift ../shared/data/cxr             # its test split, as the model card
  covid-edge bench drift new-hospital/ --split all      # every image of new data
  covid-edge bench drift ../shared/data/cxr --latency-runs 50   # one table: size, accuracy, speed
  covid-edge bench drift data/ --limit 50 --out bench/ --latency bench/latency.json
  covid-edge bench drift data/ --models runs/v1/export --keras runs/v1/model.keras

\b
DATA_DIR holds one sub-folder per class: covid/ and normal/.
With --split auto (the default), a DATA_DIR that shares files with the
model's training split (models/training/split.csv) is reduced to its test
split: training images would flatter the model, and the model card's figures
are on the test split. Any other folder is used whole.

\b
Exit status: 0 every selected image was evaluated by every variant; 1 the
benchmark could not run, or some images could not be read (the figures leave
them out and the report lists them); 2 bad options, a --latency file that is no
latency report, or an --out that holds a report (without --force) or cannot be
written; 3 the models cannot be loaded (no model card, no variant file, a file
the runtime refuses). With --json, every failure prints a JSON document with
"error" and "exit_code".

{DISCLAIMER}"""


def _fail(exc, as_json: bool) -> None:
    """A DriftError's exit code by its kind; a model that cannot load is worded as classify
    words it."""
    from . import drift as drifting

    if isinstance(exc, drifting.LatencyReportError):
        fail(f"--latency {exc}", EXIT_USAGE, as_json)
    elif isinstance(exc, drifting.DriftModelError):
        fail(f"cannot load the model: {exc}", EXIT_MODEL, as_json)
    else:
        fail(str(exc), EXIT_ERROR, as_json)


def _command_line(data_dir, models_dir, keras_path, split, split_file, limit, latency_path,
                  latency_runs=None) -> str:
    words = ["covid-edge", "bench", "drift", str(data_dir)]
    if models_dir is not None:
        words += ["--models", str(models_dir)]
    if keras_path is not None:
        words += ["--keras", str(keras_path)]
    words += ["--split", split]
    if split_file is not None:
        words += ["--split-file", str(split_file)]
    if limit is not None:
        words += ["--limit", str(limit)]
    if latency_path is not None:
        words += ["--latency", str(latency_path)]
    if latency_runs:
        words += ["--latency-runs", str(latency_runs)]
    return shlex.join(words)


@click.command(cls=JsonErrorCommand, epilog=EPILOG)
@click.argument("data_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--models", "models_dir", type=click.Path(exists=True, file_okay=False,
                                                         path_type=Path),
              help="A folder `covid-edge convert` wrote: every variant of its model card whose "
                   "file is there is evaluated. Default: the released models.")
@click.option("--keras", "keras_path", type=click.Path(exists=True, dir_okay=False,
                                                        path_type=Path),
              help="Also evaluate the trained model.keras and use it as the float reference "
                   "(needs TensorFlow: the [train] extra). Without it the reference is the "
                   "float32 TFLite model, else float16.")
@click.option("--split", type=click.Choice(["auto", "test", "val", "train", "all"]),
              default="auto", show_default=True,
              help="Which images: auto (the test split when DATA_DIR is the training data, else "
                   "all), a part of the training split, or all.")
@click.option("--split-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The split.csv that says which images were trained on. Default: "
                   "training/split.csv in the models folder.")
@click.option("--limit", type=click.IntRange(min=1), default=None,
              help="At most N images per class (a seeded random choice), for a quick run.")
@threads_option
@runtime_option
@click.option("--latency-runs", type=click.IntRange(min=1), default=None,
              help="Also time every TFLite variant here (p50 of N invokes at 1 thread) and "
                   "add it to the table: formats by size, accuracy, agreement and speed in "
                   "one command. For thread sweeps and memory use `bench latency`.")
@click.option("--latency", "latency_path", type=click.Path(exists=True, path_type=Path),
              help="latency.json (or its folder) from `covid-edge bench latency --out`: adds "
                   "p50 at 1 thread to the variants table and its plots to the report.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Write drift.json, drift.md and plots/*.png here.")
@click.option("--force", is_flag=True, help="Overwrite an earlier report in --out.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of the table.")
@verbose_option
def drift(data_dir, models_dir, keras_path, split, split_file, limit, threads, runtime_name,
          latency_path, latency_runs, out_dir, force, as_json, verbose):
    """Accuracy and agreement of every model variant on labelled X-rays.

    Every variant (float32, float16, dynamic-range and int8 TFLite; the Keras
    model with --keras) classifies the same images of DATA_DIR, decoded once.
    For each: accuracy, ROC AUC, sensitivity and specificity at the model
    card's threshold; agreement of verdicts with the float reference; mean and
    max probability shift from it; and the images whose int8 verdict differs
    from the reference's.
    """
    from ..edge_runtime.classifier import default_threads
    from ..model_card import ModelCardError, released_models_dir
    from . import drift as drifting
    from . import drift_report as reporting

    check_out(out_dir, force, reporting.check_writable, as_json)
    if latency_path and latency_runs:
        fail("--latency reads a latency report, --latency-runs measures here: give one of "
             "them", EXIT_USAGE, as_json)
    try:
        latency_report = drifting.load_latency(latency_path) if latency_path else None
        if models_dir is None:
            try:
                models_dir = released_models_dir()
            except ModelCardError:
                raise drifting.DriftModelError(
                    "the released models are not installed with this copy of covid-edge: pass "
                    "--models DIR, a folder that `covid-edge convert` wrote") from None
    except drifting.DriftError as exc:
        _fail(exc, as_json)

    command = _command_line(data_dir, models_dir, keras_path, split, split_file, limit,
                            latency_path, latency_runs)
    if keras_path is not None:
        quiet_tensorflow(verbose)  # before --keras loads TensorFlow
    try:
        with contextlib.ExitStack() as stack:
            bars = []

            def on_start(count):  # the bar's length is known once the images are chosen
                if not as_json:
                    click.echo(f"evaluating {count} images with every variant", err=True)
                bars.append(stack.enter_context(progress_bar(count, "bench drift", as_json)))

            report = drifting.run(
                data_dir, models_dir, keras_path=keras_path, split=split,
                split_file=split_file, limit=limit, runtime=runtime_name,
                threads=threads or default_threads(), latency_report=latency_report,
                latency_runs=latency_runs,
                command=command, on_start=on_start, progress=lambda n: bars[0].update(n))
    except drifting.DriftError as exc:
        _fail(exc, as_json)

    if not as_json:
        click.echo(f"images: {report['selection']['reason']}", err=True)
    # The same ending as bench sources/shift: output, report files, exit 1 on unreadable images.
    finish(report, as_json, out_dir,
           lambda r, d: reporting.write_report(r, d, force=True, latency_report=latency_report),
           reporting.terminal_table)
