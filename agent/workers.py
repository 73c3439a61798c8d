"""Blocking calls (vendor SDKs, model inference) run in worker threads, never on the event loop."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TypeVar

import anyio

T = TypeVar("T")


class StageTimeout(TimeoutError):
    """A blocking call missed its deadline; the message names the stage."""


async def run_blocking(
    fn: Callable[..., T],
    *args: object,
    limiter: anyio.CapacityLimiter,
    timeout: float,
    what: str,
) -> T:
    """Run `fn(*args)` in a worker thread under `limiter`, giving up after `timeout` seconds.

    On timeout or cancellation the thread is abandoned (it finishes in the background and its
    result is dropped): a hung model must not hang the runtime.
    """
    try:
        with anyio.fail_after(timeout):
            return await anyio.to_thread.run_sync(
                partial(fn, *args), limiter=limiter, abandon_on_cancel=True
            )
    except TimeoutError:
        raise StageTimeout(f"{what} did not finish within {timeout:g} s") from None
