"""The events of one execution on their way to its consumer (`Runtime.execute`'s caller).

A bounded queue that the episode's loops put into without ever waiting: a consumer this slow
loses events (counted in the outcome), it never stalls the arm. anyio's memory object stream did
this job until 2026-12-03; per event it took a checkpoint (one more pass of the event loop) and,
whenever the consumer waited, an anyio `Event`: about a tenth of the runtime's own CPU a control
step in `bench loop`. Every event is put by a task on the same event loop, so a deque and the
channels' `Signal` (agent.channels) are enough.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Generic, TypeVar

from agent.channels import Signal

T = TypeVar("T")


class EventQueue(Generic[T]):
    """Put from the loop's tasks (`put`, never waits), read with `async for`; `close` ends it.

    Call every method from the event loop's thread.
    """

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"size must be >= 1, got {size}")
        self.size = size
        self._items: deque[T] = deque()
        self._ready = Signal()
        self._closed = False

    def put(self, item: T) -> bool:
        """Queue `item`; False (nothing queued) when the queue is full or closed."""
        if self._closed or len(self._items) >= self.size:
            return False
        self._items.append(item)
        self._ready.fire()
        return True

    def close(self) -> None:
        """No more items: the reader gets those queued, then its loop ends."""
        self._closed = True
        self._ready.fire()

    def __aiter__(self) -> EventQueue[T]:
        return self

    async def __anext__(self) -> T:
        while not self._items:
            if self._closed:
                raise StopAsyncIteration
            await self._ready.wait(math.inf)
        return self._items.popleft()
