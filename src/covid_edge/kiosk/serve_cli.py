"""`covid-edge serve`: the upload page, prediction page, live kiosk page and JSON API."""

from __future__ import annotations

import signal
import socket
from pathlib import Path

import click

from .. import DISCLAIMER
from .cli_common import EXIT_UNAVAILABLE, load_shared_classifier, model_line, model_options

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_MAX_UPLOAD_MB = 20  # kept equal to server.DEFAULT_MAX_UPLOAD_MB (not imported: FastAPI)

HELP_EPILOG = f"""\b
Pages and API (http://HOST:PORT):
  /                     upload page: pick or drop an X-ray, see the verdict
  /kiosk                live page for `covid-edge kiosk` (updates by itself)
  /api/v1/classify      POST multipart/form-data, field "file" -> JSON verdict
  /api/v1/explain       POST the same -> PNG heatmap of where the model looked (slower:
                        one inference per occluded patch; verdict in X-Explanation-* headers)
  /api/v1/model         GET the model's name, version, threshold, runtime
  /api/v1/health        GET liveness
  /api/v1/openapi.json  the API's OpenAPI schema

\b
Uploads: PNG, JPEG, TIFF, BMP or DICOM (with the dicom extra), up to --max-upload-mb
(20 MB by default), read in memory and not stored unless --save-uploads DIR is given.
Errors: 400 malformed request, 413 too large, 415 not an accepted image, 422 corrupt
image; the page shows the same message. A picture that is no chest X-ray gets the
verdict "not a chest X-ray" with a reason, as with `covid-edge classify`.

\b
Exit codes:
  0  stopped with Ctrl-C or SIGTERM
  2  usage error
  3  the model cannot be loaded
  4  cannot listen on HOST:PORT, or the serve extra is not installed

\b
Examples:
  covid-edge serve                          http://127.0.0.1:8000 on this device only
  covid-edge serve --host 0.0.0.0 --port 8080   reachable from the network (no password!)
  curl -F file=@chest.png http://127.0.0.1:8000/api/v1/classify

Needs the serve extra: pip install '.[serve]' in a clone, or
pip install fastapi uvicorn python-multipart jinja2.

{DISCLAIMER}"""


@click.command(epilog=HELP_EPILOG)
@click.option("--host", default=DEFAULT_HOST, show_default=True,
              help="Address to listen on. The default answers this device only; 0.0.0.0 "
                   "opens the pages and API to the network, without authentication.")
@click.option("--port", type=click.IntRange(0, 65535), default=DEFAULT_PORT, show_default=True,
              help="TCP port (0: any free port, printed at start).")
@click.option("--max-upload-mb", type=click.FloatRange(min=0.1, max=500),
              default=DEFAULT_MAX_UPLOAD_MB, show_default=True,
              help="Largest accepted upload, in MB (MiB); larger ones get HTTP 413.")
@click.option("--save-uploads", type=click.Path(file_okay=False, path_type=Path),
              help="Keep every classified upload in DIR, with its prediction as JSON beside it. "
                   "Default: uploads are never written to disk.")
@model_options
def serve(host, port, max_upload_mb, save_uploads, model_path, threads, runtime_name, device,
          no_guard):
    """Serve the upload and prediction pages, the live kiosk page and a JSON API.

    Open http://127.0.0.1:8000 in a browser on the device (or point Chromium in kiosk mode at
    /kiosk), pick or drop a chest X-ray and get the verdict, the probability against the model
    card's threshold, and the latency. Inference runs on the int8 TFLite model; no TensorFlow.
    """
    try:
        import uvicorn

        from .server import ServerSettings, create_app
    except ImportError as exc:
        from .. import install_hint

        click.echo(f"error: the web server needs the serve extra (missing {exc.name}): "
                   f"{install_hint('serve')}", err=True)
        click.get_current_context().exit(EXIT_UNAVAILABLE)

    if save_uploads is not None:
        try:
            save_uploads.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise click.BadParameter(f"cannot create {save_uploads}: {exc.strerror}",
                                     param_hint="--save-uploads") from None

    shared = load_shared_classifier(model_path, runtime_name, threads, device, no_guard)
    try:
        listener = _listen(host, port)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        click.echo(f"error: cannot listen on {host}:{port} ({reason}); is another server "
                   "running there? Pick another --port.", err=True)
        click.get_current_context().exit(EXIT_UNAVAILABLE)

    settings = ServerSettings(max_upload_bytes=int(max_upload_mb * 1024 * 1024),
                              save_uploads=save_uploads)
    app = create_app(shared, settings)
    base = _base_url(host, listener.getsockname()[1])
    click.echo(f"covid-edge serve: {model_line(shared)}")
    click.echo(f"  upload page  {base}/")
    click.echo(f"  kiosk page   {base}/kiosk   (fed by `covid-edge kiosk`)")
    click.echo(f"  JSON API     {base}/api/v1/   (schema {base}/api/v1/openapi.json)")
    stored = (f"saved to {save_uploads}" if save_uploads is not None else "not stored")
    click.echo(f"Uploads up to {max_upload_mb:g} MB, {stored}. Stop with Ctrl-C.")
    if host not in ("127.0.0.1", "localhost", "::1"):
        click.echo(f"warning: listening on {host}: anyone who can reach this device on the "
                   "network can use the pages and API, without a password", err=True)
    click.echo(DISCLAIMER)

    config = uvicorn.Config(app, log_level="warning", access_log=False,
                            timeout_graceful_shutdown=5)
    # uvicorn shuts down gracefully on SIGINT/SIGTERM, then re-raises the signal to the handler
    # that was there before; these make that a normal exit (0) instead of "Aborted!" or a kill.
    previous = signal.signal(signal.SIGTERM, _stop_requested)
    try:
        uvicorn.Server(config).run(sockets=[listener])
    except (KeyboardInterrupt, _StopRequested):
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
    click.echo("covid-edge serve: stopped.", err=True)


class _StopRequested(Exception):
    pass


def _stop_requested(signum, frame):
    raise _StopRequested


def _listen(host: str, port: int) -> socket.socket:
    """Bind before starting uvicorn, so a busy port is a one-line error (and port 0 works)."""
    family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                  flags=socket.AI_PASSIVE)[0]
    return socket.create_server(address[:2], family=family)


def _base_url(host: str, port: int) -> str:
    shown = {"0.0.0.0": "127.0.0.1", "::": "[::1]", "": "127.0.0.1"}.get(host, host)
    if ":" in shown and not shown.startswith("["):
        shown = f"[{shown}]"
    return f"http://{shown}:{port}"
