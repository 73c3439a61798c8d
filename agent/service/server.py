"""`python -m agent serve`: the token, the bind-address check, and uvicorn.

Every route but /health needs a bearer token. It comes from `--token-file` or `AGENT_TOKEN`; on a
loopback address without either, a one-time token is generated and printed, so a robot arm is
never driveable by every local user. A non-loopback address without a configured token is refused:
a generated token would have to travel in a log to reach another machine.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import socket
import sys
from collections.abc import Mapping
from pathlib import Path
from types import FrameType

import uvicorn

from agent.config import Config
from agent.service.app import Service, create_app

TOKEN_ENV = "AGENT_TOKEN"
SHUTDOWN_GRACE_S = 5  # open event streams get this long before the server cancels them


class ServiceError(RuntimeError):
    """The service cannot start as asked (token, address); one line for the user."""


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # any other host name may resolve to a public address
        return False


def resolve_token(
    token_file: Path | None, env: Mapping[str, str] = os.environ
) -> tuple[str | None, str]:
    """(token, where it came from, for the user); `--token-file` wins over the environment."""
    if token_file is not None:
        try:
            token = token_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ServiceError(f"--token-file: cannot read {token_file}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise ServiceError(
                f"--token-file: {token_file} is not a text file (a token is UTF-8 text)"
            ) from None
        if not token:
            raise ServiceError(f"--token-file: {token_file} is empty")
        return token, f"token from {token_file}"
    token = env.get(TOKEN_ENV, "").strip()
    return (token, f"token from {TOKEN_ENV}") if token else (None, "")


def check_bind(host: str, token: str | None) -> None:
    if token is None and not is_loopback(host):
        raise ServiceError(
            f"refusing to serve on {host} without a token: set {TOKEN_ENV} or pass --token-file "
            "(only loopback addresses such as 127.0.0.1 may run with a generated token)"
        )


def serve(
    config: Config,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    token_file: Path | None = None,
    log_level: str = "warning",
    env: Mapping[str, str] = os.environ,
) -> int:
    """Serve until interrupted; returns the process exit code (ServiceError for bad arguments)."""
    token, source = resolve_token(token_file, env)
    check_bind(host, token)
    sock = _listen(host, port)  # before the (slow) runtime start, so a taken port fails fast
    port = sock.getsockname()[1]  # the one the system chose for --port 0
    if token is None:
        token = secrets.token_urlsafe(24)
        source = "the one-time token above"
        _say(f"no {TOKEN_ENV} or --token-file: using the one-time token {token}")

    bare = host.strip("[]")
    url = f"http://[{bare}]:{port}" if ":" in bare else f"http://{bare}:{port}"
    app = create_app(
        config,
        token=token,
        on_ready=lambda: _say(f"serving {url} (auth: {source}); Ctrl-C stops the arm and exits"),
    )
    server = _Server(
        app,
        uvicorn.Config(
            app,
            host=host,
            port=port,
            lifespan="on",
            log_level=log_level,
            access_log=log_level in ("debug", "info"),
            timeout_graceful_shutdown=SHUTDOWN_GRACE_S,
        ),
    )
    _say(f"starting the runtime ({config.profile}) for {url} ...")
    try:
        server.run(sockets=[sock])
    except SystemExit:  # uvicorn's way to say it could not start; it logged why
        return 2 if app.startup_error is not None else 1
    finally:
        sock.close()
    return 0


def _listen(host: str, port: int) -> socket.socket:
    bare = host.strip("[]")
    family = socket.AF_INET6 if ":" in bare else socket.AF_INET
    try:
        return socket.create_server((bare, port), family=family)
    except OSError as exc:
        raise ServiceError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


class _Server(uvicorn.Server):
    """uvicorn, but the first Ctrl-C / SIGTERM stops the arm at once, then shuts down as usual."""

    def __init__(self, app: Service, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._app = app

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._app.stop_soon()
        super().handle_exit(sig, frame)


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
