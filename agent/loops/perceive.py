"""perceive: newest frames of every view -> detect once / track / segment -> latest percept."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import anyio

from agent.channels import Latest
from agent.messages import PerceptMsg, frameset
from agent.workers import run_blocking
from drivers.base import Frame
from models.perception import Percept, PerceptionPipeline


async def perceive_loop(
    frames: Mapping[str, Latest[Frame]],
    pipeline: PerceptionPipeline,
    out: Latest[PerceptMsg],
    *,
    limiter: anyio.CapacityLimiter,
    frame_timeout: float,
    stage_timeout: float,
    on_redetect: Callable[[Percept], None],
) -> None:
    """Run the pipeline on each new frame of the first view, paired with the others' newest.

    Pacing on the first view keeps one percept per camera period; if perception is slower than
    the camera, the slot simply holds the newest frame and older ones are counted as dropped.
    """
    views = list(frames)
    primary = frames[views[0]].reader()
    redetections = 0
    while True:
        first = await primary.next(timeout=frame_timeout)
        current = {views[0]: first}
        for view in views[1:]:
            newest = frames[view].peek()
            if newest is None:
                newest = (0, await frames[view].reader().next(timeout=frame_timeout))
            current[view] = newest[1]
        fs = frameset(current)
        t0 = anyio.current_time()
        percept = await run_blocking(
            pipeline.step, fs.frames, limiter=limiter, timeout=stage_timeout, what="perception"
        )
        t_done = anyio.current_time()
        if percept.redetections > redetections:
            redetections = percept.redetections
            on_redetect(percept)
        out.publish(
            PerceptMsg(
                percept=percept,
                t_capture=fs.t_capture,
                t_done=t_done,
                perceive_ms=(t_done - t0) * 1e3,
                stage_ms={**percept.timings_ms, "skew": fs.skew_ms},
            )
        )
