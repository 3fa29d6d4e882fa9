"""`serve` answers a reused keep-alive connection without Nagle's 40 ms stall.

Without TCP_NODELAY on accepted connections, the response's second write (uvicorn sends
headers and body separately) waits for the client's delayed ACK: about 40 ms a request on a
reused connection, against well under a millisecond on a fresh one.
"""

from __future__ import annotations

import asyncio
import http.client
import socket
import statistics
import time
from urllib.parse import urlsplit

import pytest

pytest.importorskip("uvicorn", reason="needs the serve extra")

from covid_edge.kiosk.listen import tcp_listener  # noqa: E402
from kiosk_helpers import serve_command  # noqa: E402

# Linux's delayed-ACK timer is at least 40 ms; a stalled request cannot be faster than it.
STALL_MS = 40.0


def test_accepted_connections_get_tcp_nodelay():
    """What asyncio (under uvicorn) does with the listener `serve` makes."""
    listener = tcp_listener("127.0.0.1", 0)
    port = listener.getsockname()[1]
    seen = []

    class Probe(asyncio.Protocol):
        def connection_made(self, transport):
            sock = transport.get_extra_info("socket")
            seen.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            transport.close()

    async def accept_one():
        server = await asyncio.get_running_loop().create_server(Probe, sock=listener)
        async with server:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            for _ in range(200):
                if seen:
                    break
                await asyncio.sleep(0.01)
            writer.close()

    asyncio.run(accept_one())
    assert seen and seen[0] != 0


def test_reused_connection_does_not_stall(models_dir):
    with serve_command("--model", models_dir, "--threads", "1") as (url, _):
        parts = urlsplit(url)
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
        times = []
        try:
            for _ in range(8):
                start = time.perf_counter()
                connection.request("GET", "/api/v1/health")
                response = connection.getresponse()
                response.read()
                times.append((time.perf_counter() - start) * 1000.0)
                assert response.status == 200
        finally:
            connection.close()
    # The first request is on a fresh connection (no stall either way); the rest reuse it.
    reused = statistics.median(times[1:])
    assert reused < STALL_MS / 2, f"keep-alive requests took {reused:.1f} ms (median): {times}"
