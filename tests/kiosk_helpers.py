"""Shared by test_serve.py, test_kiosk.py and test_browser.py: a real uvicorn server on a free
port, started in a thread of the test process or as the `covid-edge serve` command."""

from __future__ import annotations

import contextlib
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from conftest import REPO_ROOT, subprocess_env

URL_PATTERN = re.compile(r"upload page\s+(http://\S+?)/\s*$", re.MULTILINE)


@contextlib.contextmanager
def server_in_thread(app):
    """Serve `app` with uvicorn on 127.0.0.1:<free port>; yields the base URL."""
    import uvicorn

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        listener.close()


@contextlib.contextmanager
def serve_command(*args: str, timeout_s: float = 60.0):
    """Run `covid-edge serve --port 0 ARGS` as a child process; yields (base URL, process).
    The URL comes from the banner the command prints, so this also checks what it says."""
    process = subprocess.Popen(
        [sys.executable, "-m", "covid_edge", "serve", "--port", "0", *map(str, args)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=subprocess_env(),
        cwd=REPO_ROOT)
    banner = []
    try:
        deadline = time.monotonic() + timeout_s
        url = None
        while url is None:
            line = process.stdout.readline()
            if not line:
                raise RuntimeError("covid-edge serve exited: " + "".join(banner)
                                   + process.stderr.read())
            banner.append(line)
            match = URL_PATTERN.search(line)
            url = match.group(1) if match else None
            if time.monotonic() > deadline:
                raise RuntimeError("no URL in the serve banner: " + "".join(banner))
        yield url, process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        process.stdout.close()
        process.stderr.close()


def png_bytes(picture) -> bytes:
    import io
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def copy_images(paths: list[Path], folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    copies = []
    for index, path in enumerate(paths):
        # A numeric prefix fixes the order the folder source reads them in.
        copy = folder / f"{index:02d}-{path.name}"
        copy.write_bytes(path.read_bytes())
        copies.append(copy)
    return copies
