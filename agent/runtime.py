"""The Runtime: one anyio task group running capture, perceive, act, command and supervise.

Lifecycle: `async with Runtime(config)` builds and opens the drivers and models (in a worker
thread) and starts one capture task (with its reader thread) per camera for the runtime's life. Each
`execute(request)` then reasons about the request, detects the targets in the first frames, and
runs an episode: perceive, act, command and supervise (and the recorder when a run folder is given)
in a task group of its own inside the runtime's, joined only by latest-wins channels. However the
episode ends (success, failure, fault, the consumer leaving, Ctrl-C) the robot is stopped inside a
shielded cancel scope before `Finished` is sent (how that stop went is `Outcome.stop`), and leaving
the context closes every driver. The Runtime holds what outlives episodes and each one's ending;
an episode's start and its table of loops are `agent.episode_runner`, the stop `agent.safe_stop`.

The run folder is a sink: it is checked before anything moves (`RunFolderError` from `execute`),
and a write that fails mid-run becomes a non-fatal Fault event, never the end of the episode.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Callable
from functools import partial
from pathlib import Path
from types import TracebackType

import anyio
import structlog
from anyio.abc import TaskGroup

from agent.backends import Parts, build_parts
from agent.channels import ThreadFed
from agent.config import Config
from agent.episode import Episode, LoopFault
from agent.episode_runner import EpisodeRunner
from agent.errors import describe
from agent.event_queue import EventQueue
from agent.events import Event, Finished, Outcome
from agent.loops.capture import capture_loop
from agent.loops.supervise import Ending
from agent.observe import RunObserver
from agent.recording import RunRecorder
from agent.safe_stop import safe_stop
from agent.telemetry import ensure_logging
from agent.workers import Workers
from drivers.base import Frame

log = structlog.get_logger("agent.runtime")

EVENT_BUFFER = 4096
STOP_TIMEOUT_S = 5.0


class RequestError(ValueError):
    """The request itself is unusable (empty, whitespace, too long)."""


class RuntimeBusy(RuntimeError):
    """One runtime owns one robot: a second execute() while one runs is refused."""


class RuntimeNotStarted(RuntimeError):
    """execute() was called outside `async with Runtime(...)`."""


MAX_REQUEST_CHARS = 2000


def validate_request(request: str) -> str:
    """The stripped request, or RequestError saying what is wrong with it."""
    if not isinstance(request, str):
        raise RequestError(f"request must be text, got {type(request).__name__}")
    text = " ".join(request.split())
    if not text:
        raise RequestError('request is empty: say what you need, e.g. "I spilled the milk"')
    if len(text) > MAX_REQUEST_CHARS:
        raise RequestError(
            f"request is {len(text)} characters long; the limit is {MAX_REQUEST_CHARS}"
        )
    return text


class Runtime:
    """Runs requests on one robot.

    `async with Runtime(config) as rt:` then `async for event in rt.execute(request):`.
    """

    def __init__(self, config: Config, *, parts_factory: Callable[[Config], Parts] = build_parts):
        self.config = config
        self._parts_factory = parts_factory
        self._parts: Parts | None = None
        self._tg: TaskGroup | None = None
        self._stack: contextlib.AsyncExitStack | None = None
        self._frames: dict[str, ThreadFed[Frame]] = {}
        self._busy = False
        self._scope: anyio.CancelScope | None = None  # the running episode's, for cancel()
        self._cancel_reason: str | None = None  # what cancel() was told, for the outcome

    # ----------------------------------------------------------------- lifecycle
    async def __aenter__(self) -> Runtime:
        ensure_logging()
        # threads per device: model calls share the CPU/GPU, the robot takes one call at a time
        self._model_workers = Workers("model", self.config.runtime.model_threads)
        self._robot_workers = Workers("robot")
        self._judge_workers = Workers("judge")
        self._perception_workers = Workers("perception")  # waits for frames, then perceives
        self._turn = anyio.Semaphore(1)  # one robot, one task: held by the running episode
        self._runner = EpisodeRunner(
            self.config,
            self._frames,
            model_workers=self._model_workers,
            robot_workers=self._robot_workers,
            judge_workers=self._judge_workers,
            perception_workers=self._perception_workers,
        )
        return await self._start()

    async def _start(self) -> Runtime:
        stack = contextlib.AsyncExitStack()
        await stack.__aenter__()
        pools = (
            self._model_workers,
            self._robot_workers,
            self._judge_workers,
            self._perception_workers,
        )
        for pool in pools:
            stack.callback(pool.close)  # pushed first, so closed last: the safe stop needs one
        try:
            parts = await anyio.to_thread.run_sync(self._parts_factory, self.config)
            stack.push_async_callback(self._close_parts, parts)
            await anyio.to_thread.run_sync(parts.open)
            self._parts = parts
            self._tg = await stack.enter_async_context(anyio.create_task_group())
            stack.callback(self._tg.cancel_scope.cancel)
            rt = self.config.runtime
            for name, camera in parts.cameras.items():
                self._frames[name] = ThreadFed(f"frames/{name}")
                capture = partial(
                    capture_loop,
                    camera,
                    self._frames[name],
                    timeout=rt.camera_timeout_s,
                    max_failures=rt.camera_failures,
                )
                self._tg.start_soon(capture, name=f"capture/{name}")
        except BaseException:
            with anyio.CancelScope(shield=True):
                await stack.__aexit__(None, None, None)
            raise
        self._stack = stack
        log.info("runtime started", profile=self.config.profile, cameras=list(parts.cameras))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        stack, self._stack = self._stack, None
        if stack is None:
            return None
        # not shielded here: the task group's own scope must unwind in order; closing the
        # drivers (the first callback pushed, so the last run) shields itself
        if isinstance(exc, Exception):
            # an error in the caller's body (e.g. RunFolderError from execute) leaves as it is:
            # the runtime's task group is an internal detail and would wrap it in an
            # ExceptionGroup. The drivers are closed (the arm stopped) all the same.
            await stack.__aexit__(None, None, None)
            return None
        return await stack.__aexit__(exc_type, exc, tb)

    async def _close_parts(self, parts: Parts) -> None:
        with anyio.CancelScope(shield=True):
            await self._safe_stop(parts)
            await anyio.to_thread.run_sync(parts.close)
            log.info("runtime closed")

    async def _safe_stop(self, parts: Parts) -> str:
        """Stop the arm (agent.safe_stop): "ok", or how it failed; never raises, never hangs."""
        return await safe_stop(parts.robot, self._robot_workers, STOP_TIMEOUT_S)

    @property
    def parts(self) -> Parts:
        if self._parts is None or self._tg is None:
            raise RuntimeNotStarted("use `async with Runtime(config) as runtime:` first")
        return self._parts

    def health(self) -> list[str]:
        """What would make every task fault now, one line each; empty while the runtime is fit.

        A camera whose capture loop gave up (its channel closed with the reason) and a robot
        driver that reports its link lost (`link_error`, e.g. the Franka drivers). A service's
        /health reads this, so a dead camera is not reported as "ok".
        """
        if self._parts is None:
            return ["the runtime is not running"]
        problems = [
            f"camera {name!r}: {channel.closed_reason}"
            for name, channel in self._frames.items()
            if channel.closed_reason is not None
        ]
        link_error = getattr(self._parts.robot, "link_error", None)
        if link_error:
            problems.append(f"robot: {link_error}")
        return problems

    # ----------------------------------------------------------------- executions
    @property
    def busy(self) -> bool:
        return self._busy

    def cancel(self, reason: str | None = None) -> bool:
        """Cancel the running execution; its `execute()` then ends with Finished("cancelled").

        Unlike leaving the `async for` (which also cancels), the consumer keeps the stream and so
        receives the outcome: what a service's cancel endpoint or a stop button needs. The arm stops
        as on every ending. `reason` (e.g. "terminated by SIGTERM") becomes the outcome's reason.
        Call it from the runtime's event loop thread (see agent.blocking for other threads).
        Returns False when nothing was running.
        """
        if self._scope is None:
            return False
        if self._cancel_reason is None:
            self._cancel_reason = reason
        self._scope.cancel()
        return True

    async def _take_turn(self) -> None:
        """Claim the robot: refuse while another execution holds it, or wait (when_busy=queue)."""
        if self.config.runtime.when_busy == "queue":
            await self._turn.acquire()
        else:
            try:
                self._turn.acquire_nowait()
            except anyio.WouldBlock:
                raise RuntimeBusy(
                    "this runtime is already executing a request; one robot, one task"
                ) from None
        self._busy = True

    def _release_turn(self) -> None:
        self._busy = False
        self._turn.release()

    async def run(self, request: str, *, run_dir: Path | None = None) -> Outcome:
        """Execute a request to the end and return its outcome (events are only logged)."""
        outcome: Outcome | None = None
        async with contextlib.aclosing(self.execute(request, run_dir=run_dir)) as events:
            async for event in events:
                if isinstance(event, Finished):
                    outcome = event.outcome
        assert outcome is not None
        return outcome

    async def execute(
        self, request: str, *, run_dir: Path | None = None, observer: RunObserver | None = None
    ) -> AsyncGenerator[Event, None]:
        """Carry out one request, yielding its events; the last one is always `Finished`.

        Leaving the loop early (break, cancellation, an exception in the consumer) cancels the
        episode and stops the arm before this generator finishes closing. With `run_dir`, the
        event log, the summary and a video of both views are written there: a new folder (or an
        empty one), checked before anything moves; RunFolderError if it cannot be written.
        An `observer` (agent.observe, e.g. the rerun live view) hears every event and percept.
        """
        text = validate_request(request)
        parts = self.parts
        tg = self._tg
        assert tg is not None
        await self._take_turn()
        recorder: RunRecorder | None = None
        try:
            if run_dir is not None:
                recorder = await anyio.to_thread.run_sync(RunRecorder, run_dir, self.config)
        except BaseException:
            self._release_turn()
            raise
        events = EventQueue[Event](EVENT_BUFFER)
        finished = anyio.Event()
        scope = self._scope = anyio.CancelScope()
        self._cancel_reason = None

        async def episode() -> None:
            try:
                with scope:
                    await self._episode(text, parts, events, recorder, observer)
            except Exception:  # never into the runtime's task group: it outlives episodes
                log.exception("episode ended abnormally")
            finally:
                self._scope = None
                self._release_turn()
                events.close()
                finished.set()

        tg.start_soon(episode, name="episode")
        try:
            async for event in events:
                yield event
        finally:
            if not finished.is_set():
                scope.cancel()
                with anyio.CancelScope(shield=True), anyio.move_on_after(STOP_TIMEOUT_S * 2):
                    await finished.wait()

    async def _episode(
        self,
        request: str,
        parts: Parts,
        events: EventQueue[Event],
        recorder: RunRecorder | None,
        observer: RunObserver | None = None,
    ) -> None:
        ep = Episode(events, recorder, observer=observer)
        structlog.contextvars.bind_contextvars(episode=ep.id)
        ending = Ending("fault", False, "unexpected error; see the log")
        try:
            ending = await self._runner.run(request, parts, ep, recorder)
        except anyio.get_cancelled_exc_class():
            reason = self._cancel_reason or "cancelled before the task finished"
            ending = Ending("cancelled", None, reason)
            raise
        except LoopFault as fault:
            ending = Ending("fault", False, str(fault))
            ep.emit(ep.fault_event(fault.where, fault.message))
        except Exception as exc:  # a bug must end this episode cleanly, not the runtime
            log.exception("episode crashed")
            ending = Ending("fault", False, describe(exc))
        finally:
            stop = await self._safe_stop(parts)  # before Finished: the arm is told first
            if stop != "ok":
                message = f"safe stop {stop}"
                ep.emit(ep.fault_event("robot", message))
                ending = Ending("fault", ending.success, f"{message} ({ending.reason})")
            outcome = ep.outcome(ending, stop, self._frames.values())
            log.info(
                "episode finished",
                status=outcome.status,
                reason=outcome.reason,
                steps=outcome.steps,
                duration_s=outcome.duration_s,
                stop=stop,
            )
            ep.emit(Finished(episode=ep.id, t=ep.now(), outcome=outcome))
            if recorder is not None:
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(recorder.finish, outcome)
            structlog.contextvars.unbind_contextvars("episode")
