"""The ASGI app: HTTP routes over one Runtime, bearer auth, body validation, the lifespan.

Routes (all but /health need `Authorization: Bearer <token>` when a token is set):

    GET  /health                  liveness, no auth
    GET  /metrics                 Prometheus text
    GET  /schema                  JSON schema of the events (schema_version inside each event)
    POST /tasks                   {"request": "...", "record": false, "scene": {...}} -> 202 task,
                                  409 while busy; a scene only on the sim (agent.service.scenes)
    GET  /tasks                   recent tasks, newest first
    GET  /tasks/{id}              one task: state, outcome
    GET  /tasks/{id}/events       server-sent events: the history, then live, until Finished
    POST /tasks/{id}/cancel       stop the arm; returns the task with its outcome

Before the routes (agent.service.admission, with agent.service.guards): a client address that
sent too many wrong tokens gets 429; past the caps of [service] a request gets 503 (cancel and
/health never do); an app without a token serves only Host headers naming loopback addresses
(421) and JSON bodies (415). The event stream is agent.service.streaming.

Errors are JSON `{"error": "one line"}`. The lifespan is handled here rather than by Starlette so
that a runtime that cannot start (a missing extra, no renderer) is reported in one line, not as
a traceback, and the service exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import structlog
from anyio.abc import TaskGroup
from pydantic import BaseModel, ConfigDict, StrictBool, StrictStr, ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from agent.backends import Parts, build_parts
from agent.config import Config
from agent.events import EVENT_ADAPTER, SCHEMA_VERSION
from agent.recording import RunFolderError, new_run_folder, prune_run_folders
from agent.runtime import RequestError, validate_request
from agent.service.admission import Admission
from agent.service.metrics import CONTENT_TYPE, Metrics
from agent.service.scenes import RuntimeHost, SceneRefused, check_layout, choose_scene
from agent.service.streaming import events_response
from agent.service.tasks import BoardClosed, Task, TaskBoard, TaskBusy

log = structlog.get_logger("agent.service")

MAX_BODY_BYTES = 16 * 1024  # a request is a sentence; anything bigger is a mistake or an attack
CANCEL_WAIT_S = 15.0  # POST cancel answers once the arm stopped, or after this long


class TaskBody(BaseModel):
    """The body of POST /tasks."""

    model_config = ConfigDict(extra="forbid")

    request: StrictStr
    record: StrictBool = False  # write a run folder (events.jsonl, summary.json) under runs_dir
    #: sim only: {"seed": 3, "objects": ["apple", "bowl"], "setting": "standard"}, each key
    #: optional; checked by agent.service.scenes (values as `--set sim.<key>=` checks them)
    scene: Any = None  # any JSON: a scene that is not an object is a 400 like the rest


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
        self._parts_factory = parts_factory
        self._on_ready = on_ready
        self.metrics = Metrics(profile=config.profile, target_hz=config.runtime.control_hz)
        self.startup_error: str | None = None
        self._board: TaskBoard | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tg: TaskGroup | None = None
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
        self._admission = Admission(self.http, config.service, token=token, metrics=self.metrics)

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
            await self._admission(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        await receive()  # lifespan.startup
        async with contextlib.AsyncExitStack() as stack:
            try:
                host = await stack.enter_async_context(
                    RuntimeHost(self.config, parts_factory=self._parts_factory)
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
            self._board = TaskBoard(host, tg, observe=self.metrics.observe, on_end=self._task_ended)
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
        try:
            scene = choose_scene(self.config, spec.scene)
            if scene is not None and scene.requested:
                await anyio.to_thread.run_sync(check_layout, scene)
        except SceneRefused as exc:
            raise HTTPException(400, str(exc)) from None
        try:  # claimed and checked here: a runs folder that cannot be written is a 503, at once
            run_dir = _run_folder(self.config, text) if spec.record else None
        except RunFolderError as exc:
            raise HTTPException(503, str(exc)) from None
        try:
            task = self.board.start(text, run_dir=run_dir, scene=scene)
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
        return events_response(self._task(request), request, self.metrics)

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
