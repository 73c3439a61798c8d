"""Who is served, before the routes: bearer auth, the failed-auth throttle and the caps.

`Admission` wraps the routes' ASGI app (HTTP requests only). Without a token it checks the Host
header (on loopback) and that bodies are JSON (agent.service.guards says why); with one, the
throttle of the client's address, then the token. Past the caps of [service] (requests being
served, event streams open) a request gets 503; cancel and /health are always served, so that
a stop button works however busy the service is. Every refusal is JSON `{"error": "one line"}`.
"""

from __future__ import annotations

import hmac
import re

from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from agent.config import ServiceSection
from agent.service.guards import (
    AuthThrottle,
    has_body,
    header,
    host_allowed,
    is_json,
    is_loopback,
)
from agent.service.metrics import Metrics

OPEN_PATHS = frozenset({"/health"})
EVENTS_PATH = re.compile(r"/tasks/[^/]+/events")
CANCEL_PATH = re.compile(r"/tasks/[^/]+/cancel")


class Admission:
    """ASGI middleware in front of the routes (`app`): serves a request or turns it away."""

    def __init__(
        self, app: ASGIApp, limits: ServiceSection, *, token: str | None, metrics: Metrics
    ) -> None:
        self._app = app
        self._limits = limits
        self._token = token.encode() if token else None
        self._metrics = metrics
        self._throttle = (
            AuthThrottle(limits.auth_max_failures, limits.auth_window_s)
            if token and limits.auth_max_failures > 0
            else None
        )
        self._requests = 0  # being served now (an open event stream is one until it ends)
        self._listeners = 0  # open event streams

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        refusal = self._refusal(scope)
        if refusal is not None:
            await refusal(scope, receive, send)
        else:
            await self._serve_capped(scope, receive, send)

    def _refusal(self, scope: Scope) -> Response | None:
        """The answer to a request turned away before the routes, or None to serve it.

        Without a token: the Host check (on loopback) and JSON bodies. With one: the failed-auth
        throttle, then the token itself. /health needs no token, but passes the Host check.
        """
        if self._token is None:
            if _local_is_loopback(scope) and not host_allowed(scope):
                return _error(
                    421,
                    f"Host {header(scope, b'host')!r} is not this service's address; without a "
                    "token only localhost and loopback addresses are served (DNS rebinding)",
                )
            if scope["method"] == "POST" and has_body(scope) and not is_json(scope):
                kind = header(scope, b"content-type")
                return _error(415, f"Content-Type must be application/json, not {kind!r}")
            return None
        if scope["path"] in OPEN_PATHS:
            return None
        address = _client(scope)
        throttle = self._throttle
        if throttle is not None and not self._exempt(address):
            wait = throttle.retry_after(address)
            if wait:
                self._metrics.request_refused("throttled")
                return _error(
                    429,
                    f"too many failed bearer tokens from {address}; try again in {wait} s",
                    headers={"Retry-After": str(wait)},
                )
        given = _bearer(scope)
        if given is not None and hmac.compare_digest(given, self._token):
            if throttle is not None:
                throttle.succeeded(address)
            return None
        if given is not None and throttle is not None and not self._exempt(address):
            throttle.failed(address)  # a wrong token is a guess; a missing one is not
        message = "invalid bearer token" if given is not None else _MISSING_TOKEN
        return _error(401, message, headers={"WWW-Authenticate": 'Bearer realm="agent"'})

    def _exempt(self, address: str) -> bool:
        return is_loopback(address) and not self._limits.throttle_loopback

    async def _serve_capped(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve within the caps of [service]; cancel and /health are always served."""
        path = scope["path"]
        if path in OPEN_PATHS or (scope["method"] == "POST" and CANCEL_PATH.fullmatch(path)):
            await self._app(scope, receive, send)
            return
        limits = self._limits
        stream = scope["method"] == "GET" and EVENTS_PATH.fullmatch(path) is not None
        if stream and self._listeners >= limits.max_listeners:
            refusal = _error(
                503,
                f"too many event streams open ({self._listeners}, service.max_listeners); "
                "close one or try again later",
            )
        elif self._requests >= limits.max_requests:
            refusal = _error(
                503,
                f"too many requests at once ({self._requests}, service.max_requests); "
                "try again later",
            )
        else:
            self._requests += 1
            self._listeners += int(stream)
            try:
                await self._app(scope, receive, send)
            finally:
                self._requests -= 1
                self._listeners -= int(stream)
            return
        self._metrics.request_refused("max_listeners" if stream else "max_requests")
        await refusal(scope, receive, send)


def _bearer(scope: Scope) -> bytes | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, credentials = value.partition(b" ")
            return credentials.strip() if scheme.lower() == b"bearer" else b""
    return None


_MISSING_TOKEN = "missing bearer token: send 'Authorization: Bearer <token>'"


def _error(status: int, message: str, *, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse({"error": message}, status, headers=headers)


def _client(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else ""


def _local_is_loopback(scope: Scope) -> bool:
    """True when the connection arrived on a loopback address (None: a test client; treat so)."""
    server = scope.get("server")
    return server is None or is_loopback(str(server[0]))
