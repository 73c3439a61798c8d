"""perceive: newest frames of every view -> detect once / track / segment -> latest percept."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping

from agent.channels import Latest
from agent.loops.target import TargetWatch
from agent.messages import PerceptMsg
from agent.workers import Workers
from drivers.base import Frame
from drivers.cameras.pairing import frameset
from models.perception import Percept, PerceptionPipeline


async def perceive_loop(
    frames: Mapping[str, Latest[Frame]],
    pipeline: PerceptionPipeline,
    out: Latest[PerceptMsg],
    *,
    workers: Workers,
    frame_timeout: float,
    stage_timeout: float,
    first: Percept,
    on_regained: Callable[[Percept, list[tuple[str, str]]], None],
    watch: TargetWatch | None = None,
    view_sync_s: float = 0.05,
    on_demand: bool = True,
) -> None:
    """Run the pipeline on each new frame of the first view, paired with the others' newest.

    Pacing on the first view keeps one percept per camera period; if perception is slower than
    the camera, the slot simply holds the newest frame and older ones are counted as dropped.
    `on_regained` hears of each (view, role) whose lost track a re-detection found again;
    `watch` sees every percept (which targets no view shows: the hold and the "target lost").
    When another view's newest frame was taken more than `view_sync_s` before the first view's,
    its frame of that moment is on the way (synchronised cameras, or free-running ones whose
    next frame is closer): it is awaited for up to `view_sync_s`, then the older one is used.
    `on_demand`: a new percept is started only once the act loop took the last one (waiting up
    to `stage_timeout`), on the newest frames then. When the policy is slower than perception,
    percepts nobody takes would take the CPU the policy needs on a machine the stages share
    (measured in `bench loop --heavy`: perception ran 1.6 times per step, and the policy's calls
    took twice their CPU time in wall time).
    """
    views = list(frames)
    primary = frames[views[0]].reader()
    others = {view: frames[view].reader() for view in views[1:]}
    held: dict[str, Frame] = {}  # the newest frame each other view delivered so far
    previous = first
    redetections = first.redetections
    published = 0
    while True:
        if on_demand and published:
            await out.wait_taken(published, timeout=stage_timeout)
        newest = await primary.next(timeout=frame_timeout)
        current = {views[0]: newest}
        for view, reader in others.items():
            frames[view].raise_if_closed()  # a dead secondary camera is a fault, not a stale view
            fresh = reader.poll()
            if fresh is None and view not in held:
                fresh = await reader.next(timeout=frame_timeout)
            if fresh is not None:
                held[view] = fresh
            if newest.t_capture - held[view].t_capture > view_sync_s:
                with contextlib.suppress(TimeoutError):
                    held[view] = await reader.next(timeout=view_sync_s)
            current[view] = held[view]  # its age counts in t_capture, so staleness is caught
        fs = frameset(current)
        t0 = time.monotonic()
        percept = await workers.run(
            pipeline.step, fs.frames, timeout=stage_timeout, what="perception"
        )
        t_done = time.monotonic()
        if percept.redetections > redetections:
            redetections = percept.redetections
            regained = [
                (view, role)
                for view, lost in previous.lost.items()
                for role, count in lost.items()
                if count > 0 and percept.lost.get(view, {}).get(role) == 0
            ]
            if regained:
                on_regained(percept, regained)
        previous = percept
        if watch is not None:
            watch.see(percept, t_done)
        published = out.publish(
            PerceptMsg(
                percept=percept,
                t_capture=fs.t_capture,
                t_done=t_done,
                perceive_ms=(t_done - t0) * 1e3,
                stage_ms={**percept.timings_ms, "skew": fs.skew_ms},
            )
        )
