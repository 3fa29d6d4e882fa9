"""Progress bars on stderr for long jobs, the same rule everywhere: shown on a terminal,
silent with --json and when stderr is a file or a pipe (logs get no bar residue)."""

from __future__ import annotations

import contextlib
import sys

import click


class _Silent:
    def update(self, n_steps, current_item=None) -> None:
        pass


def wanted(quiet: bool = False) -> bool:
    return not quiet and sys.stderr.isatty()


@contextlib.contextmanager
def progress_bar(length: int, label: str, quiet: bool = False, **options):
    """A click progress bar, or an object whose update() does nothing."""
    if not wanted(quiet):
        yield _Silent()
        return
    with click.progressbar(length=length, label=label, file=sys.stderr, **options) as bar:
        yield bar
