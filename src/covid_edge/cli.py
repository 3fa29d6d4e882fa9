"""The `covid-edge` command. Sub-commands are imported only when run, so that `classify`
starts fast and never pulls TensorFlow in through a sibling command."""

from __future__ import annotations

import atexit
import os
import sys
import threading

import click

from . import DISCLAIMER, __version__
from .lazy_group import LazyGroup

# name -> "module:attribute" of a click.Command; one verb per job.
COMMANDS = {
    "train": "covid_edge.convert.train_cli:train",
    "convert": "covid_edge.convert.convert_cli:convert",
    "average": "covid_edge.convert.average_cli:average",
    "fit-guard": "covid_edge.convert.guard_refit_cli:fit_guard",
    "export-onnx": "covid_edge.convert.onnx_cli:export_onnx",
    "train-lungs": "covid_edge.convert.lungs_train_cli:train_lungs",
    "convert-lungs": "covid_edge.convert.lungs_convert_cli:convert_lungs",
    "classify": "covid_edge.edge_runtime.classify_cli:classify",
    "info": "covid_edge.edge_runtime.info_cli:info",
    "explain": "covid_edge.edge_runtime.explain_cli:explain",
    "bench": "covid_edge.benchmarks.cli:bench",
    "check-edgetpu": "covid_edge.edgetpu.check_cli:check_edgetpu",
    "serve": "covid_edge.kiosk.serve_cli:serve",
    "kiosk": "covid_edge.kiosk.kiosk_cli:kiosk",
}


SUMMARIES = {
    "train": "Train MobileNetV2 on class folders of X-rays ([train] extra).",
    "convert": "Quantize a trained model to int8 TFLite, with its model card ([train] extra).",
    "average": "Average the weights of training runs into one model ([train] extra).",
    "fit-guard": "Fit the not-an-X-ray guard's feature check again for a converted model.",
    "export-onnx": "Export the int8 model to ONNX, checked against it ([train,onnx] extras).",
    "train-lungs": "Train the U-Net lung model on X-ray + lung-mask pairs ([train] extra).",
    "convert-lungs": "Convert a train-lungs run to an int8 TFLite lung model ([train] extra).",
    "classify": "Classify X-ray files, folders or globs with the int8 model.",
    "explain": "Draw where the model looked in an X-ray (occlusion heatmap).",
    "info": "Show the model card, the installed runtimes and the bundled samples.",
    "bench": "Benchmarks: check, latency, drift, sources, shift.",
    "check-edgetpu": "Forecast which ops of a .tflite file the Coral Edge TPU would run.",
    "serve": "Web pages and a JSON API for uploads and the kiosk ([serve] extra).",
    "kiosk": "Classify camera or folder frames in a loop, for the kiosk page.",
}


# Help fills up to 100 columns (not click's 80), so that summaries and examples do not wrap.
EXIT_INTERRUPTED = 130  # 128 + SIGINT: what a shell reports for a command ended by Ctrl-C
INTERRUPTED = "interrupted (Ctrl-C)"


class CovidEdgeGroup(LazyGroup):
    """The root group. A Ctrl-C ends any command with exit 130 and one line, not click's
    "Aborted!" and exit 1, which a script would read as "some inputs could not be read"
    (classify writes its --csv at the end through a temporary file, so an interrupted run
    leaves an earlier file whole)."""

    def invoke(self, ctx):
        arguments = list(ctx.args)  # the command's own; click empties ctx.args as it goes on
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt as exc:
            click.echo(f"\n{INTERRUPTED}", err=True)
            # Under --json the document every failure prints: the command printed it if it
            # was running (edge_runtime.json_command), else (still importing) it is printed here.
            if not getattr(exc, "reported_as_json", False):
                from .edge_runtime.json_command import emit_error, wants_json

                if wants_json(arguments):
                    emit_error(INTERRUPTED, EXIT_INTERRUPTED)
            ctx.exit(EXIT_INTERRUPTED)


@click.group(cls=CovidEdgeGroup, lazy_commands=COMMANDS, summaries=SUMMARIES, epilog=DISCLAIMER,
             context_settings={"max_content_width": 100})
@click.version_option(__version__, prog_name="covid-edge")
def main():
    """covid-edge: train, quantize, run and benchmark a chest X-ray classifier (normal,
    pneumonia, COVID-19) on edge devices (Raspberry Pi, Coral Edge TPU).

    \b
    The pipeline, in order:
      covid-edge train ../shared/data/cxr --out runs/v2 --weights FILE.h5
      covid-edge convert runs/v2/model.keras --out models
      covid-edge classify models/samples/
      covid-edge bench check
    Every command has --help with examples and its exit codes. Ctrl-C ends a command
    with exit 130 (a running server or kiosk shuts down cleanly and exits 0).
    """


def entry() -> None:
    """The console script `covid-edge`: main(), then the process ends without the interpreter's
    teardown. Finalizing the modules a cold `classify` loads (numpy alone ~35 ms) took 55-75 ms
    on the development machine, after the answer was already printed: about a fifth of the
    whole command (scripts/cold_start.py). atexit handlers still run and the output is
    flushed; where a thread is still running, the usual exit waits for it as Python would."""
    try:
        main(prog_name="covid-edge")
        code = 0
    except SystemExit as exc:
        code = exc.code
    if threading.active_count() > 1:
        sys.exit(code)
    if code is not None and not isinstance(code, int):
        print(code, file=sys.stderr)  # what SystemExit does with a message
        code = 1
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (`| head`): nothing left to say
            pass
    os._exit(code or 0)


if __name__ == "__main__":
    entry()
