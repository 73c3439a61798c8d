"""The perceive loop forms each set from frames of one moment (real channels, anyio loop and a
real perception pipeline: ground-truth detector and segmenter, OpenCV KCF tracking, on synthetic
views). Which frames formed a set is read from the percept the loop published: its capture time
is the set's oldest view's, and `skew` the spread between the views."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from functools import partial

import anyio

from agent.channels import ThreadFed
from agent.loops.perceive import perceive_loop
from agent.messages import PerceptMsg
from agent.workers import Workers
from drivers.base import Frame
from models.detection import GroundTruthDetector
from models.perception import PerceptionPipeline
from models.segmentation import GroundTruthSegmenter
from models.tracking import OpenCVTrackerFactory
from models.types import Skill, TaskSpec
from tests.synthetic import SyntheticObject, render_scene, textured_background

TASK = TaskSpec("put the apple in the bowl", Skill.PLACE_INSIDE, pick="apple", place="bowl")
BACKGROUND = textured_background(96, 96, 1)


def frame(view: str, t: float) -> Frame:
    """A synthetic view of the apple and the bowl, taken at `t`."""
    objects = [
        SyntheticObject("bowl", (50, 50, 85, 80), (40, 70, 210)),
        SyntheticObject("apple", (10, 15, 35, 40), (210, 40, 30), shape="ellipse"),
    ]
    return render_scene(  # type: ignore[return-value]  # a FrameLike, as the pipeline reads it
        objects, size=(96, 96), background=BACKGROUND, t_capture=t, camera=view
    )


def perceiving(
    frames: dict[str, ThreadFed[Frame]], percepts: ThreadFed[PerceptMsg], sync_s: float = 0.05
) -> Callable[[], Awaitable[None]]:
    """The perceive loop over `frames`, its pipeline started on views taken at 0.0."""
    pipeline = PerceptionPipeline(
        GroundTruthDetector(),
        OpenCVTrackerFactory("kcf"),
        GroundTruthSegmenter(),
        redetect_in_background=False,
    )
    first = pipeline.start(TASK, {view: frame(view, 0.0) for view in frames})
    return partial(
        perceive_loop,
        frames,
        pipeline,
        percepts,
        workers=Workers("test"),
        frame_timeout=5.0,
        stage_timeout=5.0,
        first=first,
        on_regained=lambda *_: None,
        view_sync_s=sync_s,
    )


def capture_and_skew(msg: PerceptMsg) -> tuple[float, float]:
    return msg.t_capture, round(msg.stage_ms["skew"], 3)


async def run_one_set(later_side: float | None, sync_s: float = 0.05) -> tuple[float, float]:
    """Publish side@0.9 and front@1.0, then (after 20 ms) side@1.0 if `later_side` is set;
    returns the first percept's capture time and skew (ms)."""
    front, side = ThreadFed[Frame]("frames/front"), ThreadFed[Frame]("frames/side")
    percepts = ThreadFed[PerceptMsg]("percepts")
    side.publish(frame("side", 0.9))
    async with anyio.create_task_group() as tg:
        tg.start_soon(perceiving({"front": front, "side": side}, percepts, sync_s))
        await anyio.sleep(0.01)
        front.publish(frame("front", 1.0))
        if later_side is not None:
            await anyio.sleep(0.02)
            side.publish(frame("side", later_side))
        with anyio.fail_after(2.0):
            msg = await percepts.reader().next()
        tg.cancel_scope.cancel()
    return capture_and_skew(msg)


def test_the_other_view_of_the_same_moment_is_awaited() -> None:
    """side's newest frame is 100 ms older than front's: its frame of front's moment, 20 ms
    later, is the one in the set."""
    assert anyio.run(run_one_set, 1.0) == (1.0, 0.0)


def test_a_view_that_sends_nothing_newer_is_used_as_it_is_after_the_sync_wait() -> None:
    started = time.monotonic()
    assert anyio.run(run_one_set, None) == (0.9, 100.0)
    assert time.monotonic() - started >= 0.05  # it waited view_sync_s for a newer side frame


def test_views_close_enough_are_not_waited_for() -> None:
    """With a sync window wider than the views' 100 ms spread, the set is formed at once."""
    assert anyio.run(run_one_set, 1.0, 0.2) == (0.9, 100.0)


def test_a_percept_is_started_only_once_the_last_one_was_taken() -> None:
    """on_demand: frames keep coming, but while nobody takes the percept no new one is computed;
    once a reader takes it (the policy's thread in the runtime; a loop reader here), the next
    percept runs on the newest frame."""

    async def go() -> list[float]:
        front = ThreadFed[Frame]("frames/front")
        percepts = ThreadFed[PerceptMsg]("percepts")
        async with anyio.create_task_group() as tg:
            tg.start_soon(perceiving({"front": front}, percepts))
            for t in (1.0, 2.0, 3.0):  # three frames, nobody takes the first percept
                front.publish(frame("front", t))
                await anyio.sleep(0.05)
            assert percepts.published == 1
            act = percepts.reader()
            taken = [(await act.next(timeout=1.0)).t_capture]
            with anyio.fail_after(2.0):
                taken.append((await act.next()).t_capture)
            tg.cancel_scope.cancel()
        return taken

    assert anyio.run(go) == [1.0, 3.0]
