"""The ASGI app: HTTP routes over one Runtime, bearer auth, body validation, the lifespan.

Routes (all but /health need `Authorization: Bearer <token>` when a token is set):

    GET  /health                  liveness, no auth
    GET  /metrics                 Prometheus text
    GET  /schema                  JSON schema of the events (schema_version inside each event)
    POST /tasks                   {"request": "...", "record": false} -> 202 task, 409 while busy
    GET  /tasks                   recent tasks, newest first
    GET  /tasks/{id}              one task: state, outcome
    GET  /tasks/{id}/events       server-sent events: the history, then live, until Finished
    POST /tasks/{id}/cancel       stop the arm; returns the task with its outcome

Before the routes (agent.service.guards): a client address that sent too many wrong tokens gets
429; past the caps of [service] a request gets 503 (cancel and /health never do); an app without
a token serves only Host headers naming loopback addresses (421) and JSON bodies (415).

Errors are JSON `{"error": "one line"}`. The lifespan is handled here rather than by Starlette so
that a runtime that cannot start (a missing extra, no renderer) is reported in one line, not as
a traceback, and the service exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hmac
import json
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import structlog
from anyio.abc import TaskGroup
from pydantic import BaseModel, ConfigDict, StrictBool, StrictStr, ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from agent.backends import Parts, build_parts
from agent.config import Config
from agent.events import EVENT_ADAPTER, SCHEMA_VERSION
from agent.recording import RunFolderError, new_run_folder, prune_run_folders
from agent.runtime import RequestError, Runtime, validate_request
from agent.service.guards import (
    AuthThrottle,
    has_body,
    header,
    host_allowed,
    is_json,
    is_loopback,
)
from agent.service.metrics import CONTENT_TYPE, Metrics
from agent.service.tasks import BoardClosed, Task, TaskBoard, TaskBusy

log = structlog.get_logger("agent.service")

MAX_BODY_BYTES = 16 * 1024  # a request is a sentence; anything bigger is a mistake or an attack
CANCEL_WAIT_S = 15.0  # POST cancel answers once the arm stopped, or after this long
HEARTBEAT_S = 15.0  # an SSE comment after this many quiet seconds keeps proxies from timing out
OPEN_PATHS = frozenset({"/health"})
EVENTS_PATH = re.compile(r"/tasks/[^/]+/events")
CANCEL_PATH = re.compile(r"/tasks/[^/]+/cancel")
LAST_EVENT_ID = re.compile(r"[0-9]{1,18}")  # ASCII digits only, and few enough to be an index


class TaskBody(BaseModel):
    """The body of POST /tasks."""

    model_config = ConfigDict(extra="forbid")

    request: StrictStr
    record: StrictBool = False  # write a run folder (events.jsonl, summary.json) under runs_dir


class Service:
    """The reference HTTP service around one Runtime, as an ASGI application.

    The runtime is opened once when the server starts (ASGI lifespan) and closed when it stops;
    closing cancels a running task first, so the arm stops before the drivers close.
    """

    def __init__(
        self,
        config: Config,
        *,
        token: str | None,
        parts_factory: Callable[[Config], Parts] = build_parts,
        on_ready: Callable[[], None] | None = None,
    ) -> None:
        self.config = config
        self._token = token.encode() if token else None
        self._parts_factory = parts_factory
        self._on_ready = on_ready
        self.metrics = Metrics(profile=config.profile, target_hz=config.runtime.control_hz)
        self.startup_error: str | None = None
        self._board: TaskBoard | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tg: TaskGroup | None = None
        limits = config.service
        self._throttle = (
            AuthThrottle(limits.auth_max_failures, limits.auth_window_s)
            if token and limits.auth_max_failures > 0
            else None
        )
        self._requests = 0  # being served now (an open event stream is one until it ends)
        self._listeners = 0  # open event streams
        self.http = Starlette(
            routes=[
                Route("/health", self._health, methods=["GET"]),
                Route("/metrics", self._metrics, methods=["GET"]),
                Route("/schema", self._schema, methods=["GET"]),
                Route("/tasks", self._create, methods=["POST"]),
                Route("/tasks", self._list, methods=["GET"]),
                Route("/tasks/{task_id}", self._get, methods=["GET"]),
                Route("/tasks/{task_id}/events", self._events, methods=["GET"]),
                Route("/tasks/{task_id}/cancel", self._cancel, methods=["POST"]),
            ],
            exception_handlers={HTTPException: _http_error, Exception: _internal_error},
        )

    @property
    def board(self) -> TaskBoard:
        if self._board is None:
            raise HTTPException(503, "the runtime is not running")
        return self._board

    def stop_soon(self) -> None:
        """Cancel the running task and take no new ones; safe from a signal handler or a thread.

        The server calls it at the first Ctrl-C: uvicorn would otherwise first wait for open event
        streams (for its grace period) with the arm still moving, and only then end the lifespan.
        """
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._close_board)

    def _close_board(self) -> None:
        if self._board is not None:
            self._board.close()

    # ----------------------------------------------------------------- ASGI
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] != "http":
            await self.http(scope, receive, send)
        else:
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
                self.metrics.request_refused("throttled")
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
        return is_loopback(address) and not self.config.service.throttle_loopback

    async def _serve_capped(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve within the caps of [service]; cancel and /health are always served."""
        path = scope["path"]
        if path in OPEN_PATHS or (scope["method"] == "POST" and CANCEL_PATH.fullmatch(path)):
            await self.http(scope, receive, send)
            return
        limits = self.config.service
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
                await self.http(scope, receive, send)
            finally:
                self._requests -= 1
                self._listeners -= int(stream)
            return
        self.metrics.request_refused("max_listeners" if stream else "max_requests")
        await refusal(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        await receive()  # lifespan.startup
        async with contextlib.AsyncExitStack() as stack:
            try:
                runtime = await stack.enter_async_context(
                    Runtime(self.config, parts_factory=self._parts_factory)
                )
                tg = await stack.enter_async_context(anyio.create_task_group())
            except Exception as exc:  # the ASGI server reports the message and exits
                self.startup_error = f"the runtime did not start: {_one_line(exc)}"
                await send({"type": "lifespan.startup.failed", "message": self.startup_error})
                return
            stack.callback(tg.cancel_scope.cancel)  # stops a running task (and the arm) first
            self._tg = tg
            with contextlib.suppress(RuntimeError):  # only asyncio has a loop to call back into
                self._loop = asyncio.get_running_loop()
            self._board = TaskBoard(
                runtime, tg, observe=self.metrics.observe, on_end=self._task_ended
            )
            await send({"type": "lifespan.startup.complete"})
            log.info("service ready", profile=self.config.profile)
            if self._on_ready is not None:
                self._on_ready()
            message: Message = await receive()  # lifespan.shutdown
            assert message["type"] == "lifespan.shutdown"
            self._board.close()
            self._board = self._loop = self._tg = None
        await send({"type": "lifespan.shutdown.complete"})

    def _task_ended(self, task: Task) -> None:
        if task.error is not None:
            self.metrics.task_error()
        output = self.config.output
        bounded = output.keep_runs is not None or output.keep_bytes is not None
        if task.run_dir is not None and self._tg is not None and bounded:
            self._tg.start_soon(self._prune_runs, task.run_dir)

    async def _prune_runs(self, finished: Path) -> None:
        """Delete the oldest run folders beyond output.keep_runs / keep_bytes (in a thread)."""
        output = self.config.output
        prune = functools.partial(
            prune_run_folders,
            finished.parent,
            keep_runs=output.keep_runs,
            keep_bytes=output.keep_bytes,
            protect=[finished],  # the newest; a run in progress has no summary yet: kept too
        )
        try:
            removed = await anyio.to_thread.run_sync(prune)
        except Exception as exc:  # retention must never take the service down
            log.error("deleting old run folders failed", error=_one_line(exc))
            return
        if removed:
            log.info("deleted old run folders", count=len(removed), runs_dir=str(finished.parent))

    # ----------------------------------------------------------------- routes
    async def _health(self, request: Request) -> Response:
        """200 "ok" while tasks can run; 503 "unavailable" (no runtime) or "degraded" with the
        problems (a dead camera, a lost robot link) when every task would fault."""
        if self._board is None:
            return JSONResponse({"status": "unavailable", "busy": False}, status_code=503)
        body: dict[str, object] = {"status": "ok", "busy": self.board.busy}
        problems = self.board.runtime.health()
        if problems:
            body.update(status="degraded", problems=problems)
        return JSONResponse(body, status_code=503 if problems else 200)

    async def _metrics(self, request: Request) -> Response:
        return Response(self.metrics.render(running=self.board.busy), media_type=CONTENT_TYPE)

    async def _schema(self, request: Request) -> Response:
        schema = EVENT_ADAPTER.json_schema()
        return JSONResponse({"schema_version": SCHEMA_VERSION, "event": schema})

    async def _create(self, request: Request) -> Response:
        body = await _read_json(request)
        try:
            spec = TaskBody.model_validate(body)
            text = validate_request(spec.request)
        except ValidationError as exc:
            raise HTTPException(422, _describe(exc)) from None
        except RequestError as exc:
            raise HTTPException(422, str(exc)) from None
        try:  # claimed and checked here: a runs folder that cannot be written is a 503, at once
            run_dir = _run_folder(self.config, text) if spec.record else None
        except RunFolderError as exc:
            raise HTTPException(503, str(exc)) from None
        try:
            task = self.board.start(text, run_dir=run_dir)
        except TaskBusy as busy:
            _unclaim(run_dir)
            self.metrics.refused()
            return JSONResponse({"error": str(busy), "running": busy.running.id}, 409)
        except BoardClosed as exc:
            _unclaim(run_dir)
            raise HTTPException(503, str(exc)) from None
        return JSONResponse(task.view(), 202, headers={"Location": f"/tasks/{task.id}"})

    async def _list(self, request: Request) -> Response:
        return JSONResponse({"tasks": [task.view() for task in self.board.recent()]})

    async def _get(self, request: Request) -> Response:
        return JSONResponse(self._task(request).view())

    async def _cancel(self, request: Request) -> Response:
        task = self._task(request)
        if task.done.is_set():
            status = task.outcome.status if task.outcome else "error"
            raise HTTPException(409, f"task {task.id} already finished ({status})")
        await self.board.cancel(task, wait=CANCEL_WAIT_S)
        return JSONResponse(task.view(), 200 if task.done.is_set() else 202)

    async def _events(self, request: Request) -> Response:
        task = self._task(request)
        start = _resume_from(request)
        return StreamingResponse(
            self._stream(task, start),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    async def _stream(self, task: Task, start: int) -> AsyncIterator[str]:
        """Server-sent events: `id` is the event's index in the task, `event` its kind."""
        self.metrics.listeners += 1
        try:
            async for item in task.follow(start, heartbeat=HEARTBEAT_S):
                if item is None:
                    yield ": still running\n\n"
                    continue
                index, event = item
                yield f"id: {index}\nevent: {event.kind}\ndata: {event.to_json()}\n\n"
            if task.error is not None:
                yield f"event: error\ndata: {json.dumps({'error': task.error})}\n\n"
        finally:
            self.metrics.listeners -= 1

    def _task(self, request: Request) -> Task:
        task_id = request.path_params["task_id"]
        task = self.board.get(task_id)
        if task is None:
            raise HTTPException(404, f"no task {task_id!r} (tasks are kept in memory: recent only)")
        return task


def create_app(
    config: Config,
    *,
    token: str | None,
    parts_factory: Callable[[Config], Parts] = build_parts,
    on_ready: Callable[[], None] | None = None,
) -> Service:
    """The service as an ASGI app; serve it with any ASGI server (uvicorn: see agent.service).

    `token=None` turns authentication off: only for embedders that authenticate in front of it.
    """
    return Service(config, token=token, parts_factory=parts_factory, on_ready=on_ready)


# --------------------------------------------------------------------- helpers
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


async def _read_json(request: Request) -> Any:
    """The body parsed as JSON, read no further than MAX_BODY_BYTES; 413 / 400 otherwise."""
    too_large = HTTPException(413, f"body is larger than {MAX_BODY_BYTES} bytes")
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
        raise too_large
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY_BYTES:
                raise too_large
    except ClientDisconnect:  # nobody to answer; not a server error to log with a traceback
        raise HTTPException(400, "the client went away before the body was complete") from None
    if not body.strip():
        raise HTTPException(400, 'body is empty; send JSON: {"request": "I spilled the milk"}')
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:  # RecursionError: absurdly nested arrays
        raise HTTPException(400, f"body is not valid JSON ({type(exc).__name__})") from None


def _describe(exc: ValidationError) -> str:
    """The first validation problem in one line, naming the field."""
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "body"
    if err["type"] == "extra_forbidden":
        return f"unknown field {where!r}; allowed: {', '.join(TaskBody.model_fields)}"
    if err["type"] == "model_type":
        return 'body must be a JSON object such as {"request": "I spilled the milk"}'
    return f"{where}: {err['msg']}"


def _one_line(exc: Exception) -> str:
    if isinstance(exc, KeyError) and exc.args:  # str(KeyError) wraps its message in quotes
        return str(exc.args[0])
    return str(exc) or type(exc).__name__


def _resume_from(request: Request) -> int:
    """Where a stream starts: after the SSE `Last-Event-ID` a reconnecting client sends, else 0."""
    last = request.headers.get("last-event-id", "").strip()
    if not last:
        return 0
    if not LAST_EVENT_ID.fullmatch(last):
        raise HTTPException(
            400, "Last-Event-ID must be a plain integer: the id of the last event received"
        )
    return int(last) + 1


def _run_folder(config: Config, request: str) -> Path:
    """A new run folder, named and claimed as the CLI does, so both front ends file runs alike."""
    return new_run_folder(config.output.runs_dir, request)


def _unclaim(run_dir: Path | None) -> None:
    """Give back a run folder claimed for a task that did not start (it is still empty)."""
    if run_dir is not None:
        with contextlib.suppress(OSError):
            run_dir.rmdir()


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return JSONResponse({"error": exc.detail}, exc.status_code, headers=exc.headers)


async def _internal_error(request: Request, exc: Exception) -> Response:
    log.exception("request failed", path=request.url.path)
    return JSONResponse({"error": f"internal error: {type(exc).__name__}"}, 500)
