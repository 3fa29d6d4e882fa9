"""`covid-edge serve`: the upload page, prediction page, live kiosk page and JSON API."""

from __future__ import annotations

import contextlib
import signal
import socket
from pathlib import Path

import click

from .. import DISCLAIMER
from ..cli_paths import no_empty_folder_left
from .cli_common import EXIT_UNAVAILABLE, load_shared_classifier, model_line, model_options

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_MAX_UPLOAD_MB = 20  # kept equal to server.DEFAULT_MAX_UPLOAD_MB (not imported: FastAPI)
# Kept equal to upload_store's and http_limits' defaults (not imported: they need the extra).
DEFAULT_SAVE_MAX_FILES = 1000
DEFAULT_SAVE_MAX_MB = 1024.0
DEFAULT_MAX_INFLIGHT = 32
TOKEN_ENV = "COVID_EDGE_TOKEN"

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
(20 MB by default), not stored unless --save-uploads DIR is given (then once per
sha256, within --save-max-files/--save-max-mb; pictures the guard refuses only with
--save-refused). Errors: 400 malformed request, 401 no token (--token), 408 upload
stalled, 413 too large, 415 not an accepted image, 422 corrupt image, 503 busy (more
than --max-concurrent uploads; Retry-After says when to retry); the page shows the same
message. Connections that send no complete request within 10 s are closed. A picture that is no chest X-ray gets the
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
  covid-edge serve --host 0.0.0.0 --port 8080 --token "$(openssl rand -hex 16)"
                                            reachable from the network, with a token
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
@click.option("--save-max-files", type=click.IntRange(min=1), default=DEFAULT_SAVE_MAX_FILES,
              show_default=True, help="With --save-uploads: keep at most this many images.")
@click.option("--save-max-mb", type=click.FloatRange(min=1), default=DEFAULT_SAVE_MAX_MB,
              show_default=True, help="With --save-uploads: keep at most this many MB.")
@click.option("--save-refused", is_flag=True,
              help="With --save-uploads: also keep pictures the guard answers \"not a chest "
                   "X-ray\" (by default they are not stored).")
@click.option("--max-concurrent", type=click.IntRange(min=1), default=DEFAULT_MAX_INFLIGHT,
              show_default=True,
              help="Uploads processed at once; more get HTTP 503 with Retry-After.")
@click.option("--token", envvar=TOKEN_ENV, default=None,
              help=f"Require this access token for every page and API call (also from "
                   f"${TOKEN_ENV}): 'Authorization: Bearer TOKEN', or ?token=TOKEN once in "
                   "the browser. Use it whenever --host is not this device.")
@model_options
def serve(host, port, max_upload_mb, save_uploads, save_max_files, save_max_mb, save_refused,
          max_concurrent, token, model_path, threads, runtime_name, device, no_guard):
    """Serve the upload and prediction pages, the live kiosk page and a JSON API.

    Open http://127.0.0.1:8000 in a browser on the device (or point Chromium in kiosk mode at
    /kiosk), pick or drop a chest X-ray and get the verdict, the probability against the model
    card's threshold, and the latency. Inference runs on the int8 TFLite model; no TensorFlow.
    """
    try:
        import uvicorn

        from .http_limits import (HEADER_TIMEOUT_S, KEEP_ALIVE_S, MAX_HEADER_BYTES,
                                  install_log_limits, max_connections_for, protocol_class,
                                  raise_fd_limit)
        from .server import ServerSettings, create_app
        from .upload_store import StoreSettings
    except ImportError as exc:
        from .. import install_hint

        click.echo(f"error: the web server needs the serve extra (missing {exc.name}): "
                   f"{install_hint('serve')}", err=True)
        click.get_current_context().exit(EXIT_UNAVAILABLE)

    with contextlib.ExitStack() as starting:  # a server that never started leaves no folder
        if save_uploads is not None:
            starting.enter_context(no_empty_folder_left(save_uploads))
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
            click.echo(f"error: cannot listen on {host}:{port} ({reason}); "
                       f"{_listen_hint(exc, host, port)}", err=True)
            click.get_current_context().exit(EXIT_UNAVAILABLE)

    settings = ServerSettings(
        max_upload_bytes=int(max_upload_mb * 1024 * 1024), save_uploads=save_uploads,
        store=StoreSettings(max_files=save_max_files, max_bytes=int(save_max_mb * 2**20),
                            keep_refused=save_refused),
        max_inflight=max_concurrent, token=token or None)
    app = create_app(shared, settings)
    base = _base_url(host, listener.getsockname()[1])
    click.echo(f"covid-edge serve: {model_line(shared)}")
    click.echo(f"  upload page  {base}/")
    click.echo(f"  kiosk page   {base}/kiosk   (fed by `covid-edge kiosk`)")
    click.echo(f"  JSON API     {base}/api/v1/   (schema {base}/api/v1/openapi.json)")
    stored = (f"saved to {save_uploads} (at most {save_max_files} files, {save_max_mb:g} MB)"
              if save_uploads is not None else "not stored")
    click.echo(f"Uploads up to {max_upload_mb:g} MB, {stored}. Stop with Ctrl-C.")
    if token:
        click.echo(f"  access token required (open {base}/?token=... once in the browser)")
    elif host not in ("127.0.0.1", "localhost", "::1"):
        click.echo(f"warning: listening on {host}: anyone who can reach this device on the "
                   "network can use the pages and API; set --token", err=True)
    click.echo(DISCLAIMER)

    max_connections = max_connections_for(raise_fd_limit())
    config = uvicorn.Config(
        app, log_level="warning", access_log=False, timeout_graceful_shutdown=5,
        http=protocol_class(max_connections, HEADER_TIMEOUT_S),
        # uvicorn's own limit counts idle connections too: kept above ours as a backstop only.
        limit_concurrency=max_connections + 1, timeout_keep_alive=KEEP_ALIVE_S,
        h11_max_incomplete_event_size=MAX_HEADER_BYTES)
    install_log_limits()
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
    """Bind before starting uvicorn, so a busy port is a one-line error (and port 0 works);
    accepted connections get TCP_NODELAY (see listen.py)."""
    from .listen import tcp_listener
    return tcp_listener(host, port)


def _listen_hint(exc: OSError, host: str, port: int) -> str:
    """What to do about a failed bind: only a busy port means another server."""
    import errno

    if exc.errno == errno.EADDRINUSE:
        return "is another server running there? Pick another --port."
    if isinstance(exc, socket.gaierror) or exc.errno == errno.EADDRNOTAVAIL:
        return (f"{host} is not an address of this device: --host 127.0.0.1 answers this "
                "device only, 0.0.0.0 every network interface.")
    if exc.errno == errno.EACCES and 0 < port < 1024:
        return "ports below 1024 need administrator rights: pick a --port from 1024 up."
    return "pick another --host or --port."


def _base_url(host: str, port: int) -> str:
    shown = {"0.0.0.0": "127.0.0.1", "::": "[::1]", "": "127.0.0.1"}.get(host, host)
    if ":" in shown and not shown.startswith("["):
        shown = f"[{shown}]"
    return f"http://{shown}:{port}"
