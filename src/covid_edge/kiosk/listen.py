"""The server's listening socket, made so that every accepted connection gets TCP_NODELAY.

asyncio (under uvicorn) sets TCP_NODELAY on an accepted connection only when the socket's
protocol is IPPROTO_TCP. `socket.create_server` leaves it 0, so Nagle's algorithm held back
each response's second write (uvicorn sends headers and body separately) until the client's
delayed ACK came: about 40 ms per request on a reused keep-alive connection.
"""

from __future__ import annotations

import os
import socket


def tcp_listener(host: str, port: int, backlog: int = 128) -> socket.socket:
    """A bound, listening TCP socket for host:port (port 0: a free one)."""
    family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                  flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        if os.name not in ("nt", "cygwin"):  # as socket.create_server: quick restarts
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6 and hasattr(socket, "IPV6_V6ONLY"):
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return sock
