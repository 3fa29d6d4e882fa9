"""A click command that answers in JSON on every failure when asked for --json.

Scripts that run `covid-edge classify --json` parse stdout; a usage error (a bad option value,
no path) used to leave it empty. Here such errors also print a JSON error document on stdout,
with the same exit code; click's usual message still goes to stderr for the person.
"""

from __future__ import annotations

import json

import click

from .. import DISCLAIMER

JSON_FLAG = "--json"


class JsonErrorCommand(click.Command):
    """click.Command whose usage errors print {"error", "exit_code"} on stdout under --json."""

    def make_context(self, info_name, args, parent=None, **extra):
        try:
            return super().make_context(info_name, list(args), parent=parent, **extra)
        except click.UsageError as exc:
            if wants_json(args):  # the flag may not have been parsed when the error came
                self.emit_usage_error(exc.format_message(), exc.exit_code)
            raise

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            if ctx.params.get("as_json"):
                self.emit_usage_error(exc.format_message(), exc.exit_code)
            raise
        except KeyboardInterrupt as exc:  # the root group (cli.py) ends the process
            if ctx.params.get("as_json"):
                from ..cli import EXIT_INTERRUPTED, INTERRUPTED

                self.emit_usage_error(INTERRUPTED, EXIT_INTERRUPTED)
                exc.reported_as_json = True
            raise

    def emit_usage_error(self, message: str, exit_code: int) -> None:
        """The document a usage error (or an interruption) prints; a command whose --json
        output is JSON lines overrides it to print one line."""
        emit_error(message, exit_code)


class JsonFailureCommand(JsonErrorCommand):
    """With --json, every failure also prints {"error", "exit_code"} on stdout: usage errors
    as classify does, and the ClickExceptions the command raises itself."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except click.UsageError:
            raise  # printed by JsonErrorCommand
        except click.ClickException as exc:
            if ctx.params.get("as_json"):
                emit_error(exc.format_message(), exc.exit_code)
            raise


def wants_json(args) -> bool:
    """--json among the arguments; words after "--" are not options."""
    args = list(args)
    return JSON_FLAG in (args[:args.index("--")] if "--" in args else args)


def emit_error(message: str, exit_code: int, **details) -> None:
    click.echo(json.dumps({"error": message, "exit_code": exit_code, **details,
                           "disclaimer": DISCLAIMER}, indent=2))
