"""What `serve` and `kiosk` share on the command line: model options and loading the model."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import click

from ..edge_runtime.classifier import ModelError, load_with_messages
from ..edge_runtime.cli_options import (device_option, no_guard_option, runtime_option,
                                        threads_option)
from .inference import SharedClassifier

EXIT_OK, EXIT_USAGE, EXIT_MODEL, EXIT_UNAVAILABLE = 0, 2, 3, 4


def model_options(command):
    """--model, --threads, --runtime, --device, --no-guard, as `covid-edge classify` has them."""
    for option in (no_guard_option, device_option, runtime_option, threads_option):
        command = option(command)
    command = click.option(
        "--model", "model_path", type=click.Path(path_type=Path),
        help="A .tflite file with its model_card.json beside it, or a folder that "
             "`covid-edge convert` wrote. Default: the released int8 model.",
    )(command)
    return command


def load_shared_classifier(model_path: Path | None, runtime_name: str | None,
                           threads: int | None, device: str = "cpu",
                           no_guard: bool = False,
                           on_error: Callable[[str, int], None] | None = None
                           ) -> SharedClassifier:
    """Load the model or exit with EXIT_MODEL and a message saying why. `on_error(message,
    exit code)` runs before the exit: kiosk --json ends its stream with an error record."""
    try:
        classifier, messages = load_with_messages(model_path, runtime=runtime_name,
                                                  threads=threads, device=device,
                                                  guard=not no_guard)
    except ModelError as exc:
        message = f"cannot load the model: {exc}"
        click.echo(f"error: {message}", err=True)
        if on_error is not None:
            on_error(message, EXIT_MODEL)
        click.get_current_context().exit(EXIT_MODEL)
    for message in messages:
        click.echo(message, err=True)
    return SharedClassifier(classifier)


def model_line(shared: SharedClassifier) -> str:
    model = shared.model_info()
    return (f"model {model['name']} {model['version']} ({model['variant']}, {model['file']}), "
            f"runtime {model['runtime']}, threshold {model['threshold']:.4g}: "
            f"{model['positive_label']} when P >= it"
            + (", else the most probable other class" if len(model["labels"]) > 2 else ""))
