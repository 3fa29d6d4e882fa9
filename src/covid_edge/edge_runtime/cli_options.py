"""The options every command that runs the model shares, defined once so that `classify`,
`explain`, `serve`, `kiosk` and the benchmarks say the same thing the same way."""

from __future__ import annotations

import click

from .devices import DEVICES
from .interpreter import RUNTIME_NAMES

threads_option = click.option(
    "--threads", type=click.IntRange(min=1), default=None,
    help="CPU threads for the interpreter. Default: every core this process may use.")

# Backends for a model's ONNX export (edge_runtime/onnx_backends.py), optional extras.
ONNX_RUNTIME_NAMES = ("onnxruntime", "openvino")

runtime_option = click.option(
    "--runtime", "runtime_name", type=click.Choice(RUNTIME_NAMES + ONNX_RUNTIME_NAMES),
    default=None,
    help=f"TFLite interpreter. Default: the first installed of {', '.join(RUNTIME_NAMES)}. "
         f"For an .onnx --model (`covid-edge export-onnx`): "
         f"{' or '.join(ONNX_RUNTIME_NAMES)}, default the first installed.")

device_option = click.option(
    "--device", type=click.Choice(DEVICES), default="cpu", show_default=True,
    help="cpu; edgetpu: a Coral Edge TPU through libedgetpu (the model's _edgetpu.tflite "
         "build; fails with the fix when it cannot); auto: the Edge TPU when present, else "
         "the CPU model, with a notice.")

no_guard_option = click.option(
    "--no-guard", is_flag=True,
    help="Turn the out-of-distribution guard off: every image gets a verdict (one of the "
         "model's classes), even a photo, a blank frame or a lateral view.")
