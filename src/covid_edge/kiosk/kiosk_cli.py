"""`covid-edge kiosk`: capture a frame, classify it, show the result; again and again."""

from __future__ import annotations

import contextlib
import json
import signal
import threading
from datetime import datetime

import click

from .. import DISCLAIMER
from ..edge_runtime.display import probability_text
from ..edge_runtime.json_command import JsonErrorCommand
from .camera import (DEFAULT_RESOLUTION, DEFAULT_WARMUP_S, SOURCE_HELP, CameraUnavailable,
                     open_source, parse_resolution)
from .cli_common import (EXIT_OK, EXIT_UNAVAILABLE, load_shared_classifier, model_line,
                         model_options)
from .inference import SharedClassifier
from .kiosk_loop import KioskSummary, ServerPublisher, Sink, run_kiosk

DEFAULT_SERVER = "http://127.0.0.1:8000"

HELP_EPILOG = f"""\b
Sources:
  folder:DIR         the images in DIR, in name order, over and over (demos, tests)
  picamera2[:N]      Raspberry Pi camera N (default 0) through picamera2
                     (sudo apt install python3-picamera2; venv with --system-site-packages)
  v4l2:/dev/video0   a USB/V4L2 camera through OpenCV (pip install opencv-python-headless)

\b
Each frame prints one line: time, frame number, verdict, P(covid) (and, for a model of more
than two classes, every other class's probability), inference latency, label. An int8
model's probabilities have two decimals, ">0.99"/"<0.01" where its output saturates, as in
`covid-edge classify`; --json carries the exact numbers. A file that cannot be read gets a
line too, but is not a frame (--count counts frames); a folder whose every file fails ends
the kiosk with exit 4.
When `covid-edge serve` runs at --server, each result also goes to its live page
(SERVER/kiosk), which updates by itself; without a server the loop goes on, terminal only.

\b
Exit codes:
  0  --count frames done, or stopped with Ctrl-C / SIGTERM
  2  usage error
  3  the model cannot be loaded
  4  the source cannot be opened or stopped giving frames
With --json, a failure ends the output with one record
{{"event": "error", "error": ..., "exit_code": ...}}.

\b
Examples:
  covid-edge kiosk --source picamera2
  covid-edge kiosk --source folder:models/samples --interval 3
  covid-edge kiosk --source v4l2:/dev/video0 --no-server --json

{DISCLAIMER}"""


def _resolution(ctx, param, value):
    try:
        return parse_resolution(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


class JsonLinesErrorCommand(JsonErrorCommand):
    """Usage errors under --json (a bad --source or --resolution) print an error record on
    stdout as classify's do, on one line: the kiosk's --json output is JSON lines."""

    def emit_usage_error(self, message: str, exit_code: int) -> None:
        _emit_error(message, exit_code)


@click.command(cls=JsonLinesErrorCommand, epilog=HELP_EPILOG)
@click.option("--source", "source_spec", required=True, metavar="SOURCE",
              help=f"Where frames come from: {SOURCE_HELP}.")
@click.option("--interval", type=click.FloatRange(min=0), default=2.0, show_default=True,
              help="Seconds from the start of one frame to the start of the next.")
@click.option("--count", type=click.IntRange(min=1), default=None,
              help="Stop after this many frames (unreadable files are reported, not "
                   "counted). Default: run until stopped.")
@click.option("--server", "server_url", default=DEFAULT_SERVER, show_default=True,
              help="A `covid-edge serve` on this device to show results on its /kiosk page.")
@click.option("--no-server", is_flag=True, help="Terminal only: do not post to a server.")
@click.option("--resolution", default="x".join(map(str, DEFAULT_RESOLUTION)),
              show_default=True, callback=_resolution, metavar="WxH",
              help="Camera frame size (picamera2, v4l2); the model resizes it anyway.")
@click.option("--warmup", type=click.FloatRange(min=0), default=DEFAULT_WARMUP_S,
              show_default=True,
              help="Seconds to let a Raspberry Pi camera settle exposure before the first frame.")
@click.option("--json", "as_json", is_flag=True,
              help="One JSON document per line on stdout: a start record, one per frame, a "
                   "summary (an error record instead when it fails).")
@model_options
def kiosk(source_spec, interval, count, server_url, no_server, resolution, warmup, as_json,
          model_path, threads, runtime_name, device, no_guard):
    """Classify frames from a camera or a folder, one every --interval seconds.

    Point a Raspberry Pi camera at an X-ray film on a light box (or at a monitor) and every
    frame gets a verdict on the terminal and, while `covid-edge serve` runs, on the live kiosk
    page. No TensorFlow: the int8 TFLite model runs on the device.
    """
    try:
        source = open_source(source_spec, resolution, warmup)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--source") from None
    shared = load_shared_classifier(model_path, runtime_name, threads, device, no_guard,
                                    on_error=_emit_error if as_json else None)

    def note(message: str) -> None:
        click.echo(message, err=True)

    sinks = [_json_line if as_json else _terminal_sink(shared)]
    if not no_server:
        sinks.append(ServerPublisher(server_url, note))

    if as_json:
        _emit({"event": "start", "source": source.description, "interval_s": interval,
               "model": shared.model_info(), "disclaimer": DISCLAIMER})
    else:
        click.echo(f"covid-edge kiosk: {source.description}, a frame every {interval:g} s; "
                   f"{model_line(shared)}")
        click.echo(DISCLAIMER)
        model = shared.model_info()
        width = _verdict_width(model["labels"])
        others = "".join(f" {'P(' + label[:7] + ')':>10}" for label in _others(model))
        click.echo(f"{'time':<8} {'frame':>5}  {'verdict':<{width}} "
                   f"{'P(' + model['positive_label'] + ')':>8}{others} {'latency':>10}  image")

    stop = threading.Event()
    summary = KioskSummary()  # filled as frames come: its counts survive a failing source
    try:
        with _stop_on_signals(stop):
            run_kiosk(shared, source, sinks, interval_s=interval, count=count, stop=stop,
                      summary=summary)
    except CameraUnavailable as exc:
        message = f"{source.description}: {exc}"
        if as_json:
            _emit_error(message, EXIT_UNAVAILABLE, **_counts(summary))
        else:
            _summary_line(summary)
        click.echo(f"error: {message}", err=True)
        click.get_current_context().exit(EXIT_UNAVAILABLE)

    if as_json:
        _emit({"event": "summary", **_counts(summary)})
    else:
        _summary_line(summary)
    click.get_current_context().exit(EXIT_OK)


def _counts(summary: KioskSummary) -> dict:
    return {"frames": summary.frames, "unreadable": summary.unreadable,
            "verdicts": summary.verdicts}


def _summary_line(summary: KioskSummary) -> None:
    verdicts = ", ".join(f"{n} {label}" for label, n in sorted(summary.verdicts.items()))
    click.echo(f"{summary.frames} frame(s): {verdicts or 'none classified'}; "
               f"{summary.unreadable} unreadable.", err=True)


def _others(model: dict) -> list[str]:
    """The classes that get a column beside P(positive): those of a model of more than two."""
    labels = model["labels"]
    return [label for label in labels if label != model["positive_label"]] \
        if len(labels) > 2 else []


def _verdict_width(labels) -> int:
    return max([8, *(len(label) for label in labels)])


def _terminal_sink(shared: SharedClassifier) -> Sink:
    """Frame lines whose probabilities read as in every other command: the model's output
    limits say when an int8 probability saturated."""
    limits = shared.classifier.output_limits()
    return lambda record, preview: _terminal_line(record, limits)


def _terminal_line(record: dict, limits) -> None:
    clock = datetime.now().strftime("%H:%M:%S")
    labels = record.get("labels") or []
    width = _verdict_width(labels)
    others = _others({"labels": labels, "positive_label": record["positive_label"]})
    if record["error"]:
        dashes = "".join(f" {'-':>10}" for _ in others)
        click.echo(f"{clock:<8} {record['frame']:>5}  {'-':<{width}} {'-':>8}{dashes} "
                   f"{'-':>10}  {record['label']}: unreadable ({record['error']})")
        return
    if record["probability"] is None:  # not a chest X-ray: no probability means anything
        click.echo(f"{clock:<8} {record['frame']:>5}  {record['verdict']}: {record['reason']}  "
                   f"{record['label']}")
        return
    shown, raw = record.get("probabilities") or {}, record.get("raw_probabilities") or {}
    columns = "".join(f" {probability_text(raw.get(label), shown.get(label), limits):>10}"
                      for label in others)
    probability = probability_text(record.get("raw_probability"), record["probability"], limits)
    click.echo(f"{clock:<8} {record['frame']:>5}  {record['verdict']:<{width}} "
               f"{probability:>8}{columns} {record['latency_ms']:>7.1f} ms  "
               f"{record['label']}")


def _json_line(record: dict, preview: bytes | None) -> None:
    _emit({"event": "frame", **record})


def _emit(document: dict) -> None:
    click.echo(json.dumps(document))


def _emit_error(message: str, exit_code: int, **details) -> None:
    """The last record of a failed --json run: json_command's {"error", "exit_code"} shape,
    with "event" like every other kiosk record."""
    _emit({"event": "error", "error": message, "exit_code": exit_code, **details,
           "disclaimer": DISCLAIMER})


@contextlib.contextmanager
def _stop_on_signals(stop: threading.Event):
    """Ctrl-C and SIGTERM (systemctl stop) end the loop after the current frame, so the camera
    is stopped and closed; a second Ctrl-C interrupts at once."""
    def first_signal(signum, frame):
        stop.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return
    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    for signum in previous:
        signal.signal(signum, first_signal)
    try:
        yield  # a second Ctrl-C raises KeyboardInterrupt; run_kiosk closes the source anyway
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
