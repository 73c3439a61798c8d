"""Workers: blocking calls on a fixed set of threads, with deadlines and abandonment (real
threads on a real asyncio loop, and anyio's own path on trio)."""

from __future__ import annotations

import math
import threading
import time

import anyio
import pytest

from agent.event_loop import EventLoop, run_loop, uses_uvloop
from agent.workers import Busy, StageTimeout, Workers, watched


def pool_threads(name: str) -> int:
    return sum(t.name == f"{name}-worker" and t.is_alive() for t in threading.enumerate())


def test_results_and_errors_come_back_from_the_worker_thread() -> None:
    workers = Workers("ok", 2)

    async def go() -> None:
        assert await workers.run(lambda a, b: a + b, 2, 3, timeout=5, what="sum") == 5
        names = await workers.run(lambda: threading.current_thread().name, timeout=5, what="n")
        assert names == "ok-worker"
        with pytest.raises(ValueError, match="bad input"):
            await workers.run(lambda: int("bad input"), timeout=5, what="parse")

    anyio.run(go)
    workers.close()


def test_a_hung_call_times_out_and_a_fresh_thread_takes_its_place() -> None:
    """The robot's single thread hangs in a call: the caller gets StageTimeout naming the call,
    and the next call (the safe stop, in the runtime) runs at once on a replacement thread."""
    release = threading.Event()
    workers = Workers("hung", 1)

    async def go() -> float:
        with pytest.raises(StageTimeout, match=r"robot move did not finish within 0\.1 s"):
            await workers.run(release.wait, 10, timeout=0.1, what="robot move")
        started = time.monotonic()
        assert await workers.run(lambda: "stopped", timeout=5, what="stop") == "stopped"
        return time.monotonic() - started

    assert anyio.run(go) < 1.0
    assert pool_threads("hung") == 2  # the stuck one and its replacement
    release.set()  # the abandoned call ends; its thread leaves the pool
    deadline = time.monotonic() + 5
    while pool_threads("hung") > 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert pool_threads("hung") == 1
    workers.close()
    while pool_threads("hung") and time.monotonic() < deadline:
        time.sleep(0.01)
    assert pool_threads("hung") == 0


def test_a_cancelled_caller_abandons_its_call() -> None:
    release = threading.Event()
    workers = Workers("cancel", 1)

    async def go() -> None:
        with anyio.move_on_after(0.1):
            await workers.run(release.wait, 10, timeout=30, what="model")
        assert await workers.run(lambda: 1, timeout=5, what="next") == 1

    anyio.run(go)
    release.set()
    workers.close()


def test_other_anyio_backends_take_anyios_thread_path() -> None:
    pytest.importorskip("trio")
    workers = Workers("trio", 1)

    async def go() -> None:
        assert await workers.run(lambda: 7, timeout=5, what="x") == 7
        with pytest.raises(StageTimeout, match="slow did not finish"):
            await workers.run(time.sleep, 1.0, timeout=0.05, what="slow")

    anyio.run(go, backend="trio")


def test_no_threads_is_refused() -> None:
    with pytest.raises(ValueError, match="threads must be >= 1"):
        Workers("none", 0)


@pytest.mark.parametrize("choice", ["uvloop", "asyncio"])
def test_the_event_loops_the_cli_starts_run_the_workers(choice: EventLoop) -> None:
    """`runtime.event_loop`: `run_loop` starts the chosen loop (uvloop is a dependency on Linux),
    and the worker pool's fast path returns results, errors and deadlines on it."""
    import asyncio

    workers = Workers(f"loop-{choice}", 1)
    release = threading.Event()

    async def go() -> str:
        assert await workers.run(lambda a, b: a * b, 6, 7, timeout=5, what="product") == 42
        with pytest.raises(ValueError, match="bad input"):
            await workers.run(lambda: int("bad input"), timeout=5, what="parse")
        with pytest.raises(StageTimeout, match=r"robot move did not finish within 0\.1 s"):
            await workers.run(release.wait, 10, timeout=0.1, what="robot move")
        return type(asyncio.get_running_loop()).__module__

    try:
        module = run_loop(go, choice)
    finally:
        release.set()
        workers.close()
    assert uses_uvloop(choice) == (choice == "uvloop")
    assert module.startswith("uvloop") == (choice == "uvloop"), module


def test_work_inside_a_long_call_is_watched_and_errors_leave_as_they_are() -> None:
    """`Busy` + `watched` (the perception and policy threads' deadlines): a unit of work that
    hangs inside a call that runs for the episode is a StageTimeout naming it within
    `deadline_s`; work that finishes in time is left alone; an error of the call itself leaves
    as it is, not wrapped in an ExceptionGroup."""
    release = threading.Event()
    workers = Workers("watched", 1)

    def loop(busy: Busy, hang_on: int) -> None:
        for i in range(10):
            with busy:
                if i == hang_on:
                    release.wait(10)
                time.sleep(0.01)
        raise ValueError("the loop's own error")

    async def go(hang_on: int) -> float:
        busy = Busy("perception", 0.2)
        started = time.monotonic()

        async def body() -> None:
            await workers.run(loop, busy, hang_on, timeout=math.inf, what="perception")

        with pytest.raises((StageTimeout, ValueError)) as caught:
            await watched(body, busy)
        if hang_on < 10:
            assert isinstance(caught.value, StageTimeout)
            assert str(caught.value) == "perception did not finish within 0.2 s"
        else:
            assert str(caught.value) == "the loop's own error"
        return time.monotonic() - started

    assert anyio.run(go, 3) < 0.03 + Busy("perception", 0.2).deadline_s + 0.5
    anyio.run(go, 10)  # nothing hangs: the loop's error comes back
    release.set()
    workers.close()
