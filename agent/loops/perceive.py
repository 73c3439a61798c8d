"""perceive: newest frames of every view -> detect once / track / segment -> latest percept.

The frames do not pass through the event loop: the perception thread (a `Workers` pool of its
own) takes them from the cameras' `ThreadFed` slots, forms the set and runs the pipeline in one
call, so a percept costs the loop one wake-up, its result. Until 2026-12-03 the loop woke for
each camera frame (about 1.5 a control step: the first view's, and the other's when a set waited
for it) and then handed the set to a model thread: measured in `bench loop`, two of the loop's
six wake-ups a step.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Mapping

from agent.channels import Latest, ThreadFed
from agent.loops.target import TargetWatch
from agent.messages import PerceptMsg
from agent.workers import Workers
from drivers.base import Frame
from drivers.cameras.pairing import FrameSet, frameset
from models.perception import Percept, PerceptionPipeline


class FrameSets:
    """Forms each set perception runs on, on the perception thread (blocking waits).

    The first view paces: each set is its next frame, paired with every other view's newest.
    When another view's newest frame was taken more than `view_sync_s` before the first view's,
    its frame of that moment is on the way (synchronised cameras, or free-running ones whose
    next frame is closer): it is awaited for up to `view_sync_s`, then the older one is used.
    `stop()` ends a wait at once (the episode is over).
    """

    def __init__(
        self,
        frames: Mapping[str, ThreadFed[Frame]],
        *,
        frame_timeout: float,
        view_sync_s: float,
    ) -> None:
        self.frames = frames
        self.views = list(frames)
        self.frame_timeout = frame_timeout
        self.view_sync_s = view_sync_s
        self._stopped = threading.Event()
        self.readers = {view: channel.reader() for view, channel in frames.items()}
        self.held: dict[str, Frame] = {}  # the newest frame each other view delivered so far

    def _wait(self, view: str, timeout: float) -> Frame:
        reader = self.readers[view]
        waited = self.frames[view].wait_newer_blocking(reader.seen, timeout, self._stopped)
        reader.seen, frame = waited
        return frame

    def stop(self) -> None:
        """From any thread: a wait in progress (and any later one) ends with `Cancelled`."""
        self._stopped.set()
        for channel in self.frames.values():
            channel.wake_threads()

    def next_set(self) -> FrameSet:
        first = self.views[0]
        newest = self._wait(first, self.frame_timeout)
        current = {first: newest}
        for view in self.views[1:]:
            self.frames[view].raise_if_closed()  # a dead secondary camera is a fault, not stale
            fresh = self.readers[view].poll()  # ThreadFed's reads are thread-safe
            if fresh is None and view not in self.held:
                fresh = self._wait(view, self.frame_timeout)
            if fresh is not None:
                self.held[view] = fresh
            if newest.t_capture - self.held[view].t_capture > self.view_sync_s:
                with contextlib.suppress(TimeoutError):
                    self.held[view] = self._wait(view, self.view_sync_s)
            current[view] = self.held[view]  # its age counts in t_capture: staleness is caught
        return frameset(current)


def _perceive_next(
    sets: FrameSets, pipeline: PerceptionPipeline
) -> tuple[FrameSet, Percept, float, float]:
    """On the perception thread: the next set, and the pipeline's percept of it (timed)."""
    fs = sets.next_set()
    t0 = time.monotonic()
    percept = pipeline.step(fs.frames)
    return fs, percept, t0, time.monotonic()


def perception_deadline_s(frame_timeout: float, view_sync_s: float, stage_timeout: float) -> float:
    """The deadline of one perception call: it waits for the frames (their own deadline, so a
    dead camera's reason comes from the capture loop first), then runs the pipeline. A loop
    waiting for percepts must wait longer, or a hung perception model is blamed on it."""
    return frame_timeout + view_sync_s + stage_timeout


async def perceive_loop(
    frames: Mapping[str, ThreadFed[Frame]],
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
    """Run the pipeline on each new frame of the first view, paired with the others' newest
    (`FrameSets`), on `workers` (the perception thread).

    Pacing on the first view keeps one percept per camera period; if perception is slower than
    the camera, the slot simply holds the newest frame and older ones are counted as dropped.
    `on_regained` hears of each (view, role) whose lost track a re-detection found again;
    `watch` sees every percept (which targets no view shows: the hold and the "target lost").
    `on_demand`: a new percept is started only once the act loop took the last one (waiting up
    to `stage_timeout`), on the newest frames then. When the policy is slower than perception,
    percepts nobody takes would take the CPU the policy needs on a machine the stages share
    (measured in `bench loop --heavy`: perception ran 1.6 times per step, and the policy's calls
    took twice their CPU time in wall time).
    """
    sets = FrameSets(frames, frame_timeout=frame_timeout, view_sync_s=view_sync_s)
    timeout = perception_deadline_s(frame_timeout, view_sync_s, stage_timeout)
    what = f"perception (up to {frame_timeout:g} s for frames, then the pipeline)"
    previous = first
    redetections = first.redetections
    published = 0
    try:
        while True:
            if on_demand and published:
                await out.wait_taken(published, timeout=stage_timeout)
            fs, percept, t0, t_done = await workers.run(
                _perceive_next, sets, pipeline, timeout=timeout, what=what
            )
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
    finally:
        sets.stop()  # a perception thread still waiting for frames leaves (its call is abandoned)
