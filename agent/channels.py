"""Latest-wins channels: the only way the runtime's loops talk to each other about sensor data.

anyio's memory object streams give backpressure (a fast writer waits for a slow reader), which is
wrong for sensor data: a controller wants the newest frame, never a queue of old ones. `Latest` is a
single versioned slot: `publish` overwrites and never blocks, `LatestReader.next` waits for a
version newer than the one that reader saw last, so no value is delivered twice to one reader and a
slow reader always gets the newest value. Values overwritten before any reader took them are counted
in `dropped`, which the run summary reports per channel.

All methods must be called from the event loop's thread (loops publish after their worker-thread
call returns), except on `ThreadFed`, a channel shared under a lock: a producer thread (a
camera's reader) feeds it without waking the loop for each value, and a consumer thread (the
perception thread) takes from it, blocking if it must.

On asyncio a wait is one bare future and, with a deadline, one timer: anyio's `Event` and
`fail_after` cost the loop's thread several times more per wait, and the runtime's loops wait on
these channels a few times every control step (its own overhead, `bench loop`). Other anyio
backends (trio) wait on an anyio `Event`.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

import anyio
import sniffio

T = TypeVar("T")


class ChannelClosed(Exception):
    """The channel was closed; `reason` says why (e.g. the camera that fed it failed)."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"channel {name!r} closed: {reason}")
        self.name = name
        self.reason = reason


class Latest(Generic[T]):
    """A single-slot, versioned, awaitable value with a drop counter."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._value: T | None = None
        self._version = 0
        self._taken = 0  # newest version handed to any reader
        self._changed = Signal()  # a new value or the close
        self._took = Signal()  # a reader took a value (`wait_taken`)
        self._closed_reason: str | None = None
        self.dropped = 0
        self.published = 0

    @property
    def version(self) -> int:
        return self._version

    @property
    def closed(self) -> bool:
        return self._closed_reason is not None

    @property
    def closed_reason(self) -> str | None:
        """Why the channel was closed (e.g. the camera that fed it gave up), or None while open."""
        return self._closed_reason

    def publish(self, value: T) -> int:
        """Overwrite the slot and wake waiters; never blocks. Returns the new version."""
        version = self._store(value)
        self._changed.fire()
        return version

    def _store(self, value: T) -> int:
        """Overwrite the slot, counting a value nobody took as dropped; wakes nobody."""
        self.raise_if_closed()
        if self._version > self._taken:
            self.dropped += 1
        self._value = value
        self._version += 1
        self.published += 1
        return self._version

    def peek(self) -> tuple[int, T] | None:
        """The current (version, value) without waiting, or None before the first publish.

        Peeking does not count as taking: use it for side data such as the newest robot state.
        """
        if self._version == 0:
            return None
        return self._version, self._value  # type: ignore[return-value]

    def take_newer(self, after: int, *, take: bool = True) -> tuple[int, T] | None:
        """(version, value) if a version newer than `after` exists, marked taken; no wait.

        `take=False` only looks (a watcher): the value still counts as dropped if no reader
        takes it, so an observer never hides what a loop missed.
        """
        if self._version <= after:
            return None
        if take and self._taken < self._version:
            self._taken = self._version
            self._took.fire()
        return self._version, self._value  # type: ignore[return-value]

    def raise_if_closed(self) -> None:
        """Raise ChannelClosed (with the closer's reason) if the channel was closed."""
        if self._closed_reason is not None:
            raise ChannelClosed(self.name, self._closed_reason)

    def close(self, reason: str = "closed") -> None:
        """Close the channel and wake every waiter; later reads raise ChannelClosed."""
        if self._closed_reason is None:
            self._closed_reason = reason
            self._changed.fire()
            self._took.fire()  # a producer waiting for demand hears of it too

    def reader(self) -> LatestReader[T]:
        return LatestReader(self)

    def watcher(self) -> LatestReader[T]:
        """A reader that does not take: it sees each new value but leaves the drop count alone."""
        return LatestReader(self, take=False)

    async def wait_newer(
        self, after: int, timeout: float = math.inf, *, take: bool = True
    ) -> tuple[int, T]:
        """Wait up to `timeout` s for a version newer than `after`; TimeoutError when none came.

        A value published before the close is still delivered; after that, ChannelClosed.
        """
        taken = self.take_newer(after, take=take)
        if taken is not None:  # already there: no deadline to set up (the common case)
            return taken
        deadline = time.monotonic() + timeout
        while True:
            self.raise_if_closed()
            if self._arm(after) and not await self._changed.wait(deadline - time.monotonic()):
                # named, so that the fault it becomes says what was missing
                raise TimeoutError(f"nothing new on {self.name} within {timeout:g} s")
            taken = self.take_newer(after, take=take)
            if taken is not None:
                return taken

    def _arm(self, after: int) -> bool:
        """Called just before a reader that saw `after` waits: False when a newer value arrived
        meanwhile (a thread's feed, `ThreadFed`), so the reader takes it instead of waiting."""
        return True

    async def wait_taken(self, version: int, timeout: float) -> bool:
        """Wait up to `timeout` s until a reader took `version` (or a newer one): demand, for a
        producer whose work is wasted when nobody takes it. False on timeout; ChannelClosed."""
        deadline = time.monotonic() + timeout
        while self._taken < version:
            self.raise_if_closed()
            if not await self._took.wait(deadline - time.monotonic()):
                return False
        return True


class Signal:
    """Wakes every task waiting for it; the channel's wait primitive (see the module docstring).

    `wait(timeout)` is True when `fire()` came first, False when the timeout did.
    """

    __slots__ = ("_event", "_futures")

    def __init__(self) -> None:
        self._futures: list[asyncio.Future[bool]] = []
        self._event: anyio.Event | None = None  # other backends; made only while one waits

    def fire(self) -> None:
        futures, self._futures = self._futures, []
        for future in futures:
            if not future.done():
                future.set_result(True)
        if self._event is not None:
            self._event.set()
            self._event = None

    async def wait(self, timeout: float) -> bool:
        if timeout <= 0:
            return False
        if sniffio.current_async_library() != "asyncio":
            if self._event is None:
                self._event = anyio.Event()
            event = self._event
            with anyio.move_on_after(timeout):
                await event.wait()
                return True
            return False
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()
        self._futures.append(future)
        timer = loop.call_later(timeout, _time_up, future) if timeout < math.inf else None
        try:
            return await future
        finally:
            if timer is not None:
                timer.cancel()
            if future in self._futures:  # timed out or cancelled: `fire` did not take it
                self._futures.remove(future)


def _time_up(future: asyncio.Future[bool]) -> None:
    if not future.done():
        future.set_result(False)


class LatestReader(Generic[T]):
    """One consumer's view of a `Latest`: remembers the last version it received."""

    def __init__(self, channel: Latest[T], *, take: bool = True) -> None:
        self.channel = channel
        self.seen = 0
        self.take = take

    async def next(self, timeout: float = math.inf) -> T:
        """The newest value this reader has not seen yet, waiting up to `timeout` seconds."""
        version, value = await self.channel.wait_newer(self.seen, timeout, take=self.take)
        self.seen = version
        return value

    def poll(self) -> T | None:
        """The newest unseen value if there is one, else None; never waits."""
        taken = self.channel.take_newer(self.seen, take=self.take)
        if taken is None:
            return None
        self.seen = taken[0]
        return taken[1]


class ThreadFed(Latest[T]):
    """A `Latest` that threads feed and threads may read, waking the event loop only while a
    reader on it waits.

    A camera's reader thread delivers every frame of every view. Handing each one to the loop was
    one cross-thread wake-up (`call_soon_threadsafe`) per frame: two a control step with two
    cameras, each a context switch and a cold cache for the loop's thread on a busy 2-core
    machine (`bench loop`'s runtime overhead). Here the slot itself is shared under a lock:
    `feed` (any thread) overwrites it, the loop's readers look at it directly, and a thread can
    block on it (`wait_newer_blocking`: the perception thread, agent.loops.perceive, so that frames
    reach perception without passing through the loop at all). Only a loop reader about to wait
    arms the slot (`_arm`, under the same lock, so a value cannot slip in between its last look
    and its wait); the next feed then wakes the loop once.

    Versions count feeds; a value overwritten before anyone (a loop reader or a thread) took it
    counts as dropped. A producer thread that waits for demand blocks in `wait_taken_blocking`
    (the perception thread, until the policy's thread took its last percept); the loop's
    `wait_taken` is not offered.
    """

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._cond = threading.Condition(threading.Lock())
        self._armed = False
        self._to_loop: Callable[[Callable[[], None]], object] | None = None

    def attach(self, to_loop: Callable[[Callable[[], None]], object]) -> None:
        """How `feed` runs a callback on the loop's thread (e.g. `call_soon_threadsafe`); the
        loop whose tasks read this channel attaches it before the producer starts."""
        self._to_loop = to_loop

    def feed(self, value: T) -> int:
        """From any thread: make `value` the newest; wakes the loop only when a loop reader
        waits. Returns the new version (once closed, ChannelClosed)."""
        with self._cond:
            version = self._store(value)
            self._cond.notify_all()
            wake, self._armed = self._armed, False
        if wake and self._to_loop is not None:
            self._to_loop(self._changed.fire)
        return version

    def publish(self, value: T) -> int:
        """On the loop, as `feed` (the loop's waiters are woken at once)."""
        version = self.feed(value)
        self._changed.fire()
        return version

    def peek(self) -> tuple[int, T] | None:
        with self._cond:
            return super().peek()

    def take_newer(self, after: int, *, take: bool = True) -> tuple[int, T] | None:
        """As `Latest.take_newer`, from the loop or any thread."""
        with self._cond:
            return self._take(after, take)

    def _take(self, after: int, take: bool) -> tuple[int, T] | None:
        """`take_newer` with the lock held; a new take wakes a producer thread waiting for
        demand (`wait_taken_blocking`)."""
        if self._version <= after:
            return None
        if take and self._taken < self._version:
            self._taken = self._version
            self._cond.notify_all()
        return self._version, self._value  # type: ignore[return-value]

    def wait_taken_blocking(
        self, version: int, timeout: float, stop: threading.Event | None = None
    ) -> bool:
        """From a producer thread: block up to `timeout` s until a reader took `version` (or a
        newer one). False on timeout; ChannelClosed once closed; `Cancelled` once `stop` is
        set (whoever sets it calls `wake_threads` after)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._taken < version:
                self.raise_if_closed()
                if stop is not None and stop.is_set():
                    raise Cancelled(f"stopped waiting for a reader of {self.name}")
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def wait_newer_blocking(
        self, after: int, timeout: float, stop: threading.Event | None = None
    ) -> tuple[int, T]:
        """From a thread (never the loop): block up to `timeout` s for a version newer than
        `after` and take it. TimeoutError when none came, ChannelClosed once closed, and
        `Cancelled` once `stop` is set (whoever sets it calls `wake_threads` after)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                taken = self._take(after, True)
                if taken is not None:
                    return taken
                self.raise_if_closed()
                if stop is not None and stop.is_set():
                    raise Cancelled(f"stopped waiting for {self.name}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"nothing new on {self.name} within {timeout:g} s")
                self._cond.wait(left)

    def wake_threads(self) -> None:
        """Wake the threads blocked in `wait_newer_blocking`, to look at their `stop` events."""
        with self._cond:
            self._cond.notify_all()

    def close(self, reason: str = "closed") -> None:
        with self._cond:
            first = self._closed_reason is None
            if first:
                self._closed_reason = reason
            self._cond.notify_all()
        if first:
            self._changed.fire()

    async def wait_taken(self, version: int, timeout: float) -> bool:
        raise NotImplementedError("a thread-fed channel's producer waits on its thread")

    def _arm(self, after: int) -> bool:
        with self._cond:
            if self._version > after or self._closed_reason is not None:
                return False  # something is there (or the close): look again
            self._armed = True
            return True


class Cancelled(Exception):
    """A blocking wait was stopped (`ThreadFed.wait_newer_blocking`'s `stop` was set)."""
