"""The two loops the benchmark compares, on the same backends: the pipelined `Runtime` and a
sequential loop in the shape of the paper's ROS loop; what each run yields (`LoopResult`).
"""

from __future__ import annotations

import bisect
import itertools
import os
import statistics
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from agent.config import Config
from agent.telemetry import summarize
from benchmarks.loop.meters import FrameSetKey, Meters, Snapshot, cpu_table

if TYPE_CHECKING:
    from drivers.base import RobotState
    from models.perception import Percept
    from models.types import ActionLike

REQUEST = "I spilled the milk"


@dataclass
class LoopResult:
    mode: str
    steps: int
    window_s: float
    rate_hz: float
    latency_ms: dict[str, float]
    interval_ms: dict[str, float]
    jitter_ms: dict[str, float]
    stale: int
    dropped: dict[str, int]
    stage_ms: dict[str, dict[str, float]]
    render_ms: dict[str, float]
    cpu: dict[str, dict[str, float]]
    bounds: dict[str, float] = field(default_factory=dict)
    outcome: str = ""
    #: capture-to-command split into its parts, median ms of each (see `latency_breakdown`)
    breakdown: dict[str, float] = field(default_factory=dict)
    #: stage -> [[start, end] ms from the window's start, ...]: a few seconds, for the picture
    timeline: dict[str, list[list[float]]] = field(default_factory=dict)

    @property
    def render_stage_ms(self) -> float:
        """The render stage: the set's (capture to its last view drawn) where the frames said
        when they were drawn, else the slowest view's."""
        return self.breakdown.get("render (set)", max(self.render_ms.values(), default=0.0))


def _stage_summaries(meters: Meters, skip: int) -> dict[str, dict[str, float]]:
    """Wall time per call of each stage (after `skip` warm-up calls of each)."""
    out = {}
    for name, meter in meters.stages.items():
        if meter.wall_ms:
            out[name] = summarize(meter.wall_ms[skip:] or meter.wall_ms)
    return out


def _render_summary(meters: Meters) -> dict[str, float]:
    per_view = {v: statistics.median(s) for v, s in meters.render_ms.items() if s}
    return {v: round(ms, 2) for v, ms in per_view.items()}


MATCH_S = 0.01  # half the period of a 50 fps camera: sets are at least this far apart

BREAKDOWN = (
    "render (set)",
    "wait for perception",
    "perceive",
    "wait for policy",
    "act",
    "to command sent",
)


def latency_breakdown(meters: Meters, steps: Iterable[tuple[float, float]]) -> dict[str, float]:
    """Where each step's capture-to-command time went, median ms per part.

    `steps`: (capture time of the step's percept, capture-to-command ms) per step; the
    capture time may be off by a few ms (events are stamped after the command): it is matched to
    the nearest set perception ran on, within `MATCH_S`. The parts chain from the set's capture
    (its oldest view's render start): the set complete (its last view's render end: with one GL
    context drawing at a time that is after every view's draw, not the slowest view's alone),
    the wait until perception took it, perception, the wait until the policy took the percept,
    the policy, and the rest until the command was sent (hand-offs, the robot call). Steps whose
    frames or policy call the meters did not see (real cameras report no render) are left out;
    `steps` says how many were used and `total` is the median of their whole latency.
    """
    sets: dict[float, tuple[float, tuple[float, float]]] = {}
    for call, span in meters.stages["perceive"].keyed.items():
        t_capture, seqs = cast(FrameSetKey, call)
        drawn = [meters.render_spans.get(view, {}).get(seq) for view, seq in seqs]
        if drawn and all(drawn):
            sets[t_capture] = (max(d[1] for d in drawn if d), span)
    acts = meters.stages["act"].keyed
    keys = sorted(sets)
    rows: list[list[float]] = []
    for t_capture, total_ms in steps:
        i = bisect.bisect_left(keys, t_capture)
        near = [k for k in keys[max(0, i - 1) : i + 1] if abs(k - t_capture) <= MATCH_S]
        if not near:
            continue
        key = min(near, key=lambda k: abs(k - t_capture))
        act = acts.get(key)
        if act is None:
            continue
        ready, (p_start, p_end) = sets[key]
        marks = [key, ready, p_start, p_end, act[0], act[1], key + total_ms / 1e3]
        rows.append([(b - a) * 1e3 for a, b in itertools.pairwise(marks)] + [total_ms])
    if not rows:
        return {}
    medians = np.median(np.asarray(rows), axis=0)
    out = {name: round(float(ms), 2) for name, ms in zip(BREAKDOWN, medians, strict=False)}
    return {**out, "total": round(float(medians[-1]), 2), "steps": len(rows)}


def bounds(
    result: LoopResult, config: Config, *, schedule: str, cores: int | None = None
) -> dict[str, float]:
    """Rates (Hz) the loop could reach at best, and the achieved share of each.

    Stage costs are the mean wall times this run measured (rates are made of means: a frame wait
    of 5 ms nine times and 95 ms once costs 14 ms a step, not the median's 5); `command` counts
    twice per step (a state read and a move). Render times are medians (cameras report no more).
    `schedule` is the runtime's `command_mode` ("on_arrival", "fixed_rate") or "sequential":
    - pipelined: 1 / the slowest stage, where each camera renders on its own thread (the slowest
      view counts), and the camera period, the command clock (fixed_rate) or the minimum command
      interval (on_arrival) count as stages, since nothing runs faster than it is clocked;
    - sequential: 1 / the sum of its own stages as it ran them: capture (its wait for a frame of
      each view, which includes whatever rendering did not overlap), perceive, act, command. The
      loop does all of that and a little bookkeeping per step, so it cannot beat this bound.
    And the machine's bound: `cores` (default: the CPUs this process may use) / the process's
    CPU per step, rendering and physics included. Overlapping stages cannot beat it, so on a
    2-core machine pipelining two stages of P and A ms pays at most 2 (P + A) / (CPU per step).
    """
    if cores is None:
        cores = len(os.sched_getaffinity(0))
    stage = {k: v.get("mean", v.get("median", 0.0)) for k, v in result.stage_ms.items()}
    render = result.render_stage_ms
    command = stage.get("command", 0.0) * 2
    work = {"perceive": stage.get("perceive", 0.0), "act": stage.get("act", 0.0)}
    if schedule == "sequential":
        views = max(1, len(result.render_ms))
        parts = {"capture": stage.get("capture", 0.0) * views, **work, "command": command}
        costs = dict(parts)
    else:
        parts = {"render": render, **work, "command": command}
        costs = {**parts, "camera period": 1e3 / config.sim.camera_fps}
        if schedule == "fixed_rate":
            costs["control period"] = 1e3 / config.runtime.control_hz
        elif config.runtime.min_command_interval_s > 0:
            costs["command interval"] = config.runtime.min_command_interval_s * 1e3
    slowest_name = max(costs, key=lambda k: costs[k])
    total = sum(parts.values())
    cpu_ms = result.cpu.get("process", {}).get("ms_per_step", 0.0)
    cpu_hz = cores * 1e3 / cpu_ms if cpu_ms > 0 else float("inf")
    slowest_hz = 1e3 / costs[slowest_name] if costs[slowest_name] > 0 else float("inf")
    sum_hz = 1e3 / total if total > 0 else float("inf")
    return {
        "slowest_stage": slowest_name,  # type: ignore[dict-item]
        "slowest_ms": round(costs[slowest_name], 2),
        "sum_ms": round(total, 2),
        "bound_slowest_hz": round(slowest_hz, 2),
        "bound_sum_hz": round(sum_hz, 2),
        "of_slowest": round(result.rate_hz / slowest_hz, 3),
        "of_sum": round(result.rate_hz / sum_hz, 3),
        "cores": cores,
        "cpu_ms": round(cpu_ms, 2),
        "bound_cpu_hz": round(cpu_hz, 2),
        "of_cpu": round(result.rate_hz / cpu_hz, 3),
    }


def timeline(meters: Meters, start: float, seconds: float = 3.0) -> dict[str, list[list[float]]]:
    """The stage calls and renders inside [start, start + seconds], in ms from `start`."""
    rows: dict[str, list[tuple[float, float]]] = {
        f"render {view}": list(spans.values()) for view, spans in meters.render_spans.items()
    }
    rows.update(
        {
            "capture (frame wait)" if name == "capture" else name: m.spans
            for name, m in meters.stages.items()
            if name != "supervise"
        }
    )
    end = start + seconds
    return {
        name: [
            [round((a - start) * 1e3, 2), round((b - start) * 1e3, 2)]
            for a, b in spans
            if b >= start and a <= end
        ]
        for name, spans in rows.items()
    }


def _rate(times: Sequence[float]) -> float:
    return (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else 0.0


def _intervals(times: Sequence[float]) -> list[float]:
    return [(b - a) * 1e3 for a, b in itertools.pairwise(times)]


def _bench_config(config: Config, steps: int) -> Config:
    """The step budget ends the episode after `steps` control steps (the task may finish first)."""
    return config.model_copy(
        update={
            "runtime": config.runtime.model_copy(update={"max_steps": steps}),
            "output": config.output.model_copy(update={"video": False}),
        }
    )


def run_pipelined(
    config: Config, steps: int, request: str = REQUEST, *, mode: str = "on_arrival"
) -> LoopResult:
    """The real Runtime with `runtime.command_mode = mode`, its backends metered through
    `parts_factory`; events give the steps."""
    from agent.backends import build_parts
    from agent.event_loop import run_loop
    from agent.events import Finished, Step
    from agent.runtime import Runtime

    meters = Meters()
    config = _bench_config(config, steps)
    config = config.model_copy(
        update={"runtime": config.runtime.model_copy(update={"command_mode": mode})}
    )
    times: list[float] = []
    totals: list[float] = []
    captures: list[float] = []  # of each step's percept
    marks: dict[str, Snapshot] = {}
    outcome: Any = None

    async def go() -> None:
        nonlocal outcome
        factory = lambda c: meters.instrument(build_parts(c))  # noqa: E731
        async with Runtime(config, parts_factory=factory) as runtime:
            async for event in runtime.execute(request):
                if isinstance(event, Step):
                    marks["last"] = Snapshot.take(meters, marks.get("last"))
                    marks.setdefault("first", marks["last"])
                    times.append(event.t)
                    totals.append(event.latency_ms["total"])
                    captures.append(event.t - totals[-1] / 1e3)
                elif isinstance(event, Finished):
                    outcome = event.outcome

    run_loop(go, config.runtime.event_loop)
    if outcome is None or "first" not in marks:
        raise RuntimeError(f"the runtime ran no control step ({outcome and outcome.reason})")
    n = len(times)
    result = LoopResult(
        mode=f"pipelined, {mode.replace('_', ' ')}",
        steps=n,
        window_s=round(times[-1] - times[0], 3),
        rate_hz=round(_rate(times), 3),
        latency_ms=summarize(totals),
        interval_ms=summarize(_intervals(times)),
        jitter_ms=outcome.latency_ms.get("command_lateness", {}),
        stale=outcome.stale_actions,
        dropped=dict(outcome.dropped),
        stage_ms=_stage_summaries(meters, skip=1),
        render_ms=_render_summary(meters),
        cpu=cpu_table(marks["first"], marks["last"], n - 1, loop_runs_stages=False),
        outcome=f"{outcome.status}: {outcome.reason}",
        timeline=timeline(meters, times[min(2, n - 1)]),
        breakdown=latency_breakdown(meters, zip(captures, totals, strict=True)),
    )
    result.bounds = bounds(result, config, schedule=mode)
    return result


def run_sequential(config: Config, steps: int, request: str = REQUEST) -> LoopResult:
    """Capture, perceive, act, command in one thread, one after another (the paper's ROS loop):
    the simulator's rollout step loop (`drivers.sim.rollout.run_steps`) on the runtime's parts,
    whose physics runs in real time, so nothing advances it between steps."""
    from agent.backends import build_parts
    from agent.messages import observation
    from drivers.cameras.pairing import pair_newest
    from drivers.sim.rollout import run_steps

    meters = Meters()
    config = _bench_config(config, steps)
    parts = meters.instrument(build_parts(config))
    deadline = config.runtime.action_deadline_s
    timeout = config.runtime.camera_timeout_s
    times: list[float] = []
    totals: list[float] = []
    captures: list[float] = []
    seqs: dict[str, list[int]] = {name: [] for name in parts.cameras}
    stale = 0
    start: Snapshot | None = None
    end: Snapshot | None = None
    t_capture = 0.0  # of the step's percept

    cameras = list(parts.cameras.values())
    sync = config.runtime.view_sync_s

    def observe() -> Percept:
        """The views of one moment, as the runtime pairs them: two free-running cameras read
        one after the other would pair one view's waiting frame with the other's next."""
        nonlocal t_capture
        if len(cameras) == 2:
            frames = pair_newest(*cameras, max_skew=sync, timeout=timeout).frames
        else:
            frames = {camera.name: camera.read(timeout) for camera in cameras}
        for name, frame in frames.items():
            seqs[name].append(frame.seq)
        percept = pipeline.step(frames)
        t_capture = percept.t_capture
        return percept

    def decide(percept: Percept, state: RobotState) -> ActionLike:
        seen = observation(percept.images, percept.masks, state, percept.t_capture)
        return parts.policy.act(seen)

    def after_move() -> None:
        """The step's bookkeeping: when its move was sent, its age, the meters' snapshot."""
        nonlocal start, end, stale
        now = time.monotonic()
        end = Snapshot.take(meters, end)
        start = start or end
        times.append(now)
        totals.append((now - t_capture) * 1e3)
        captures.append(t_capture)
        stale += now - t_capture > deadline

    parts.open()
    try:
        task = parts.reasoner.reason(request, parts.scene_objects())
        pipeline = parts.new_pipeline()
        pipeline.start(task, {n: c.read(timeout) for n, c in parts.cameras.items()})
        parts.policy.reset(task)
        run_steps(observe, decide, parts.robot, max_steps=steps, advance=after_move)
    finally:
        parts.robot.stop()
        parts.close()
    assert start is not None and end is not None
    intervals = _intervals(times)
    median = statistics.median(intervals) if intervals else 0.0
    result = LoopResult(
        mode="sequential",
        steps=len(times),
        window_s=round(times[-1] - times[0], 3),
        rate_hz=round(_rate(times), 3),
        latency_ms=summarize(totals),
        interval_ms=summarize(intervals),
        jitter_ms=summarize(abs(i - median) for i in intervals),
        stale=stale,
        dropped={f"frames/{n}": int(sum(np.diff(s) - 1)) for n, s in seqs.items()},
        stage_ms=_stage_summaries(meters, skip=1),
        render_ms=_render_summary(meters),
        cpu=cpu_table(start, end, len(times) - 1, loop_runs_stages=True),
        outcome=f"{len(times)} steps",
        timeline=timeline(meters, times[min(2, len(times) - 1)]),
        breakdown=latency_breakdown(meters, zip(captures, totals, strict=True)),
    )
    result.bounds = bounds(result, config, schedule="sequential")
    return result
