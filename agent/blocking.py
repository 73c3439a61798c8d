"""The runtime for synchronous code: scripts, notebooks, Flask or Django views, ROS callbacks.

The runtime is async (anyio) because its loops must never wait on each other. A synchronous caller
gets it on an event loop of its own in a background thread (an anyio blocking portal), so the
caller needs no event loop (and may already be inside one, as in Jupyter), and the robot keeps its
fixed control rate however slowly the caller consumes events::

    from agent import load_config
    from agent.blocking import BlockingRuntime, run_request

    outcome = run_request(load_config("sim"), "I spilled the milk")   # open, run, close

    with BlockingRuntime(load_config("sim")) as runtime:              # open once, run many
        for event in runtime.execute("I spilled the milk"):
            print(event.to_json())
"""

from __future__ import annotations

import contextlib
import queue
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import anyio
from anyio.from_thread import BlockingPortal, start_blocking_portal

from agent.backends import Parts, build_parts
from agent.config import Config
from agent.events import Event, Finished, Outcome
from agent.runtime import Runtime, RuntimeNotStarted

Backend = Literal["asyncio", "trio"]


class BlockingRuntime:
    """A `Runtime` running on its own event-loop thread, driven by blocking calls.

    `with BlockingRuntime(config) as runtime:` opens the drivers and models (and closes them on
    leaving, stopping the arm first); `execute` yields events as they happen, `run` returns the
    outcome, and `cancel` may be called from any thread (a stop button, a signal handler).
    """

    def __init__(
        self,
        config: Config,
        *,
        backend: Backend = "asyncio",
        parts_factory: Callable[[Config], Parts] = build_parts,
    ) -> None:
        self.config = config
        self._backend = backend
        self._parts_factory = parts_factory
        self._stack: contextlib.ExitStack | None = None
        self._portal: BlockingPortal | None = None
        self._runtime: Runtime | None = None

    def __enter__(self) -> BlockingRuntime:
        stack = contextlib.ExitStack()
        try:
            portal = stack.enter_context(start_blocking_portal(self._backend))
            # the runtime's task group must be entered and left by one task: the portal keeps
            # one task alive for the whole `with` block
            runtime = Runtime(self.config, parts_factory=self._parts_factory)
            self._runtime = stack.enter_context(portal.wrap_async_context_manager(runtime))
        except BaseException:
            stack.close()
            raise
        self._stack, self._portal = stack, portal
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        stack, self._stack = self._stack, None
        self._portal = self._runtime = None
        if stack is not None:
            stack.__exit__(exc_type, exc, tb)

    @property
    def runtime(self) -> Runtime:
        """The wrapped Runtime; call its methods only through the portal's thread."""
        if self._runtime is None:
            raise RuntimeNotStarted("use `with BlockingRuntime(config) as runtime:` first")
        return self._runtime

    @property
    def busy(self) -> bool:
        return self.runtime.busy

    def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self._portal is None:
            raise RuntimeNotStarted("use `with BlockingRuntime(config) as runtime:` first")
        return self._portal.call(fn, *args)

    def execute(self, request: str, *, run_dir: Path | None = None) -> Iterator[Event]:
        """Carry out one request, yielding its events; the last one is always `Finished`.

        Leaving the loop early (break, an exception, Ctrl-C) cancels the episode and returns only
        after the arm has stopped. Raises RuntimeBusy / RequestError like `Runtime.execute`.
        """
        runtime = self.runtime
        sink: queue.SimpleQueue[Event | None] = queue.SimpleQueue()
        scope: anyio.CancelScope = self._call(anyio.CancelScope)  # made on the loop's thread
        assert self._portal is not None
        future: Future[None] = self._portal.start_task_soon(
            _pump, runtime, request, run_dir, sink, scope
        )
        try:
            while (event := sink.get()) is not None:
                yield event
        finally:
            if not future.done():  # the caller left early: cancel, and wait for the safe stop
                self._call(scope.cancel)
            future.result()  # waits; raises what execute() raised (busy, bad request)

    def run(self, request: str, *, run_dir: Path | None = None) -> Outcome:
        """Carry out one request and return its outcome."""
        outcome: Outcome | None = None
        for event in self.execute(request, run_dir=run_dir):
            if isinstance(event, Finished):
                outcome = event.outcome
        assert outcome is not None, "execute() always ends with Finished"
        return outcome

    def cancel(self) -> bool:
        """Cancel the running execution from any thread; its `execute` ends with the outcome."""
        return bool(self._call(self.runtime.cancel))


async def _pump(
    runtime: Runtime,
    request: str,
    run_dir: Path | None,
    sink: queue.SimpleQueue[Event | None],
    scope: anyio.CancelScope,
) -> None:
    """Move one execution's events into a thread-safe queue; None marks the end."""
    try:
        with scope:
            async with contextlib.aclosing(runtime.execute(request, run_dir=run_dir)) as events:
                async for event in events:
                    sink.put(event)
    finally:
        sink.put(None)


def run_request(
    config: Config,
    request: str,
    *,
    run_dir: Path | None = None,
    backend: Backend = "asyncio",
) -> Outcome:
    """Open a runtime, carry out one request, close it: the one-call way for scripts.

    Works even where an event loop already runs in this thread (Jupyter), unlike `anyio.run`.
    """
    with BlockingRuntime(config, backend=backend) as runtime:
        return runtime.run(request, run_dir=run_dir)


__all__ = ["BlockingRuntime", "run_request"]
