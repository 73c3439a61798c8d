"""Tasks of the service: one execution each, its event history, and fan-out to many listeners.

Every event of a task is kept in its history (an episode has a few hundred), so a listener that
connects late first gets the events so far and then the live ones, and a slow listener only falls
behind on its own: the runtime's consumer appends and never waits for anybody.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import anyio
import structlog
from anyio.abc import TaskGroup

from agent.events import Event, Finished, Outcome
from agent.runtime import Runtime
from agent.service.scenes import RuntimeHost, Scene

log = structlog.get_logger("agent.service")

TaskState = Literal["running", "cancelling", "finished"]


class BoardClosed(RuntimeError):
    """The service is shutting down and takes no new tasks."""


class TaskBusy(RuntimeError):
    """A task is running; the robot takes one at a time."""

    def __init__(self, running: Task) -> None:
        super().__init__(
            f"task {running.id} is still running; one robot, one task "
            f"(cancel it with POST /tasks/{running.id}/cancel or wait for it to finish)"
        )
        self.running = running


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


@dataclass(eq=False)
class Task:
    """One request carried out by the runtime, as the service's clients see it."""

    id: str
    request: str
    run_dir: Path | None = None
    scene: Scene | None = None  # None: a server without our sim (its world is not ours to set)
    created: str = field(default_factory=_now)
    finished: str | None = None
    events: list[Event] = field(default_factory=list)
    outcome: Outcome | None = None
    error: str | None = None  # the runtime refused the task before any episode began
    cancel_requested: bool = False
    done: anyio.Event = field(default_factory=anyio.Event)
    _changed: anyio.Event = field(default_factory=anyio.Event)

    @property
    def state(self) -> TaskState:
        if self.done.is_set():
            return "finished"
        return "cancelling" if self.cancel_requested else "running"

    def append(self, event: Event) -> None:
        self.events.append(event)
        if isinstance(event, Finished):
            self.outcome = event.outcome
        self._wake()

    def finish(self, error: str | None = None) -> None:
        self.error = error
        self.finished = _now()
        self.done.set()
        self._wake()

    def _wake(self) -> None:
        """Wake every listener waiting for news; each then reads the history from its own index."""
        self._changed.set()
        self._changed = anyio.Event()

    async def follow(
        self, start: int = 0, *, heartbeat: float | None = None
    ) -> AsyncIterator[tuple[int, Event] | None]:
        """(index, event) from `start` on: the history first, then live events until the end.

        Yields None after `heartbeat` quiet seconds, so a streaming response can keep its
        connection alive through proxies while the robot is busy reasoning or detecting.
        """
        index = max(start, 0)
        while True:
            while index < len(self.events):
                yield index, self.events[index]
                index += 1
            if self.done.is_set():
                return
            changed = self._changed
            with anyio.move_on_after(heartbeat) as quiet:
                await changed.wait()
            if quiet.cancelled_caught:
                yield None

    def view(self) -> dict[str, Any]:
        """The JSON shape of GET /tasks/{id}."""
        return {
            "id": self.id,
            "request": self.request,
            "state": self.state,
            "episode": self.events[0].episode if self.events else None,
            "events": len(self.events),
            "created": self.created,
            "finished": self.finished,
            "outcome": self.outcome.model_dump(mode="json") if self.outcome else None,
            "error": self.error,
            "run_dir": str(self.run_dir) if self.run_dir else None,
            "scene": self.scene.view() if self.scene else None,
        }


class TaskBoard:
    """Starts tasks on the one runtime, keeps the recent ones, cancels on request.

    Each task's consumer runs in the service's task group; it catches everything, so no task, and
    nothing a client sends, can take the service (or the runtime) down. A task with a scene first
    has the host switch the world to it (agent.service.scenes), inside the task: POST answers
    at once, and the task's state is "running" while the world is built.
    """

    def __init__(
        self,
        host: RuntimeHost,
        tg: TaskGroup,
        *,
        observe: Callable[[Event], None],
        on_end: Callable[[Task], None],
        keep: int = 100,
    ) -> None:
        self._host = host
        self._tg = tg
        self._observe = observe
        self._on_end = on_end
        self._keep = keep
        self._tasks: dict[str, Task] = {}
        self.current: Task | None = None
        self.closed = False

    @property
    def runtime(self) -> Runtime:
        """The runtime tasks run on now (another one after a scene switch)."""
        return self._host.runtime

    @property
    def busy(self) -> bool:
        return self.current is not None and not self.current.done.is_set()

    def get(self, task_id: str) -> Task | None:
        return self._tasks.get(task_id)

    def recent(self) -> list[Task]:
        """Newest first."""
        return list(reversed(self._tasks.values()))

    def start(
        self, request: str, *, run_dir: Path | None = None, scene: Scene | None = None
    ) -> Task:
        """Start a task now or raise TaskBusy; never waits, so the caller can answer 409 at once.

        `scene` (from agent.service.scenes.choose_scene) is the world it runs in; None on a
        server whose world cannot be chosen.
        """
        if self.closed:
            raise BoardClosed("the service is shutting down")
        if self.current is not None and not self.current.done.is_set():
            raise TaskBusy(self.current)
        task = Task(id=uuid.uuid4().hex[:12], request=request, run_dir=run_dir, scene=scene)
        self._tasks[task.id] = task
        self._forget_old()
        self.current = task
        self._tg.start_soon(self._drive, task, name=f"task {task.id}")
        return task

    def request_cancel(self, task: Task) -> None:
        """Ask a task to stop (without waiting); it ends with the "cancelled" outcome."""
        task.cancel_requested = True
        if task is self.current:
            self.runtime.cancel()

    async def cancel(self, task: Task, *, wait: float) -> None:
        """Cancel a running task; return once it finished (the arm stopped) or after `wait` s."""
        self.request_cancel(task)
        with anyio.move_on_after(wait):
            await task.done.wait()

    def close(self) -> None:
        """Take no new tasks and cancel the running one: the first thing a shutdown does."""
        self.closed = True
        if self.current is not None and not self.current.done.is_set():
            self.request_cancel(self.current)

    async def _drive(self, task: Task) -> None:
        error: str | None = None
        try:
            runtime = self.runtime if task.scene is None else await self._host.use(task.scene)
            async with contextlib.aclosing(
                runtime.execute(task.request, run_dir=task.run_dir)
            ) as events:
                async for event in events:
                    task.append(event)
                    self._observe(event)
                    if task.cancel_requested:  # a cancel that came before the episode began
                        runtime.cancel()
        except Exception as exc:  # RuntimeBusy (an embedder shares the runtime), SceneUnavailable
            error = f"{type(exc).__name__}: {exc}"
            log.error("task failed to run", task=task.id, error=error)
        finally:
            task.finish(error)
            self._on_end(task)

    def _forget_old(self) -> None:
        finished = [t for t in self._tasks.values() if t.done.is_set()]
        for task in finished[: max(len(self._tasks) - self._keep, 0)]:
            del self._tasks[task.id]
