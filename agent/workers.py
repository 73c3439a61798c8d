"""Blocking calls (vendor SDKs, model inference) run in worker threads, never on the event loop.

`Workers` is a fixed set of threads for one kind of call (the models', the robot's, the success
check's), which bounds how many such calls run at once. It exists because anyio's
`to_thread.run_sync` costs the event loop's thread about 130 us of CPU per call on this project's
2-core machine (measured: limiter, cancel scope, checkpoints and a thread-pool lookup), and the
runtime makes several such calls per control step (perception, the policy, the robot, the success
check; cameras read on threads of their own, `agent.loops.capture`). On
asyncio a call here is one future, one queue put and one `call_soon_threadsafe` (about 40 us);
other anyio backends take anyio's path.

A call that misses its deadline or is cancelled is abandoned, as anyio abandons it: it finishes
in the background and its result is dropped, and a fresh thread takes the abandoned one's place,
so a hung SDK call never takes capacity (or the robot's safe stop) with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import queue
import threading
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, Generic, NoReturn, TypeVar

import anyio
import anyio.from_thread
import sniffio

T = TypeVar("T")

_QUEUED, _RUNNING, _DONE = range(3)


class StageTimeout(TimeoutError):
    """A blocking call missed its deadline; the message names the stage."""


class _Call(Generic[T]):
    """One call handed to a worker thread, its result delivered to the loop's future."""

    __slots__ = ("abandoned", "fn", "future", "lock", "loop", "state")

    def __init__(self, fn: Callable[[], T], loop: asyncio.AbstractEventLoop) -> None:
        self.fn = fn
        self.loop = loop
        self.future: asyncio.Future[T] = loop.create_future()
        self.lock = threading.Lock()
        self.state = _QUEUED
        self.abandoned = False

    def run(self) -> bool:
        """Run in a worker thread; True when this thread must leave (its call was abandoned
        while running, and a replacement already serves the queue)."""
        with self.lock:
            if self.abandoned:
                return False  # given up before it started: skip it
            self.state = _RUNNING
        try:
            result: Any = self.fn()
            failed = False
        except BaseException as exc:  # delivered to the caller, whatever it is
            result, failed = exc, True
        with self.lock:
            self.state = _DONE
            if self.abandoned:
                return True
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits for this result
            self.loop.call_soon_threadsafe(_deliver, self.future, result, failed)
        return False

    def abandon(self) -> bool:
        """Give the call up (from the loop); True when a thread is still busy with it."""
        with self.lock:
            self.abandoned = True
            return self.state == _RUNNING


def _deliver(future: asyncio.Future[Any], result: Any, failed: bool) -> None:
    if future.done():  # cancelled or timed out while the result travelled
        return
    if failed:
        future.set_exception(result)
    else:
        future.set_result(result)


def _expire(future: asyncio.Future[Any], message: str) -> None:
    if not future.done():
        future.set_exception(StageTimeout(message))


class Workers:
    """`threads` worker threads for one kind of blocking call, started on first use."""

    def __init__(self, name: str, threads: int = 1) -> None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        self.name = name
        self.threads = threads
        self._calls: queue.SimpleQueue[_Call[Any] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._started = 0
        self._closed = False
        self._limiter: anyio.CapacityLimiter | None = None  # other backends

    async def run(self, fn: Callable[..., T], *args: object, timeout: float, what: str) -> T:
        """`fn(*args)` on one of the threads; StageTimeout naming `what` after `timeout` s.

        On timeout or cancellation the call is abandoned (see the module's docstring).
        """
        if sniffio.current_async_library() != "asyncio":
            return await self._run_anyio(partial(fn, *args), timeout, what)
        if self._closed:
            raise RuntimeError(f"{self.name} workers are closed")
        loop = asyncio.get_running_loop()
        call: _Call[T] = _Call(partial(fn, *args), loop)
        self._start_threads()
        self._calls.put(call)
        timer = (
            loop.call_later(
                timeout, _expire, call.future, f"{what} did not finish within {timeout:g} s"
            )
            if timeout < math.inf
            else None  # a call that runs for the episode (its work watched by a `Busy`)
        )
        try:
            return await call.future
        finally:
            if timer is not None:
                timer.cancel()
            if call.abandon():  # still running: timed out or cancelled (a no-op once done)
                self._replace()

    def close(self) -> None:
        """Let the idle threads end (calls still running finish first); idempotent."""
        with self._lock:
            self._closed = True
            for _ in range(self._started):
                self._calls.put(None)
            self._started = 0

    def _start_threads(self) -> None:
        with self._lock:
            while self._started < self.threads:
                self._spawn()

    def _replace(self) -> None:
        """A thread is stuck in an abandoned call: another one takes its place in the pool."""
        with self._lock:
            if not self._closed:
                self._spawn()

    def _spawn(self) -> None:
        self._started += 1
        threading.Thread(target=self._serve, name=f"{self.name}-worker", daemon=True).start()

    def _serve(self) -> None:
        while True:
            call = self._calls.get()
            if call is None:
                return
            if call.run():  # abandoned while it ran: the replacement counts in its place
                with self._lock:
                    if not self._closed:
                        self._started -= 1
                return

    async def _run_anyio(self, fn: Callable[[], T], timeout: float, what: str) -> T:
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self.threads)
        try:
            with anyio.fail_after(timeout):
                return await anyio.to_thread.run_sync(
                    fn, limiter=self._limiter, abandon_on_cancel=True
                )
        except TimeoutError:
            raise StageTimeout(f"{what} did not finish within {timeout:g} s") from None


def loop_caller() -> Callable[..., object]:
    """How a thread runs a callback on the current event loop's thread."""
    if sniffio.current_async_library() == "asyncio":
        return asyncio.get_running_loop().call_soon_threadsafe
    token = anyio.lowlevel.current_token()
    return lambda fn, *args: anyio.from_thread.run_sync(fn, *args, token=token)


class Busy:
    """The deadline of work done inside a long-running thread call (a loop run on a thread, e.g.
    perception's, agent.loops.perceive), where `Workers.run`'s per-call deadline cannot see it.

    The thread marks each unit of work (`with busy:`); `watch` (on the loop, beside the call:
    `watched`) raises StageTimeout naming `what` once one has run past `timeout`. It looks every
    `period` s (a quarter of the timeout, at most 1 s), so a hang is caught within `deadline_s`.
    """

    __slots__ = ("period", "since", "timeout", "what")

    def __init__(self, what: str, timeout: float) -> None:
        self.what = what
        self.timeout = timeout
        self.period = min(1.0, timeout / 4)
        self.since: float | None = None  # set and cleared by the thread; read by the loop

    @property
    def deadline_s(self) -> float:
        """How long after a unit of work starts its hang is reported, at the latest."""
        return self.timeout + self.period

    def __enter__(self) -> None:
        self.since = time.monotonic()

    def __exit__(self, *exc: object) -> None:
        self.since = None

    async def watch(self) -> NoReturn:
        while True:
            await anyio.sleep(self.period)
            since = self.since
            if since is not None and time.monotonic() - since > self.timeout:
                raise StageTimeout(f"{self.what} did not finish within {self.timeout:g} s")


async def watched(body: Callable[[], Awaitable[None]], busy: Busy) -> None:
    """Run `body` with `busy.watch` beside it until either fails (that error leaves as it is,
    not in an ExceptionGroup) or `body` returns."""
    failure: list[Exception] = []

    async def guard(fn: Callable[[], Awaitable[None]]) -> None:
        try:
            await fn()
        except Exception as exc:
            failure.append(exc)
        tg.cancel_scope.cancel()

    async with anyio.create_task_group() as tg:
        tg.start_soon(guard, busy.watch)
        tg.start_soon(guard, body)
    if failure:
        raise failure[0]
