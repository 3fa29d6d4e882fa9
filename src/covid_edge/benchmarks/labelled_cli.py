"""What `bench sources` and `bench shift` share on the command line: the labelled sets, the
model, a progress bar, and writing the report. Defined once so both say it the same way."""

from __future__ import annotations

import contextlib
import json
import shlex
from pathlib import Path

import click

from .. import DISCLAIMER
from ..progress import progress_bar
from ..edge_runtime.cli_options import no_guard_option, runtime_option, threads_option

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_MODEL = 0, 1, 2, 3

SETS_HELP = """\b
SETS are labelled X-rays, each PATH or NAME=PATH:
  a folder with MANIFEST.csv (path,label[,source]: a source per row),
  a folder of class sub-folders (normal/, covid/, pneumonia/, ...),
  or a CSV file with those columns.
A set that shares file names with the model's training split
(training/split.csv beside the model) is reduced to its test split: the
model was trained and tuned on the rest."""


def labelled_options(command):
    """SETS, --model, --split-file, --part, --limit, --seed, --threads, --runtime, --no-guard,
    --out, --force, --json."""
    options = [
        click.option("--json", "as_json", is_flag=True,
                     help="Print the whole result as JSON on stdout (no table, no progress)."),
        click.option("--force", is_flag=True, help="Overwrite an earlier report in --out."),
        click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
                     help="Write the JSON, a Markdown report and plots/*.png here."),
        no_guard_option, runtime_option, threads_option,
        click.option("--seed", type=int, default=0, show_default=True,
                     help="Seed of --limit's random choice (and of random perturbations)."),
        click.option("--limit", type=click.IntRange(min=1), default=None,
                     help="At most N images per source and label (a seeded random choice), "
                          "for a quick run."),
        click.option("--part", type=click.Choice(["test", "val"]), default="test",
                     show_default=True,
                     help="Of the model's own training data, score the test images (held "
                          "out) or the validation images ('val': the part a choice between "
                          "models or settings may be made on; other sets are then left out)."),
        click.option("--split-file", type=click.Path(exists=True, dir_okay=False,
                                                     path_type=Path),
                     help="The split.csv that says which images the model was trained on. "
                          "Default: training/split.csv beside the model."),
        click.option("--model", "model_path", type=click.Path(path_type=Path),
                     help="A .tflite file with its model_card.json beside it, or a folder "
                          "`covid-edge convert` wrote. Default: the released int8 model."),
        click.argument("sets", nargs=-1, required=True),
    ]
    for option in options:
        command = option(command)
    return command


def fail(message: str, code: int, as_json: bool) -> None:
    """One line on stderr (and a JSON error document with --json), then exit `code`."""
    click.echo(f"error: {message}", err=True)
    if as_json:
        click.echo(json.dumps({"error": message, "exit_code": code, "disclaimer": DISCLAIMER},
                              indent=2))
    click.get_current_context().exit(code)


def check_out(out_dir: Path | None, force: bool, check_writable, as_json: bool) -> None:
    """--out before any measuring: an earlier report only with --force, and a folder that can
    be written (not below a file, not read-only): a usage error now, not after the run."""
    from .report import ReportExistsError, check_can_write

    if out_dir is None:
        return
    try:
        check_writable(out_dir, force)
        check_can_write(out_dir)
    except ReportExistsError as exc:
        fail(str(exc), EXIT_USAGE, as_json)
    except OSError as exc:
        fail(f"--out {out_dir}: cannot write the report there ({exc.strerror or exc}): "
             "choose another folder", EXIT_USAGE, as_json)


def load_model(model_path, runtime_name, threads, no_guard, as_json):
    from ..edge_runtime.classifier import ModelError, load_with_messages

    try:
        classifier, messages = load_with_messages(model_path, runtime=runtime_name,
                                                  threads=threads, guard=not no_guard)
    except ModelError as exc:
        fail(f"cannot load the model: {exc}", EXIT_MODEL, as_json)
    for message in messages:
        click.echo(message, err=True)
    return classifier


def load_images(classifier, sets, split_file, limit, seed, as_json, part="test"):
    from .labelled_sets import LabelledSetError, load_sets
    from .drift import SPLIT_FILE

    if split_file is None:
        split_file = classifier.model_path.parent / SPLIT_FILE
    try:
        return load_sets(list(sets), split_file, limit, seed, part)
    except LabelledSetError as exc:
        fail(str(exc), EXIT_USAGE, as_json)


def command_line() -> str:
    """The running command rebuilt from its parsed options, for the report to be rerun: every
    option that differs from its default, then the arguments (the same under any launcher)."""
    ctx = click.get_current_context()
    words = ctx.command_path.split()
    arguments = []
    for param in ctx.command.params:
        value = ctx.params.get(param.name)
        if isinstance(param, click.Argument):
            arguments += [str(v) for v in (value if isinstance(value, tuple) else [value])]
        elif value not in (None, False, ()) and value != param.default and param.expose_value:
            flag = max(param.opts, key=len)
            for item in (value if isinstance(value, tuple) else [value]):
                words += [flag] if item is True else [flag, str(item)]
    return shlex.join(words + arguments)


@contextlib.contextmanager
def progress(label: str, quiet: bool):
    """A progress bar on stderr, started once the count is known: yields (start, advance).
    Hidden with --json and when stderr is not a terminal."""
    with contextlib.ExitStack() as stack:
        bars = []

        def start(count):
            bars.append(stack.enter_context(progress_bar(count, label, quiet)))

        def advance(n=1):
            if bars:
                bars[0].update(n)

        yield start, advance


def finish(report: dict, as_json: bool, out_dir: Path | None, write, terminal_table) -> None:
    """Print the result, write the report, and exit 1 when images could not be read."""
    if as_json:
        from .report import to_json

        click.echo(to_json(report), nl=False)
    else:
        click.echo(terminal_table(report))
    if out_dir is not None:
        try:
            written, plot_note = write(report, out_dir)
        except OSError as exc:
            fail(f"could not write the report: {exc}", EXIT_ERROR, False)
        click.echo(f"wrote {', '.join(str(p) for p in written)}", err=True)
        if plot_note:
            click.echo(f"note: {plot_note}", err=True)
    if report["unreadable"]:
        click.echo(f"error: {len(report['unreadable'])} image(s) could not be read; the figures "
                   "leave them out", err=True)
        click.get_current_context().exit(EXIT_ERROR)
