"""Protection for `covid-edge serve` when it is reachable beyond this device.

- `SecurityHeaders` on every answer: a Content-Security-Policy that lets the pages load only
  their own scripts and styles (inline style attributes excepted: the probability bar is drawn
  with them) and forbids framing, X-Content-Type-Options: nosniff, and no referrer.
- `TokenGate`, when a token is set (`serve --token`, or COVID_EDGE_TOKEN): every page and API
  call needs it, as `Authorization: Bearer TOKEN`, or once as `?token=TOKEN` on a page, which
  sets an HttpOnly cookie for the rest of the visit. The kiosk loop's frames from this device
  itself and the health check stay open.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
from http.cookies import SimpleCookie
from urllib.parse import parse_qsl, urlencode

TOKEN_ENV = "COVID_EDGE_TOKEN"
COOKIE = "covid_edge_token"
OPEN_PATHS = ("/api/v1/health",)
LOOPBACK_PATHS = ("/api/v1/kiosk/frames",)

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data: blob:; script-src 'self'; style-src 'self'; "
    "style-src-attr 'unsafe-inline'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'")
HEADERS = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]


class SecurityHeaders:
    """ASGI middleware adding HEADERS to every HTTP answer that does not set them itself."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def with_headers(message):
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                message = dict(message)
                message["headers"] = list(message.get("headers", [])) + [
                    (name, value) for name, value in HEADERS if name not in present]
            await send(message)

        await self.app(scope, receive, with_headers)


class TokenGate:
    """ASGI middleware: 401 without the token (see the module's docstring for the ways to
    give it). Tokens are compared in constant time."""

    def __init__(self, app, token: str):
        self.app = app
        self.token = token.encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or self._allowed(scope):
            return await self.app(scope, receive, send)
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        given = query.get("token")
        if given is not None and scope.get("method") == "GET" and self._matches(given):
            # Trade the token in the address for a cookie, and drop it from the address bar.
            rest = urlencode([(k, v) for k, v in query.items() if k != "token"])
            location = scope["path"] + (f"?{rest}" if rest else "")
            cookie = f"{COOKIE}={given}; HttpOnly; SameSite=Strict; Path=/"
            await send({"type": "http.response.start", "status": 303, "headers": [
                (b"location", location.encode("latin-1", "replace")),
                (b"set-cookie", cookie.encode("latin-1", "replace")),
                (b"content-length", b"0")]})
            await send({"type": "http.response.body", "body": b""})
            return
        body = json.dumps({"error": "this server needs its access token: send "
                                    "'Authorization: Bearer TOKEN', or open a page once with "
                                    "?token=TOKEN"}).encode()
        await send({"type": "http.response.start", "status": 401, "headers": [
            (b"content-type", b"application/json"),
            (b"www-authenticate", b'Bearer realm="covid-edge"'),
            (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    def _allowed(self, scope) -> bool:
        path = scope.get("path", "")
        if path in OPEN_PATHS:
            return True
        if path in LOOPBACK_PATHS and _is_loopback(scope):
            return True
        headers = {name.lower(): value for name, value in scope.get("headers", [])}
        authorization = headers.get(b"authorization", b"")
        if authorization[:7].lower() == b"bearer " and self._matches(authorization[7:]):
            return True
        cookie = SimpleCookie()
        try:
            cookie.load(headers.get(b"cookie", b"").decode("latin-1"))
        except Exception:  # noqa: BLE001 - a malformed cookie header is just no token
            return False
        return COOKIE in cookie and self._matches(cookie[COOKIE].value)

    def _matches(self, given) -> bool:
        if isinstance(given, str):
            given = given.encode("utf-8", "replace")
        return hmac.compare_digest(given.strip(), self.token)


def _is_loopback(scope) -> bool:
    client = scope.get("client") or ("", 0)
    try:
        return ipaddress.ip_address(client[0]).is_loopback
    except ValueError:
        return client[0] == "localhost"
