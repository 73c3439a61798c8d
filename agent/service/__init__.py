"""The reference HTTP service: one Runtime behind a small, authenticated JSON + SSE API.

`python -m agent serve` runs it with uvicorn; `create_app(config, token=...)` gives the ASGI app
for any other ASGI server or for tests. Needs the `serve` extra (starlette, uvicorn).
"""

from agent.service.app import MAX_BODY_BYTES, Service, TaskBody, create_app
from agent.service.server import ServiceError, check_bind, is_loopback, resolve_token, serve

__all__ = [
    "MAX_BODY_BYTES",
    "Service",
    "ServiceError",
    "TaskBody",
    "check_bind",
    "create_app",
    "is_loopback",
    "resolve_token",
    "serve",
]
