"""`covid-edge serve` under hostile clients: limits, timeouts, quiet disconnects, tokens,
security headers and the --save-uploads quota. Real uvicorn on loopback, real model; every
wait here is well under a second (the limits are set small for the test)."""

from __future__ import annotations

import io
import logging
import socket
import time

import pytest

pytest.importorskip("fastapi", reason="needs the serve extra")
try:
    import httpx2 as httpx
except ModuleNotFoundError:  # pragma: no cover
    import httpx
from fastapi.testclient import TestClient  # noqa: E402

from covid_edge.edge_runtime.classifier import Classifier  # noqa: E402
from covid_edge.kiosk import http_limits, server  # noqa: E402
from covid_edge.kiosk.http_limits import (InflightLimit, RateLimitedLog,  # noqa: E402
                                          protocol_class)
from covid_edge.kiosk.inference import SharedClassifier  # noqa: E402
from covid_edge.kiosk.server import ServerSettings, create_app  # noqa: E402
from covid_edge.kiosk.upload_store import StoreSettings  # noqa: E402
from kiosk_helpers import png_bytes  # noqa: E402

LOOPBACK = ("127.0.0.1", 50000)


@pytest.fixture(scope="module")
def shared(models_dir) -> SharedClassifier:
    return SharedClassifier(Classifier.load(models_dir))


def post(client, data: bytes, name: str = "chest.jpg", **kwargs):
    return client.post("/api/v1/classify", files={"file": (name, data, "image/jpeg")},
                       **kwargs)


def guarded_server(app, header_timeout_s: float = 0.3, max_connections: int = 64):
    """uvicorn as `serve` runs it (GuardedH11Protocol), in a thread; yields (host, port)."""
    import contextlib
    import threading

    import uvicorn

    @contextlib.contextmanager
    def running():
        listener = socket.create_server(("127.0.0.1", 0))
        config = uvicorn.Config(app, log_level="warning", access_log=False,
                                http=protocol_class(max_connections, header_timeout_s))
        instance = uvicorn.Server(config)
        thread = threading.Thread(target=instance.run, kwargs={"sockets": [listener]},
                                  daemon=True)
        thread.start()
        deadline = time.monotonic() + 20
        while not instance.started:
            assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
            time.sleep(0.02)
        try:
            yield listener.getsockname()[:2]
        finally:
            instance.should_exit = True
            thread.join(timeout=10)
            listener.close()

    return running()


def test_security_headers_on_pages_and_api(shared):
    with TestClient(create_app(shared), client=LOOPBACK) as client:
        for path in ("/", "/kiosk", "/api/v1/health", "/nothing"):
            headers = client.get(path).headers
            assert "frame-ancestors 'none'" in headers["content-security-policy"], path
            assert "script-src 'self'" in headers["content-security-policy"]
            assert headers["x-content-type-options"] == "nosniff"


def test_token_is_required_when_set(shared, covid_xray):
    app = create_app(shared, ServerSettings(token="s3cret"))
    with TestClient(app, client=("192.0.2.7", 40000)) as client:
        assert client.get("/").status_code == 401
        assert post(client, covid_xray.read_bytes()).status_code == 401
        assert client.get("/api/v1/health").status_code == 200  # liveness stays open
        wrong = post(client, covid_xray.read_bytes(), headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        right = post(client, covid_xray.read_bytes(), headers={"Authorization": "Bearer s3cret"})
        assert right.status_code == 200, right.text
        # A page opened once with ?token= gets a cookie and a clean address.
        first = client.get("/?token=s3cret", follow_redirects=False)
        assert first.status_code == 303 and first.headers["location"] == "/"
        assert "HttpOnly" in first.headers["set-cookie"]
        assert client.get("/").status_code == 200


def test_busy_server_answers_503_with_retry_after(shared, covid_xray):
    app = create_app(shared)
    limited = InflightLimit(app, limit=0, retry_after_s=3)
    with TestClient(limited, client=LOOPBACK) as client:
        response = post(client, covid_xray.read_bytes())
        assert response.status_code == 503
        assert response.headers["retry-after"] == "3" and "busy" in response.json()["error"]
        assert client.get("/api/v1/health").status_code == 200  # GETs are not limited


def test_save_uploads_keeps_one_copy_per_image_within_the_quota(shared, covid_xray,
                                                                   normal_xray, tmp_path):
    from covid_edge.edge_runtime.guard import NOT_CHEST_XRAY

    folder = tmp_path / "kept"
    settings = ServerSettings(save_uploads=folder, store=StoreSettings(max_files=1))
    with TestClient(create_app(shared, settings), client=LOOPBACK) as client:
        names = {post(client, covid_xray.read_bytes()).json()["saved_as"] for _ in range(3)}
        assert len(names) == 1  # de-duplicated by sha256
        over = post(client, normal_xray.read_bytes()).json()
        assert over["verdict"] and over["saved_as"] is None  # answered, not stored
        images = [p for p in folder.iterdir() if not p.name.endswith(".json")]
        assert [p.name for p in images] == list(names)
        blank = png_bytes(__import__("PIL.Image", fromlist=["Image"]).new("L", (300, 300), 90))
        refused = post(client, blank, "blank.png").json()
        assert refused["verdict"] == NOT_CHEST_XRAY and refused["saved_as"] is None


def test_stalled_connections_are_closed_and_others_still_answered(shared):
    with guarded_server(create_app(shared), header_timeout_s=0.3) as (host, port):
        stalled = [socket.create_connection((host, port)) for _ in range(20)]
        for sock in stalled:
            sock.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n")  # never finished
        answer = httpx.get(f"http://{host}:{port}/api/v1/health", timeout=5)
        assert answer.status_code == 200
        time.sleep(0.8)
        for sock in stalled:
            sock.settimeout(2)
            assert sock.recv(100) == b""  # closed by the server
            sock.close()


def test_connections_over_the_cap_are_closed_at_once(shared):
    with guarded_server(create_app(shared), header_timeout_s=5, max_connections=4) as (h, p):
        held = [socket.create_connection((h, p)) for _ in range(4)]
        time.sleep(0.2)
        extra = socket.create_connection((h, p))
        extra.settimeout(2)
        assert extra.recv(10) == b""
        for sock in held + [extra]:
            sock.close()


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)


def test_stalled_upload_gets_408_and_disconnects_are_quiet(shared, covid_xray, monkeypatch):
    monkeypatch.setattr(server, "BODY_IDLE_TIMEOUT_S", 0.3)
    data = covid_xray.read_bytes()
    boundary = "b0undary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"x.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n").encode()
    length = len(head) + len(data) + len(f"\r\n--{boundary}--\r\n")
    request = (f"POST /api/v1/classify HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n"
               f"Content-Type: multipart/form-data; boundary={boundary}\r\n\r\n").encode()
    records = _Records()
    # uvicorn's loggers do not propagate past "uvicorn", and uvicorn configures them when the
    # server is made: listen there, and at the root (asyncio's, ours), once it runs. Records,
    # not captured file descriptors: the server's thread logs while the test runs.
    listening = [logging.getLogger("uvicorn"), logging.getLogger()]
    with guarded_server(create_app(shared)) as (host, port):
        for logger in listening:
            logger.addHandler(records)
        try:
            slow = socket.create_connection((host, port))
            slow.sendall(request + head + data[:1000])  # then nothing
            slow.settimeout(5)
            reply = slow.recv(4096)
            assert reply.startswith(b"HTTP/1.1 408"), reply[:100]
            slow.close()
            for _ in range(3):  # hang up mid-upload
                gone = socket.create_connection((host, port))
                gone.sendall(request + head + data[:1000])
                gone.close()
            time.sleep(0.5)
            assert httpx.get(f"http://{host}:{port}/api/v1/health",
                             timeout=5).status_code == 200
        finally:
            for logger in listening:
                logger.removeHandler(records)
    logged = "\n".join(logging.Formatter().format(record) for record in records.records)
    assert "slow-upload" in logged, logged  # the handler heard the server
    assert "Traceback" not in logged and "Exception in ASGI application" not in logged, logged


def test_log_lines_are_rate_limited_and_without_tracebacks():
    limiter = RateLimitedLog(interval_s=60)
    records = []
    for _ in range(1000):
        try:
            raise OSError(24, "Too many open files")
        except OSError:
            import sys
            record = logging.LogRecord("asyncio", logging.ERROR, __file__, 1,
                                       "socket.accept() out of system resource\nsocket: <%d>",
                                       None, sys.exc_info())
        if limiter.filter(record):
            records.append(record)
    assert len(records) == 1 and records[0].exc_info is None
    assert "Too many open files" in records[0].getMessage()


def test_upload_is_read_from_a_spooled_file_identically(shared, covid_xray):
    data = covid_xray.read_bytes()
    from_bytes = shared.classify_bytes(data, "x").prediction
    from_file = shared.classify_bytes(io.BytesIO(data), "x").prediction
    assert from_bytes.probability == from_file.probability


def test_the_preview_is_made_only_for_an_answer_that_shows_it(shared, covid_xray):
    """The page and the kiosk show a preview JPEG, made in the worker thread; the JSON API
    shows none and pays for none."""
    data = covid_xray.read_bytes()
    shown = shared.classify_bytes(data, "x")
    assert shown.preview_jpeg.startswith(b"\xff\xd8\xff")
    api = shared.classify_bytes(data, "x", preview=False)
    assert api.preview_jpeg is None
    assert api.prediction.probabilities == shown.prediction.probabilities


def test_serve_help_documents_the_limits():
    from click.testing import CliRunner

    from covid_edge.cli import main
    text = CliRunner().invoke(main, ["serve", "--help"]).output
    for option in ("--token", "--max-concurrent", "--save-max-files", "--save-max-mb",
                   "--save-refused", "503", "408"):
        assert option in text, option
    assert f"{http_limits.HEADER_TIMEOUT_S:g} s" in text
