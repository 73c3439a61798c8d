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
import math
import threading
import time
from collections.abc import Callable, Mapping

from agent.channels import Cancelled, ThreadFed
from agent.loops.target import TargetWatch
from agent.messages import PerceptMsg
from agent.workers import Busy, Workers, loop_caller, watched
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
        self.stopped = threading.Event()
        self.readers = {view: channel.reader() for view, channel in frames.items()}
        self.held: dict[str, Frame] = {}  # the newest frame each other view delivered so far

    def _wait(self, view: str, timeout: float) -> Frame:
        reader = self.readers[view]
        waited = self.frames[view].wait_newer_blocking(reader.seen, timeout, self.stopped)
        reader.seen, frame = waited
        return frame

    def stop(self) -> None:
        """From any thread: a wait in progress (and any later one) ends with `Cancelled`."""
        self.stopped.set()
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


class PerceptionThread:
    """Perception's loop, run on the perception thread from one call: form the next set, run the
    pipeline on it, feed the percept into its `ThreadFed` slot, where the policy's thread takes
    it (agent.loops.act). A percept wakes the event loop only when a loop task waits on the slot
    (the recorder, a live view) or a re-detection found a lost target (`on_regained`, run on the
    loop through `to_loop`).

    `busy` times each pipeline call (its deadline is watched on the loop, `agent.workers.watched`);
    waits for frames and for demand have deadlines of their own. `stop()` (from the loop) ends
    the loop at its next wait.
    """

    def __init__(
        self,
        sets: FrameSets,
        pipeline: PerceptionPipeline,
        out: ThreadFed[PerceptMsg],
        *,
        first: Percept,
        busy: Busy,
        to_loop: Callable[..., object],
        on_regained: Callable[[Percept, list[tuple[str, str]]], None],
        watch: TargetWatch | None,
        on_demand: bool,
        demand_timeout: float,
    ) -> None:
        self.sets = sets
        self.pipeline = pipeline
        self.out = out
        self.previous = first
        self.busy = busy
        self.to_loop = to_loop
        self.on_regained = on_regained
        self.watch = watch
        self.on_demand = on_demand
        self.demand_timeout = demand_timeout

    def stop(self) -> None:
        """From any thread: the loop leaves at its next wait (or at once, if it waits now)."""
        self.sets.stop()
        self.out.wake_threads()

    def run(self) -> None:
        """On the perception thread, until stopped (or a frame wait or the pipeline fails)."""
        redetections = self.previous.redetections
        published = 0
        try:
            while True:
                if self.on_demand and published:
                    self.out.wait_taken_blocking(published, self.demand_timeout, self.sets.stopped)
                fs = self.sets.next_set()
                t0 = time.monotonic()
                with self.busy:
                    percept = self.pipeline.step(fs.frames)
                t_done = time.monotonic()
                if percept.redetections > redetections:
                    redetections = percept.redetections
                    self._regained(percept)
                self.previous = percept
                if self.watch is not None:
                    self.watch.see(percept, t_done)
                published = self.out.feed(
                    PerceptMsg(
                        percept=percept,
                        t_capture=fs.t_capture,
                        t_done=t_done,
                        perceive_ms=(t_done - t0) * 1e3,
                        stage_ms={**percept.timings_ms, "skew": fs.skew_ms},
                    )
                )
        except Cancelled:
            return  # stopped: the episode is over

    def _regained(self, percept: Percept) -> None:
        regained = [
            (view, role)
            for view, lost in self.previous.lost.items()
            for role, count in lost.items()
            if count > 0 and percept.lost.get(view, {}).get(role) == 0
        ]
        if regained:
            self.to_loop(self.on_regained, percept, regained)


def perception_deadline_s(frame_timeout: float, view_sync_s: float, stage_timeout: float) -> float:
    """How long perception may take to name its own failure: waits for the frames (their own
    deadline, so a dead camera's reason comes from the capture loop first), then the pipeline
    (watched, `Busy.deadline_s`). A loop waiting for percepts must wait longer, or a hung
    perception model is blamed on it."""
    return frame_timeout + view_sync_s + Busy("perception", stage_timeout).deadline_s


async def perceive_loop(
    frames: Mapping[str, ThreadFed[Frame]],
    pipeline: PerceptionPipeline,
    out: ThreadFed[PerceptMsg],
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
    (`FrameSets`), on `workers` (the perception thread: `PerceptionThread`, one call for the
    episode), until cancelled or it fails (a dead camera, a model's error or hang).

    Pacing on the first view keeps one percept per camera period; if perception is slower than
    the camera, the slot simply holds the newest frame and older ones are counted as dropped.
    `on_regained` hears of each (view, role) whose lost track a re-detection found again;
    `watch` sees every percept (which targets no view shows: the hold and the "target lost").
    `on_demand`: a new percept is started only once the policy took the last one (waiting up
    to `stage_timeout`), on the newest frames then. When the policy is slower than perception,
    percepts nobody takes would take the CPU the policy needs on a machine the stages share
    (measured in `bench loop --heavy`: perception ran 1.6 times per step, and the policy's calls
    took twice their CPU time in wall time).
    """
    to_loop = loop_caller()
    out.attach(to_loop)
    busy = Busy("perception", stage_timeout)
    thread = PerceptionThread(
        FrameSets(frames, frame_timeout=frame_timeout, view_sync_s=view_sync_s),
        pipeline,
        out,
        first=first,
        busy=busy,
        to_loop=to_loop,
        on_regained=on_regained,
        watch=watch,
        on_demand=on_demand,
        demand_timeout=stage_timeout,
    )

    async def run() -> None:
        # no deadline of its own: the frame waits and the watched pipeline calls have theirs
        await workers.run(thread.run, timeout=math.inf, what="perception")

    try:
        await watched(run, busy)
    finally:
        thread.stop()  # a perception thread still working leaves at its next wait
