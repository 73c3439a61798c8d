"""The reference HTTP service: one Runtime behind a small, authenticated JSON + SSE API.

`python -m agent serve` runs it with uvicorn; `create_app(config, token=...)` gives the ASGI app
for any other ASGI server or for tests. Needs the `serve` extra (starlette, uvicorn).
"""

from agent.service.app import MAX_BODY_BYTES, Service, TaskBody, create_app
from agent.service.guards import AuthThrottle, is_loopback
from agent.service.server import (
    MIN_TOKEN_CHARS,
    ServiceError,
    check_bind,
    check_tls,
    plain_text_warning,
    resolve_token,
    serve,
)

__all__ = [
    "MAX_BODY_BYTES",
    "MIN_TOKEN_CHARS",
    "AuthThrottle",
    "Service",
    "ServiceError",
    "TaskBody",
    "check_bind",
    "check_tls",
    "create_app",
    "is_loopback",
    "plain_text_warning",
    "resolve_token",
    "serve",
]
