"""Click groups whose commands are imported only when run.

`covid-edge classify` must start fast and never pull TensorFlow in through a sibling
command, so no command module is imported until that command is asked for.
"""

from __future__ import annotations

import importlib

import click

from . import install_hint

# The install extra that brings a command's third-party imports.
EXTRAS = {"train": "train", "convert": "train", "average": "train", "train-lungs": "train",
          "convert-lungs": "train", "serve": "serve", "kiosk": "serve"}


class LazyGroup(click.Group):
    """A group whose commands ("module:attribute" each) are imported only when run."""

    def __init__(self, *args, lazy_commands: dict[str, str],
                 summaries: dict[str, str] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.lazy_commands = lazy_commands
        # One whole sentence per command for --help: click would cut the docstring's first
        # line at 45 characters, and importing every command to read it is slow.
        self.summaries = summaries or {}

    def list_commands(self, ctx):
        return sorted(self.lazy_commands)

    def format_commands(self, ctx, formatter):
        rows = []
        for name in self.list_commands(ctx):
            summary = self.summaries.get(name)
            if summary is None:
                command = self.get_command(ctx, name)
                summary = command.get_short_help_str(limit=200) if command else ""
            rows.append((name, summary))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def get_command(self, ctx, name):
        target = self.lazy_commands.get(name)
        if target is None:
            return None
        module_name, attribute = target.split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if not exc.name or exc.name.startswith("covid_edge"):
                raise
            extra = EXTRAS.get(name)
            hint = install_hint(extra) if extra else f"pip install {exc.name}"
            raise click.ClickException(
                f"`covid-edge {name}` needs the {exc.name} package, which is not installed: "
                f"{hint}") from None
        return getattr(module, attribute)
