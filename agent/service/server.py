"""`python -m agent serve`: the token, the bind-address check, TLS, and uvicorn.

Every route but /health needs a bearer token. It comes from `--token-file` or `AGENT_TOKEN`; on a
loopback address without either, a one-time token is generated and printed, so a robot arm is
never driveable by every local user. A non-loopback address without a configured token is refused:
a generated token would have to travel in a log to reach another machine; so is one with a token
shorter than MIN_TOKEN_CHARS. `--ssl-certfile` / `--ssl-keyfile` serve HTTPS; a non-loopback
address without them is served, with a warning: the token would cross the network in clear text.
"""

from __future__ import annotations

import os
import secrets
import socket
import ssl
import sys
from collections.abc import Mapping
from pathlib import Path
from types import FrameType

import uvicorn

from agent.config import Config
from agent.service.app import Service, create_app
from agent.service.guards import is_loopback

TOKEN_ENV = "AGENT_TOKEN"
MIN_TOKEN_CHARS = 16  # off loopback: a token that can be guessed is no lock on a robot arm
SHUTDOWN_GRACE_S = 5  # open event streams get this long before the server cancels them
EXIT_INTERRUPTED = 130  # the CLI's exit code for Ctrl-C (agent.cli), here after a clean stop
STOPPED = "stopped: the arm was stopped and the drivers closed"


class ServiceError(RuntimeError):
    """The service cannot start as asked (token, address); one line for the user."""


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
    """Off loopback, a token is required, and one of at least MIN_TOKEN_CHARS characters."""
    if is_loopback(host):
        return
    if token is None:
        raise ServiceError(
            f"refusing to serve on {host} without a token: set {TOKEN_ENV} or pass --token-file "
            "(only loopback addresses such as 127.0.0.1 may run with a generated token)"
        )
    if len(token) < MIN_TOKEN_CHARS:
        raise ServiceError(
            f"refusing to serve on {host} with a {len(token)}-character token: off loopback it "
            f"needs at least {MIN_TOKEN_CHARS} (e.g. openssl rand -hex 16)"
        )


def check_tls(certfile: Path | None, keyfile: Path | None) -> None:
    """Load the certificate and key once, so that a bad pair is one line, not a traceback."""
    if certfile is None:
        if keyfile is not None:
            raise ServiceError("--ssl-keyfile needs --ssl-certfile (the certificate)")
        return
    for flag, path in (("--ssl-certfile", certfile), ("--ssl-keyfile", keyfile)):
        if path is not None and not path.is_file():
            why = "not a file" if path.exists() else "no such file"
            raise ServiceError(f"{flag}: cannot read {path}: {why}")
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(certfile, keyfile)
    except (ssl.SSLError, OSError) as exc:
        which = f"{certfile}" + (f" and {keyfile}" if keyfile else "")
        why = str(getattr(exc, "reason", None) or getattr(exc, "strerror", None) or exc)
        raise ServiceError(
            f"--ssl-certfile: cannot load a certificate and key from {which}: {why}"
        ) from None


def plain_text_warning(host: str, tls: bool) -> str | None:
    """The line `serve` prints when a non-loopback address is served without TLS."""
    if tls or is_loopback(host):
        return None
    return (
        f"warning: serving {host} over plain HTTP: the bearer token and every command cross the "
        "network readable by anyone on it; pass --ssl-certfile/--ssl-keyfile or put a TLS proxy "
        "in front"
    )


def serve(
    config: Config,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    token_file: Path | None = None,
    ssl_certfile: Path | None = None,
    ssl_keyfile: Path | None = None,
    log_level: str = "warning",
    env: Mapping[str, str] = os.environ,
) -> int:
    """Serve until interrupted; returns the process exit code (ServiceError for bad arguments)."""
    token, source = resolve_token(token_file, env)
    check_bind(host, token)
    check_tls(ssl_certfile, ssl_keyfile)
    warning = plain_text_warning(host, tls=ssl_certfile is not None)
    if warning is not None:
        _say(warning)
    sock = _listen(host, port)  # before the (slow) runtime start, so a taken port fails fast
    port = sock.getsockname()[1]  # the one the system chose for --port 0
    if token is None:
        token = secrets.token_urlsafe(24)
        source = "the one-time token above"
        _say(f"no {TOKEN_ENV} or --token-file: using the one-time token {token}")

    bare = host.strip("[]")
    scheme = "https" if ssl_certfile is not None else "http"
    url = f"{scheme}://[{bare}]:{port}" if ":" in bare else f"{scheme}://{bare}:{port}"
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
            ssl_certfile=ssl_certfile,
            ssl_keyfile=ssl_keyfile,
        ),
    )
    _say(f"starting the runtime ({config.profile}) for {url} ...")
    try:
        server.run(sockets=[sock])
    except SystemExit:  # uvicorn's way to say it could not start; it logged why
        return 2 if app.startup_error is not None else 1
    except KeyboardInterrupt:
        # uvicorn shuts down cleanly on Ctrl-C, then raises the signal again for the caller: a
        # stop that went as it should, not an error (interrupted while starting: the caller's)
        if not server.started:
            raise
        _say(STOPPED)
        return EXIT_INTERRUPTED
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
