"""Paths named on the command line: output folders checked before any work, and the error for
a file that is there but is not what it should be. Shared by the training and conversion
commands, the benchmarks and the kiosk, none of which should need TensorFlow to refuse a
path."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

import click

EXIT_FILE = 3  # as classify's "model cannot be loaded"

# The --help epilog of the commands that train or convert (train, convert, average,
# train-lungs, convert-lungs): the same codes, said the same way.
WRITING_EXIT_CODES = """\b
Exit codes:
  0  done
  1  the work failed or was refused, with the reason: TensorFlow missing (the [train]
     extra), an earlier run or model in the way (--force replaces it), data it cannot
     train or convert on, a conversion check that fails
  2  usage error: a bad option or value, or an --out that cannot be written (checked
     before any work)
  3  a file given is not what it should be: a model.keras that is no Keras model, weights
     that are no Keras weights, a pack `covid-edge train-lungs --pack` did not write
"""


def file_error(message: str) -> click.ClickException:
    """A file that is there but is not what it should be: exit 3, as for a bad model."""
    error = click.ClickException(message)
    error.exit_code = EXIT_FILE
    return error


def check_out_folder(out_dir, param_hint: str = "--out") -> None:
    """An --out folder that cannot be made is a usage error before any work: a file on its
    path (out/model.keras/run), or a folder that cannot be written in."""
    path = Path(out_dir)
    existing = path
    while not os.path.lexists(existing) and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise click.BadParameter(f"cannot create {out_dir}: {existing} is not a folder",
                                 param_hint=param_hint)
    if not os.access(existing, os.W_OK | os.X_OK):
        raise click.BadParameter(f"cannot write in {existing}", param_hint=param_hint)


@contextmanager
def no_empty_folder_left(out_dir):
    """A command that fails (or is interrupted) before writing into out_dir removes the folders
    it created for it: an empty folder left behind reads as a run that happened. Only folders
    missing on entry are candidates, and rmdir takes a folder only while it is empty, so
    nothing that existed before, or that holds a file, is ever removed."""
    created = []
    path = Path(os.path.abspath(out_dir))
    while not os.path.lexists(path) and path != path.parent:
        created.append(path)  # deepest first
        path = path.parent
    try:
        yield
    except BaseException as exc:
        if not _succeeded(exc):
            for folder in created:
                try:
                    os.rmdir(folder)
                except OSError:
                    break
        raise


def _succeeded(exc: BaseException) -> bool:
    """click's ctx.exit(0) and sys.exit(0) end a command that worked."""
    code = getattr(exc, "exit_code", getattr(exc, "code", None))
    return isinstance(exc, (SystemExit, click.exceptions.Exit)) and code in (0, None)
