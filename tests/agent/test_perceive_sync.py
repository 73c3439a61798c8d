"""The perceive loop forms each set from frames of one moment (real channels and anyio loop).

The pipeline is a recorder of the frames it was given: the loop's pairing is what is tested,
not a model.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from functools import partial

import anyio
import numpy as np

from agent.channels import Latest
from agent.loops.perceive import perceive_loop
from agent.messages import PerceptMsg
from agent.workers import Workers
from drivers.base import Frame
from models.perception import Percept


def frame(view: str, seq: int, t: float) -> Frame:
    return Frame(camera=view, rgb=np.zeros((4, 4, 3), np.uint8), t_capture=t, seq=seq)


def percept(t: float = 0.0) -> Percept:
    return Percept(
        boxes={}, masks={}, images={}, t_capture=t, redetections=0, lost={}, timings_ms={}
    )


class Recorder:
    """Stands in for the perception pipeline: keeps the capture times of each set it got."""

    def __init__(self) -> None:
        self.sets: list[dict[str, float]] = []

    def step(self, frames: dict[str, Frame]) -> Percept:
        self.sets.append({view: f.t_capture for view, f in frames.items()})
        return percept()


def perceiving(
    frames: dict[str, Latest[Frame]],
    recorder: Recorder,
    percepts: Latest[PerceptMsg],
    sync_s: float = 0.05,
) -> Callable[[], Awaitable[None]]:
    """The perceive loop over `frames` with `recorder` as its pipeline, ready to start."""
    return partial(
        perceive_loop,
        frames,
        recorder,  # type: ignore[arg-type]
        percepts,
        workers=Workers("test"),
        frame_timeout=5.0,
        stage_timeout=5.0,
        first=percept(),
        on_regained=lambda *_: None,
        view_sync_s=sync_s,
    )


async def run_one_set(later_side: float | None, sync_s: float = 0.05) -> dict[str, float]:
    """Publish side@0.9 and front@1.0, then (after 20 ms) side@1.0 if `later_side` is set;
    returns the set the pipeline got."""
    front, side = Latest[Frame]("frames/front"), Latest[Frame]("frames/side")
    percepts = Latest[PerceptMsg]("percepts")
    recorder = Recorder()
    side.publish(frame("side", 1, 0.9))
    async with anyio.create_task_group() as tg:
        tg.start_soon(perceiving({"front": front, "side": side}, recorder, percepts, sync_s))
        await anyio.sleep(0.01)
        front.publish(frame("front", 1, 1.0))
        if later_side is not None:
            await anyio.sleep(0.02)
            side.publish(frame("side", 2, later_side))
        with anyio.fail_after(2.0):
            await percepts.reader().next()
        tg.cancel_scope.cancel()
    return recorder.sets[0]


def test_the_other_view_of_the_same_moment_is_awaited() -> None:
    """side's newest frame is 100 ms older than front's: its frame of front's moment, 20 ms
    later, is the one in the set."""
    assert anyio.run(run_one_set, 1.0) == {"front": 1.0, "side": 1.0}


def test_a_view_that_sends_nothing_newer_is_used_as_it_is_after_the_sync_wait() -> None:
    started = time.monotonic()
    assert anyio.run(run_one_set, None) == {"front": 1.0, "side": 0.9}
    assert time.monotonic() - started >= 0.05  # it waited view_sync_s for a newer side frame


def test_views_close_enough_are_not_waited_for() -> None:
    """With a sync window wider than the views' 100 ms spread, the set is formed at once."""
    assert anyio.run(run_one_set, 1.0, 0.2) == {"front": 1.0, "side": 0.9}


def test_a_percept_is_started_only_once_the_last_one_was_taken() -> None:
    """on_demand: frames keep coming, but while nobody takes the percept no new one is computed;
    once the act loop's reader takes it, the next percept runs on the newest frame."""

    async def go() -> list[dict[str, float]]:
        front = Latest[Frame]("frames/front")
        percepts = Latest[PerceptMsg]("percepts")
        recorder = Recorder()
        async with anyio.create_task_group() as tg:
            tg.start_soon(perceiving({"front": front}, recorder, percepts))
            for i in range(1, 4):  # three frames, nobody takes the first percept
                front.publish(frame("front", i, float(i)))
                await anyio.sleep(0.05)
            assert len(recorder.sets) == 1
            act = percepts.reader()
            await act.next(timeout=1.0)
            with anyio.fail_after(2.0):
                await act.next()
            tg.cancel_scope.cancel()
        return recorder.sets

    assert anyio.run(go) == [{"front": 1.0}, {"front": 3.0}]
