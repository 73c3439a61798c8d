"""The event loop the runtime's processes run on: uvloop where it is installed.

Every stage's blocking call runs in a worker thread and comes back to the loop as a cross-thread
wake-up (`agent.workers`); a control step takes about a dozen of them. Measured on this project's
2-core machine, one wake-up cost the loop's thread about 60-100 us of CPU with asyncio's own loop
(epoll, its self-pipe, a context switch) and about a third of that with uvloop, which keeps
asyncio's API on libuv. The runtime's code is the same on both (the loops are anyio tasks; the
worker pool's fast path needs only asyncio's loop API); the choice is `runtime.event_loop`.

Code that embeds the runtime in its own loop keeps that loop: only the CLI's commands, the
benchmarks and the evaluation start one here. (A service under uvicorn gets uvloop from uvicorn.)
"""

from __future__ import annotations

import importlib.util
from collections.abc import Awaitable, Callable
from typing import Literal, TypeVar

import anyio

T = TypeVar("T")

EventLoop = Literal["uvloop", "asyncio"]


def uses_uvloop(choice: EventLoop) -> bool:
    """Whether `choice` runs on uvloop here: asked for, and installed (not on Windows)."""
    return choice == "uvloop" and importlib.util.find_spec("uvloop") is not None


def run_loop(main: Callable[[], Awaitable[T]], choice: EventLoop = "uvloop") -> T:
    """`anyio.run(main)` on the chosen event loop (see the module docstring)."""
    return anyio.run(main, backend="asyncio", backend_options={"use_uvloop": uses_uvloop(choice)})
