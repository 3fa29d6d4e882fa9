"""What keeps `covid-edge serve` answering under hostile load: connection and request limits,
timeouts for slow clients, and a log that cannot flood.

uvicorn alone keeps a connection that sends half a request line open forever, counts stalled
connections against `limit_concurrency` (so that a normal request gets 503 while they are
open), and logs every failed accept() with a traceback when file descriptors run out. Here:

- `raise_fd_limit` lifts the soft RLIMIT_NOFILE to the hard limit (systemd's default soft
  limit is 1,024, its hard limit far higher), so that a thousand idle sockets do not exhaust it;
- `GuardedH11Protocol` closes a connection whose request headers have not arrived within
  HEADER_TIMEOUT_S (slowloris), and refuses connections beyond `max_connections` at once;
- `InflightLimit` answers 503 with Retry-After when more than `limit` uploads are being
  processed, instead of letting them queue without bound;
- `RateLimitedLog` lets one line per kind of event through per LOG_INTERVAL_S, without
  tracebacks, and says how many it held back.

Body timeouts (a client that stalls mid-upload) are enforced where the body is read, in
server.read_upload. Figures under load: docs/hardening.md (scripts/hostile_load.py).
"""

from __future__ import annotations

import json
import logging
import threading
import time

from uvicorn.protocols.http.h11_impl import H11Protocol

HEADER_TIMEOUT_S = 10.0
# Seconds of silence allowed while an upload's body is arriving, and the whole body's limit.
BODY_IDLE_TIMEOUT_S = 30.0
BODY_TOTAL_TIMEOUT_S = 300.0
KEEP_ALIVE_S = 5
# h11 refuses request heads larger than this (400): no legitimate client sends more.
MAX_HEADER_BYTES = 16 * 1024
# Uploads processed at once (the rest get 503 + Retry-After); each holds at most ~1 MB in
# memory (larger bodies are spooled to disk) while waiting for one of the decode workers.
DEFAULT_MAX_INFLIGHT = 32
RETRY_AFTER_S = 2
# File descriptors kept free for the model, spooled uploads and logs.
FD_RESERVE = 64
MAX_CONNECTIONS_CAP = 4096
LOG_INTERVAL_S = 60.0

LOGGER = logging.getLogger("covid_edge.serve")


def raise_fd_limit() -> int:
    """Lift the soft limit on open files to the hard limit; returns the soft limit now in
    force (or 1,024 where it cannot be read)."""
    try:
        import resource
    except ImportError:  # Windows
        return 1024
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return 1 << 20 if soft == resource.RLIM_INFINITY else int(soft)


def max_connections_for(fd_limit: int) -> int:
    return max(16, min(MAX_CONNECTIONS_CAP, fd_limit - FD_RESERVE))


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for request headers and a connection cap.

    The deadline runs from the moment the connection opens, and again after each response,
    until the next request's headers are complete; uvicorn's own keep-alive timer is reset by
    any byte received, so a client trickling a header one byte at a time would never be
    dropped by it."""

    header_timeout_s: float = HEADER_TIMEOUT_S
    max_connections: int | None = None

    def connection_made(self, transport) -> None:
        self._header_timer = None
        super().connection_made(transport)
        if self.max_connections is not None and len(self.connections) > self.max_connections:
            note("connections", f"more than {self.max_connections} open connections: closing "
                                "new ones until some finish")
            transport.close()
            return
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._request_in_progress():
            self._disarm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and not self._request_in_progress():
            self._arm()

    def connection_lost(self, exc) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _request_in_progress(self) -> bool:
        return self.cycle is not None and not self.cycle.response_complete

    def _arm(self) -> None:
        self._disarm()
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._header_timeout)

    def _disarm(self) -> None:
        timer, self._header_timer = getattr(self, "_header_timer", None), None
        if timer is not None:
            timer.cancel()

    def _header_timeout(self) -> None:
        self._header_timer = None
        if self._request_in_progress() or self.transport.is_closing():
            return
        note("slow-headers", f"closed connections that sent no complete request within "
                             f"{self.header_timeout_s:g} s (slow or stalled clients)")
        self.transport.close()


def protocol_class(max_connections: int, header_timeout_s: float = HEADER_TIMEOUT_S):
    """A GuardedH11Protocol subclass with these limits (uvicorn takes a class, not an object)."""
    return type("GuardedH11", (GuardedH11Protocol,),
                {"max_connections": max_connections, "header_timeout_s": header_timeout_s})


class InflightLimit:
    """ASGI middleware: at most `limit` POST requests in the app at once; the next get 503
    with Retry-After and a JSON error, at once and without reading their bodies."""

    def __init__(self, app, limit: int = DEFAULT_MAX_INFLIGHT, retry_after_s: int = RETRY_AFTER_S):
        self.app = app
        self.limit = limit
        self.retry_after_s = retry_after_s
        self.inflight = 0

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("method") != "POST":
            return await self.app(scope, receive, send)
        if self.inflight >= self.limit:
            note("busy", f"more than {self.limit} uploads at once: answering 503 with "
                         f"Retry-After {self.retry_after_s} s")
            body = json.dumps({"error": f"the server is busy ({self.limit} uploads in "
                                        f"progress); retry in {self.retry_after_s} s"}).encode()
            await send({"type": "http.response.start", "status": 503, "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"retry-after", str(self.retry_after_s).encode()),
                (b"connection", b"close")]})
            await send({"type": "http.response.body", "body": body})
            return
        self.inflight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.inflight -= 1


class RateLimitedLog(logging.Filter):
    """One record per (logger, message template) per `interval_s`; tracebacks become one line
    (the exception's type and text); the next record let through says how many were held."""

    def __init__(self, interval_s: float = LOG_INTERVAL_S):
        super().__init__()
        self.interval_s = interval_s
        self._last: dict[tuple, float] = {}
        self._held: dict[tuple, int] = {}
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        # The first line only: asyncio appends the socket's repr, which differs every time.
        key = (record.name, str(record.msg).split("\n", 1)[0])
        now = time.monotonic()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self.interval_s:
                self._held[key] = self._held.get(key, 0) + 1
                return False
            self._last[key] = now
            held = self._held.pop(key, 0)
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            record.msg = f"{record.getMessage()} ({type(exc).__name__}: {exc})"
            record.args = None
            record.exc_info = None
            record.exc_text = None
        if held:
            record.msg = f"{record.getMessage()} [{held} more like this in the last " \
                         f"{self.interval_s:g} s]"
            record.args = None
        return True


# The loggers that speak under load: uvicorn's, asyncio's (failed accept() when descriptors
# run out) and ours.
NOISY_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "asyncio", LOGGER.name)


def install_log_limits(interval_s: float = LOG_INTERVAL_S) -> RateLimitedLog:
    limiter = RateLimitedLog(interval_s)
    for name in NOISY_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RateLimitedLog) for f in logger.filters):
            logger.addFilter(limiter)
    if not LOGGER.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
        LOGGER.addHandler(handler)
        LOGGER.setLevel(logging.WARNING)
    return limiter


def note(kind: str, message: str) -> None:
    """One warning line for an event of `kind`; repeats within the interval are counted, not
    printed (the filter keys on the message, so each kind keeps one fixed text)."""
    LOGGER.warning(f"{kind}: {message}")
