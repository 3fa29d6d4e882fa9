"""Output folders named on the command line, checked before any work: shared by the training
and conversion commands, the benchmarks and the kiosk, none of which should need TensorFlow to
refuse a path."""

from __future__ import annotations

import os
from pathlib import Path

import click


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
