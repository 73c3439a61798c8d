"""Where the loop benchmark's numbers come from: per-stage meters around the backends' calls
(wall and thread CPU per call), and CPU snapshots of the process's threads (see the package
docstring's CPU accounting).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")


STAGES = ("capture", "perceive", "act", "command", "supervise")


class Meter:
    """Wall and thread-CPU time of every call to one stage's backend methods (thread-safe).

    `key`, when given, names each call from its arguments (a percept's capture time, a frame
    set's): `keyed` then holds each named call's (start, end), so a step's parts can be found
    by what they worked on.
    """

    def __init__(self, stage: str, key: Callable[..., Hashable] | None = None) -> None:
        self.stage = stage
        self.calls = 0
        self.cpu_s = 0.0
        self.wall_ms: list[float] = []
        #: (start, end) of every call on the monotonic clock the runtime stamps messages with
        self.spans: list[tuple[float, float]] = []
        self.key = key
        self.keyed: dict[Hashable, tuple[float, float]] = {}
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
                    if self.key is not None:
                        self.keyed[self.key(*args, **kwargs)] = (start, end)

        return metered


FrameSetKey = tuple[float, tuple[tuple[str, int], ...]]


def frame_set_key(frames: Mapping[str, Any]) -> FrameSetKey:
    """A perception call's frame set: its capture time (the oldest view's, as the runtime
    stamps a set) and each view's frame `seq`, to find when each view was drawn."""
    t_capture = min(f.t_capture for f in frames.values())
    return t_capture, tuple((view, f.seq) for view, f in frames.items())


def percept_key(observation: Any) -> float:
    """A policy call's percept, by its capture time."""
    return float(observation.t_capture)


#: stages whose calls are named by what they worked on (see `Meter`)
KEYS: dict[str, Callable[..., Hashable]] = {"perceive": frame_set_key, "act": percept_key}


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

    stages: dict[str, Meter] = field(
        default_factory=lambda: {s: Meter(s, KEYS.get(s)) for s in STAGES}
    )
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
