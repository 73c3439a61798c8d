"""The whole control loop: the pipelined runtime against a plain sequential loop, same backends.

The paper measured modules (Table IV), never the loop that chains them. This benchmark runs the
real `Runtime` in the sim world for a fixed number of control steps with the configured models,
then the same backends (built by the same `agent.backends.build_parts`) in the shape of the
paper's released ROS loop: capture, perceive, act, command, one after another, as fast as they
go. Both print side by side, with their ratio and how close each gets to its bound:

- pipelined: 1 / (slowest stage), where the camera period and the command loop's period
  (`runtime.control_hz`) count as stages, since neither can run faster than it is clocked;
- sequential: 1 / (sum of stages: render + perceive + act + command). The sequential loop also
  waits for the next camera frame, so it can fall short of this bound by up to a frame period;
  the cameras stream on their own threads (as real ones do), so it can also beat it a little.

What is reported per mode: achieved control rate (executed or refused steps per second between
the first and the last step), capture-to-command latency (from the oldest view's capture to the
command being sent), command-loop jitter (how late each tick of the fixed-rate loop starts; the
sequential loop has no clock, so its step-interval spread stands in), stale actions (refused by
the deadline; in the sequential loop: would have been), frames dropped per channel, the wall time
of each stage per call, and the CPU each stage used.

CPU accounting (documented choice): each stage's backend calls are wrapped (`Meter`) and measure
`time.thread_time()` inside the worker thread that runs them, so a stage's CPU is its own and not
the time it waited for the GIL or a core; the camera render threads and the sim physics thread
are read through their POSIX thread CPU clocks, and Mesa's llvmpipe rasteriser threads (native,
named "llvmpipe-N") through /proc (Linux; 10 ms resolution). The runtime's own overhead
(scheduling, channels, events, telemetry) is the CPU of the event loop's thread, which runs
everything but the stages; per step it is the cost of the runtime itself. Shares are of the
process's CPU over the window from the first to the last step.

    python -m agent bench loop [--steps 100] [--quick] [--json PATH] [--set models.tracker=csrt]
    python -m benchmarks.loop  (the same arguments, with the sim profile)
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from agent.config import Config
from agent.telemetry import summarize
from benchmarks._cli import save_results, standalone_main
from benchmarks.machine import describe, machine_info, pin_threads

T = TypeVar("T")
REQUEST = "I spilled the milk"
STAGES = ("capture", "perceive", "act", "command", "supervise")


# ---------------------------------------------------------------- metering


class Meter:
    """Wall and thread-CPU time of every call to one stage's backend methods (thread-safe)."""

    def __init__(self, stage: str) -> None:
        self.stage = stage
        self.calls = 0
        self.cpu_s = 0.0
        self.wall_ms: list[float] = []
        #: (start, end) of every call on the monotonic clock the runtime stamps messages with
        self.spans: list[tuple[float, float]] = []
        self._lock = threading.Lock()

    def wrap(self, fn: Callable[..., T]) -> Callable[..., T]:
        def metered(*args: Any, **kwargs: Any) -> T:
            start, cpu = time.monotonic(), time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                cpu = time.thread_time() - cpu
                end = time.monotonic()
                with self._lock:
                    self.calls += 1
                    self.cpu_s += cpu
                    self.wall_ms.append((end - start) * 1e3)
                    self.spans.append((start, end))

        return metered


class _Metered:
    """A proxy whose listed methods are metered; everything else passes through.

    The runtime's roles are structural protocols, so the proxy stands in for the backend.
    """

    def __init__(self, target: Any, meter: Meter, methods: Iterable[str]) -> None:
        self._target = target
        for name in methods:
            setattr(self, name, meter.wrap(getattr(target, name)))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._target, name)


@dataclass
class Meters:
    """One meter per stage plus the render times the cameras report (for the bounds)."""

    stages: dict[str, Meter] = field(default_factory=lambda: {s: Meter(s) for s in STAGES})
    render_ms: dict[str, list[float]] = field(default_factory=dict)
    #: per view, frame seq -> (render start, end), from the frames the loop read
    render_spans: dict[str, dict[int, tuple[float, float]]] = field(default_factory=dict)

    def instrument(self, parts: Any) -> Any:
        """Wrap the devices and models of `parts` (an `agent.backends.Parts`) in place."""
        m = self.stages
        cameras = {}
        for name, camera in parts.cameras.items():
            proxy = _Metered(camera, m["capture"], ["read"])
            proxy.read = self._sample_render(name, camera, proxy.read)
            cameras[name] = proxy
        parts.cameras = cameras
        parts.robot = _Metered(parts.robot, m["command"], ["state", "move", "hold"])
        parts.policy = _Metered(parts.policy, m["act"], ["act"])
        if parts.judge is not None:
            parts.judge = _Metered(parts.judge, m["supervise"], ["verdict"])
        new_pipeline = parts.new_pipeline
        parts.new_pipeline = lambda: _Metered(new_pipeline(), m["perceive"], ["step"])
        return parts

    def _sample_render(self, name: str, camera: Any, read: Callable[..., T]) -> Callable[..., T]:
        samples = self.render_ms.setdefault(name, [])
        spans = self.render_spans.setdefault(name, {})

        def sampled(*args: Any) -> T:
            frame = read(*args)
            seconds = getattr(camera, "render_seconds", None)  # SimCamera reports it
            if seconds:
                samples.append(seconds * 1e3)
                t = getattr(frame, "t_capture", None)
                if t is not None:  # the sim stamps a frame when its render starts
                    spans.setdefault(getattr(frame, "seq", len(spans)), (t, t + seconds))
            return frame

        return sampled


def _thread_cpu(thread: threading.Thread) -> float:
    """CPU seconds of another live thread (POSIX thread CPU clock); 0 where unsupported."""
    try:
        assert thread.ident is not None
        return time.clock_gettime(time.pthread_getcpuclockid(thread.ident))
    except (AttributeError, OSError, AssertionError):
        return 0.0


def _native_threads(prefix: str) -> dict[str, float]:
    """CPU seconds of this process's OS threads whose name starts with `prefix` (Linux /proc).

    Mesa's llvmpipe rasterises on its own native threads ("llvmpipe-N"), which Python's
    `threading` does not list; without them most of the render cost would show up as "other".
    """
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    out: dict[str, float] = {}
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return out
    for tid in tasks:
        try:
            with open(f"/proc/self/task/{tid}/comm", encoding="utf-8") as comm:
                name = comm.read().strip()
            if not name.startswith(prefix):
                continue
            with open(f"/proc/self/task/{tid}/stat", encoding="utf-8") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            out[f"{name}:{tid}"] = (int(fields[11]) + int(fields[12])) / ticks  # utime + stime
        except (OSError, IndexError, ValueError):
            continue  # the thread ended between listing and reading
    return out


@dataclass
class Snapshot:
    """Counters at one instant; the window is the difference of two snapshots."""

    wall: float
    process_cpu: float
    loop_cpu: float
    stage_cpu: dict[str, float]
    sim_threads: dict[str, float]
    #: CPU the benchmark's own snapshots took on the loop's thread before this one (reading
    #: /proc per step costs milliseconds: it must not be billed to the runtime)
    metering_cpu: float = 0.0

    @classmethod
    def take(cls, meters: Meters, before: Snapshot | None = None) -> Snapshot:
        """Read every counter; `before` (the previous snapshot) carries the metering total."""
        t0 = time.thread_time()
        threads = {
            t.name: _thread_cpu(t)
            for t in threading.enumerate()
            if t.name.startswith(("sim-camera-", "sim-physics"))
        }
        threads.update(_native_threads("llvmpipe"))
        process_cpu = time.process_time()
        now = time.thread_time()  # last: this snapshot's whole cost lies before it
        return cls(
            wall=time.perf_counter(),
            process_cpu=process_cpu,
            loop_cpu=now,
            stage_cpu={s: m.cpu_s for s, m in meters.stages.items()},
            sim_threads=threads,
            metering_cpu=(before.metering_cpu if before is not None else 0.0) + now - t0,
        )


def cpu_table(start: Snapshot, end: Snapshot, steps: int, *, loop_runs_stages: bool) -> dict:
    """CPU seconds, share of the process and ms per step for each consumer over the window.

    `loop_runs_stages`: the sequential loop runs the stages on its own thread, so its stage CPU
    is taken out of the loop thread's to leave the loop's own bookkeeping.
    """
    process = end.process_cpu - start.process_cpu
    used = {s: end.stage_cpu[s] - start.stage_cpu[s] for s in end.stage_cpu}
    render = sum(
        end.sim_threads[n] - start.sim_threads.get(n, 0.0)
        for n in end.sim_threads
        if n.startswith("sim-camera-")
    )
    physics = sum(
        end.sim_threads[n] - start.sim_threads.get(n, 0.0)
        for n in end.sim_threads
        if n.startswith("sim-physics")
    )
    rasteriser = sum(
        end.sim_threads[n] - start.sim_threads.get(n, 0.0)
        for n in end.sim_threads
        if n.startswith("llvmpipe")
    )
    metering = end.metering_cpu - start.metering_cpu
    loop = end.loop_cpu - start.loop_cpu - metering
    if loop_runs_stages:
        loop -= sum(used.values())
    rows = {**used, "render (camera threads)": render, "benchmark metering": metering}
    rows["render (llvmpipe rasteriser threads)"] = rasteriser
    rows["sim physics thread"] = physics
    rows["runtime overhead (event loop)" if not loop_runs_stages else "loop bookkeeping"] = loop
    rows["other (worker pool, GC, other native threads)"] = process - sum(rows.values())
    rows["process"] = process
    return {
        name: {
            "cpu_s": round(cpu, 3),
            "share": round(cpu / process, 4) if process > 0 else 0.0,
            "ms_per_step": round(cpu / steps * 1e3, 3) if steps else 0.0,
        }
        for name, cpu in rows.items()
    }


# ---------------------------------------------------------------- results


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
    #: stage -> [[start, end] ms from the window's start, ...]: a few seconds, for the picture
    timeline: dict[str, list[list[float]]] = field(default_factory=dict)


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


def bounds(result: LoopResult, config: Config, *, schedule: str) -> dict[str, float]:
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
    """
    stage = {k: v.get("mean", v.get("median", 0.0)) for k, v in result.stage_ms.items()}
    render = max(result.render_ms.values(), default=0.0)
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


# ---------------------------------------------------------------- the two loops


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
    import anyio

    from agent.backends import build_parts
    from agent.events import Finished, Step
    from agent.runtime import Runtime

    meters = Meters()
    config = _bench_config(config, steps)
    config = config.model_copy(
        update={"runtime": config.runtime.model_copy(update={"command_mode": mode})}
    )
    times: list[float] = []
    totals: list[float] = []
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
                elif isinstance(event, Finished):
                    outcome = event.outcome

    anyio.run(go)
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
    )
    result.bounds = bounds(result, config, schedule=mode)
    return result


def run_sequential(config: Config, steps: int, request: str = REQUEST) -> LoopResult:
    """Capture, perceive, act, command in one thread, one after another (the paper's ROS loop)."""
    from agent.backends import build_parts
    from models.types import Observation

    meters = Meters()
    config = _bench_config(config, steps)
    parts = meters.instrument(build_parts(config))
    deadline = config.runtime.action_deadline_s
    timeout = config.runtime.camera_timeout_s
    times: list[float] = []
    totals: list[float] = []
    seqs: dict[str, list[int]] = {name: [] for name in parts.cameras}
    stale = 0
    parts.open()
    try:
        task = parts.reasoner.reason(request, parts.scene_objects())
        pipeline = parts.new_pipeline()
        pipeline.start(task, {n: c.read(timeout) for n, c in parts.cameras.items()})
        parts.policy.reset(task)
        start = end = None
        for _ in range(steps):
            frames = {name: camera.read(timeout) for name, camera in parts.cameras.items()}
            percept = pipeline.step(frames)
            state = parts.robot.state()
            observation = Observation(
                images=percept.images,
                masks=percept.masks,
                proprio=np.array([*state.ee_pos, float(state.gripper_closed)], dtype=np.float32),
                t_capture=percept.t_capture,
            )
            action = parts.policy.act(observation)
            parts.robot.move(action.move, action.gripper_closed)
            now = time.monotonic()
            end = Snapshot.take(meters, end)
            start = start or end
            times.append(now)
            totals.append((now - percept.t_capture) * 1e3)
            stale += now - percept.t_capture > deadline
            for name, frame in frames.items():
                seqs[name].append(frame.seq)
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
    )
    result.bounds = bounds(result, config, schedule="sequential")
    return result


# ---------------------------------------------------------------- report


def _fmt(summary: Mapping[str, float], key: str) -> str:
    value = summary.get(key)
    return "-" if value is None else f"{value:.1f}"


def format_report(results: Sequence[LoopResult]) -> str:
    """Markdown: the loops side by side (the last one is the sequential baseline), then CPU per
    consumer."""
    base = results[-1]

    def lat(d: Mapping[str, float]) -> str:
        return f"{_fmt(d, 'median')} / {_fmt(d, 'p90')} / {_fmt(d, 'p99')}"

    def stage(r: LoopResult, name: str) -> str:
        return _fmt(r.stage_ms.get(name, {}), "median")

    def bound(r: LoopResult) -> str:
        b = r.bounds
        return (
            f"1/slowest ({b['slowest_stage']}, {b['slowest_ms']:.0f} ms) = "
            f"{b['bound_slowest_hz']:.2f} Hz: {b['of_slowest']:.0%}; "
            f"1/sum ({b['sum_ms']:.0f} ms) = {b['bound_sum_hz']:.2f} Hz: {b['of_sum']:.0%}"
        )

    def work_ms(r: LoopResult) -> str:
        """render (slowest view) + perceive + act: what capture-to-command cannot go below."""
        medians = [max(r.render_ms.values(), default=0.0)]
        medians += [r.stage_ms.get(k, {}).get("median", 0.0) for k in ("perceive", "act")]
        return f"{sum(medians):.1f}"

    def jitter(r: LoopResult) -> str:
        what = "|interval - median| " if r is base else "command lateness "
        return what + lat(r.jitter_ms)

    def overhead(r: LoopResult) -> str:
        if r is base:
            return f"{r.cpu['loop bookkeeping']['ms_per_step']:.2f} (loop bookkeeping)"
        return f"{r.cpu['runtime overhead (event loop)']['ms_per_step']:.2f} (event loop thread)"

    rows: list[tuple[str, Callable[[LoopResult], str]]] = [
        ("control steps", lambda r: str(r.steps)),
        ("achieved rate (Hz)", lambda r: f"{r.rate_hz:.2f}"),
        (
            "rate / sequential",
            lambda r: f"{r.rate_hz / base.rate_hz:.2f}x" if base.rate_hz and r is not base else "",
        ),
        ("how close to the bounds", bound),
        ("capture-to-command ms (median / p90 / p99)", lambda r: lat(r.latency_ms)),
        ("render + perceive + act ms (medians)", work_ms),
        ("step interval ms (median / p90 / p99)", lambda r: lat(r.interval_ms)),
        ("jitter ms (median / p90 / p99)", jitter),
        ("stale actions", lambda r: str(r.stale) + (" (would be refused)" if r is base else "")),
        ("frames dropped", lambda r: ", ".join(f"{k} {v}" for k, v in r.dropped.items()) or "0"),
        (
            "render ms per view (median)",
            lambda r: " / ".join(f"{v}: {ms:.1f}" for v, ms in r.render_ms.items()) or "-",
        ),
        *[
            (f"{name} ms per call (median)", lambda r, n=name: stage(r, n))
            for name in ("capture", "perceive", "act", "command")
        ],
        ("runtime overhead, CPU ms per step", overhead),
        ("ended", lambda r: r.outcome),
    ]
    head = " | ".join(r.mode for r in results)
    lines = [f"| | {head} |", "|---" * (len(results) + 1) + "|"]
    lines += [f"| {name} | " + " | ".join(cell(r) for r in results) + " |" for name, cell in rows]
    lines += ["", "CPU per step (ms) and share of the process's CPU:", ""]
    lines += [f"| consumer | {head} |", "|---" * (len(results) + 1) + "|"]
    for name in dict.fromkeys(k for r in results for k in r.cpu):
        cells = []
        for r in results:
            c = r.cpu.get(name)
            cells.append(f"{c['ms_per_step']:.1f} ({c['share']:.0%})" if c else "-")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_timeline(results: Sequence[LoopResult], path: Path) -> bool:
    """A Gantt chart per loop: each stage's calls over a few seconds of the run, so a reader sees
    which stages overlap. False (and nothing written) without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, axes = plt.subplots(len(results), 1, figsize=(11, 1.1 + 1.6 * len(results)), sharex=True)
    colours = plt.get_cmap("tab10")
    for ax, result in zip(np.atleast_1d(axes), results, strict=True):
        names = list(result.timeline)
        for row, name in enumerate(names):
            bars = [(a, max(b - a, 0.5)) for a, b in result.timeline[name]]
            ax.broken_barh(bars, (row - 0.4, 0.8), color=colours(row % 10))
        ax.set_yticks(range(len(names)), names, fontsize=8)
        ax.set_ylim(-0.6, len(names) - 0.4)
        ax.invert_yaxis()
        ax.set_title(f"{result.mode}: {result.rate_hz:.1f} Hz", fontsize=9, loc="left")
        ax.grid(axis="x", alpha=0.3)
    ax.set_xlabel("ms")
    ax.set_xlim(0, 3000)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


def models_line(config: Config) -> str:
    m, s, r = config.models, config.sim, config.runtime
    return (
        f"reasoner {m.reasoner}, detector {m.detector}, tracker {m.tracker}, segmenter "
        f"{m.segmenter}, policy {m.policy}"
        + (f" ({config.policy.onnx.name})" if m.policy == "tpm" else "")
        + f"; {len(config.cameras.views)} views "
        f"{s.image_width}x{s.image_height} at {s.camera_fps:g} fps; control {r.control_hz:g} Hz"
    )


def run_benchmark(config: Config, steps: int, *, threads: int) -> dict[str, Any]:
    """Both loops on the same config; returns the result document (JSON-ready)."""
    os.environ.setdefault("MUJOCO_GL", "egl")
    pin_threads(threads)
    config = config.model_copy(
        update={"runtime": config.runtime.model_copy(update={"torch_threads": threads})}
    )
    before = machine_info()
    pipelined = run_pipelined(config, steps, mode="on_arrival")
    fixed_rate = run_pipelined(config, steps, mode="fixed_rate")
    sequential = run_sequential(config, steps)
    info = machine_info()
    info["load_average_before"] = before["load_average"]
    ratio = pipelined.rate_hz / sequential.rate_hz if sequential.rate_hz else None
    return {
        "benchmark": "loop",
        "machine": info,
        "threads": threads,
        "models": models_line(config),
        "request": REQUEST,
        "steps": steps,
        "ratio": round(ratio, 3) if ratio else None,
        "caption": (
            f"{steps} control steps of {REQUEST!r} in sim: {models_line(config)}; "
            f"{threads} model thread(s); on {describe(info)}"
        ),
        "pipelined": asdict(pipelined),
        "fixed_rate": asdict(fixed_rate),
        "sequential": asdict(sequential),
    }


def loop_results(result: Mapping[str, Any]) -> list[LoopResult]:
    """The result document's loops in report order (the sequential baseline last)."""
    return [LoopResult(**result[k]) for k in ("pipelined", "fixed_rate", "sequential")]


# ---------------------------------------------------------------- command line


HEAVY_MODELS = {"tracker": "csrt", "segmenter": "grabcut", "policy": "tpm"}


def random_policy(preset_name: str, folder: Path) -> Path:
    """A random-weight TPM of `preset_name` written by export's own path (latency depends on the
    architecture and input size, not on the weights)."""
    import dataclasses

    import torch

    from models.tpm.config import preset
    from models.tpm.export import PolicyGraph, write_policy_onnx
    from models.tpm.network import TPMNet
    from models.tpm.train import Normaliser

    config = preset(preset_name)
    identity = Normaliser([0.0] * 3, [1.0] * 3, [0.0] * 4, [1.0] * 4)
    graph = PolicyGraph(TPMNet(config), identity).eval()
    v, size = len(config.views), config.image_size
    rgb = torch.zeros(1, v, size, size, 3, dtype=torch.uint8)  # as `prepare_views` gives it
    example = (rgb, torch.zeros(1, v, size, size), torch.zeros(1, 4))
    path = folder / f"tpm_{preset_name}_random.onnx"
    write_policy_onnx(graph, example, path, {"config": dataclasses.asdict(config)})
    return path


def heavy_config(config: Config, folder: Path, preset_name: str = "paper") -> Config:
    """Stages heavy enough that pipelining can pay on this CPU: CSRT tracking, GrabCut masks and
    the `paper` TPM (ResNet-50 + ResNet-18, two 224 px views) on ONNX Runtime."""
    onnx = random_policy(preset_name, folder)
    return config.model_copy(
        update={
            "models": config.models.model_copy(update=HEAVY_MODELS),
            "policy": config.policy.model_copy(update={"onnx": onnx}),
        }
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The benchmark's own arguments (the CLI's `bench loop` adds the config arguments)."""
    parser.add_argument("--steps", type=int, default=100, help="control steps per loop (100)")
    parser.add_argument(
        "--heavy",
        action="store_true",
        help="heavy stages that run here: CSRT tracking, GrabCut masks and a random-weight "
        "`paper` TPM (ResNet-50 + ResNet-18, two 224 px views) on ONNX Runtime",
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 12 steps, 64 px frames, rules reasoner"
    )
    parser.add_argument(
        "--threads",
        type=int,
        help="threads for torch, ONNX Runtime, OpenCV (runtime.torch_threads)",
    )
    parser.add_argument(
        "--json",
        dest="json_path",
        type=Path,
        help="write results JSON here, and the markdown report beside it (default: "
        "benchmarks/results/loop-<device>.json; none with --quick)",
    )


def run(args: argparse.Namespace, config: Any, out: Any = None) -> int:
    """Run both loops as the arguments say; prints the report; returns the exit code."""
    out = out or sys.stdout
    steps = args.steps
    if args.quick:
        steps = min(steps, 12)
        sim = config.sim.model_copy(update={"image_width": 64, "image_height": 64})
        models = config.models.model_copy(update={"reasoner": "rules"})
        config = config.model_copy(update={"sim": sim, "models": models})
    if steps < 3:
        print("error: --steps must be at least 3", file=sys.stderr)
        return 2
    threads = args.threads or config.runtime.torch_threads
    with tempfile.TemporaryDirectory(prefix="bench-loop-") as folder:
        if args.heavy:
            print("loop: writing a random-weight paper TPM for the heavy run", file=out, flush=True)
            config = heavy_config(config, Path(folder))
        print(f"loop: {steps} steps, {models_line(config)}", file=out, flush=True)
        result = run_benchmark(config, steps, threads=threads)
    result["heavy"] = bool(args.heavy)
    results = loop_results(result)
    report = format_report(results)
    print(f"\n{result['caption']}\n\n{report}", file=out)
    ratio = result["ratio"]
    print(f"pipelined / sequential rate: {ratio:.2f}x" if ratio else "ratio: n/a", file=out)
    bench = "loop-heavy" if args.heavy else "loop"
    json_path = save_results(bench, result, report, args.json_path, args.quick, out)
    if json_path is not None:
        picture = json_path.with_name(json_path.stem + "-timeline.png")
        if plot_timeline(results, picture):
            print(f"wrote {picture}", file=out)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return standalone_main("python -m benchmarks.loop", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
