"""What the fault tests through the Runtime share (issue 12, section 2).

Each such test checks three things, and these helpers are the checks:
(a) the episode ends with a Fault or Finished event naming the cause in one line
    (`fatal_fault`, `only_fault`);
(b) the arm was told to stop BEFORE the episode's events ended: `StopSpy` wraps the real robot and
    notes when `stop` was called, and `stopped_before` compares that moment with the events'
    clock (events carry the runtime's clock, `time.monotonic()` under asyncio);
(c) the run folder is complete (`check_run_folder`): events.jsonl parses to its last line,
    summary.json holds the outcome, the video is playable (ffmpeg, through imageio-ffmpeg, reads
    every frame the summary counts) or absent, never truncated.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio

from agent import Fault, Finished, Runtime, Step, parse_event
from agent.backends import Parts, build_parts
from agent.config import Config
from agent.events import Event, Outcome

ROOT = Path(__file__).resolve().parents[1]
REQUEST = "I spilled the milk"
#: the config override the fault tests run with: a video, so that (c) checks a playable file
VIDEO = "output.video=true"


class StopSpy:
    """The real robot; notes the time of every `stop` call, and can make stop fail or hang."""

    def __init__(self, inner: Any, *, fail: Exception | None = None, hang_s: float = 0.0):
        self.inner = inner
        self.fail = fail
        self.hang_s = hang_s
        self.stop_times: list[float] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    @property
    def stops(self) -> int:
        """How many times the arm was told to stop."""
        return len(self.stop_times)

    def stop(self) -> None:
        self.stop_times.append(time.monotonic())
        if self.hang_s and len(self.stop_times) == 1:
            time.sleep(self.hang_s)  # a driver call that hangs (the first stop only)
        if self.fail is not None:
            raise self.fail
        self.inner.stop()


def spying(
    spy: dict[str, StopSpy],
    wrap: Callable[[Parts], None] | None = None,
    *,
    build: Callable[[Config], Parts] = build_parts,
    **kwargs: Any,
) -> Callable[[Config], Parts]:
    """A parts factory: the real parts, `wrap` applied (a fault injected), the robot spied on."""

    def factory(config: Config) -> Parts:
        parts = build(config)
        if wrap is not None:
            wrap(parts)
        spy["robot"] = StopSpy(parts.robot, **kwargs)
        parts.robot = spy["robot"]
        return parts

    return factory


async def collect(runtime: Runtime, request: str = REQUEST, **kwargs: Any) -> list[Event]:
    events = []
    async for event in runtime.execute(request, **kwargs):
        events.append(event)
    return events


async def run_with_fault(
    config: Config,
    folder: Path,
    wrap: Callable[[Parts], None] | None = None,
    *,
    request: str = REQUEST,
    timeout_s: float = 90,
) -> tuple[list[Event], StopSpy]:
    """One episode through `Runtime.execute` with a run folder, `wrap` injecting the fault."""
    spy: dict[str, StopSpy] = {}
    async with Runtime(config, parts_factory=spying(spy, wrap)) as runtime:
        with anyio.fail_after(timeout_s):
            events = await collect(runtime, request, run_dir=folder)
    return events, spy["robot"]


def stop_index(events: list[Event], t_stop: float) -> int:
    """The index of the first event sent after the stop call (so: how many came before it)."""
    return sum(1 for e in events if e.t < t_stop)


def stopped_before(events: list[Event], spy: StopSpy, last: int = 1) -> None:
    """(b): the episode's stop came after every step and before the last `last` events."""
    assert spy.stop_times, "the arm was never told to stop"
    assert stop_index(events, spy.stop_times[0]) == len(events) - last
    steps = [e for e in events if isinstance(e, Step)]
    assert not steps or steps[-1].t < spy.stop_times[0]


def only_fault(events: list[Event], where: str, *, fatal: bool) -> Fault:
    """(a): exactly one Fault, from `where`, its message one line."""
    faults = [e for e in events if isinstance(e, Fault)]
    assert len(faults) == 1, faults
    assert (faults[0].where, faults[0].fatal) == (where, fatal), faults[0]
    assert "\n" not in faults[0].message
    return faults[0]


def fatal_fault(events: list[Event], spy: StopSpy, where: str) -> Fault:
    """(a) and (b) for an episode a fault ended: the Fault, the arm stopped, then Finished."""
    fault, finished = events[-2], events[-1]
    assert isinstance(finished, Finished), finished
    assert fault is only_fault(events, where, fatal=True)
    outcome = finished.outcome
    assert (outcome.status, outcome.success, outcome.stop) == ("fault", False, "ok"), outcome
    assert fault.message in outcome.reason
    stopped_before(events, spy)
    return fault


def read_events(folder: Path) -> list[Event]:
    """Every event of a run folder's log."""
    return [parse_event(line) for line in (folder / "events.jsonl").read_text().splitlines()]


def stopped_in_log(stderr: str) -> None:
    """(b) for a `python -m agent run` subprocess logging JSON at info: "robot stopped" came
    before "episode finished" (the episode's own stop, not the one at close)."""
    logged = [json.loads(line)["event"] for line in stderr.splitlines() if line.startswith("{")]
    assert "robot stopped" in logged, stderr[-2000:]
    assert logged.index("robot stopped") < logged.index("episode finished")


def video_frames(path: Path) -> int:
    """Frames ffmpeg can decode from `path`; raises on a truncated or broken file."""
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(path))
    next(reader)  # the metadata
    return sum(1 for _ in reader)


def check_run_folder(folder: Path, events: list[Event] | None = None) -> dict[str, Any]:
    """(c): the log parses to its last line, the summary holds the outcome, the video plays."""
    logged = read_events(folder)  # every line, the last one included
    if events is not None:
        assert logged == events
    summary = json.loads((folder / "summary.json").read_text())
    if logged and isinstance(logged[-1], Finished):
        assert Outcome.model_validate(summary["outcome"]) == logged[-1].outcome
    video = folder / "video.mp4"
    if video.exists():
        assert summary["files"]["video"] == "video.mp4"
        assert video_frames(video) == summary["video_frames"] > 0
    else:
        assert summary["files"]["video"] is None
    assert not list(folder.glob(".*.tmp")), "no temporary file is left behind"
    return summary


def agent_proc(
    *args: str, cwd: Path = ROOT, env: dict[str, str | None] | None = None
) -> subprocess.Popen[str]:
    """`python -m agent ARGS` from `cwd`, offscreen; `env` sets (None: unsets) variables."""
    full = {**os.environ, "MUJOCO_GL": "egl", "PYTHONPATH": str(ROOT)}
    for key, value in (env or {}).items():
        if value is None:
            full.pop(key, None)
        else:
            full[key] = value
    return subprocess.Popen(
        [sys.executable, "-m", "agent", *args],
        cwd=cwd,
        env=full,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_until_stepping(cwd: Path, steps: int = 5, within_s: float = 150) -> subprocess.Popen[str]:
    """`python -m agent run REQUEST` in `cwd` (the scripted expert, small images, JSON logs at
    info), returned once the arm is moving: the run's event log holds `steps` steps."""
    proc = agent_proc(
        "run",
        REQUEST,
        "--set", "models.policy=expert",
        "--set", "sim.image_width=96",
        "--set", "sim.image_height=96",
        "--log-json", "--log-level", "info", "--quiet",
        cwd=cwd,
    )  # fmt: skip
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        logs = list((cwd / "runs").glob("*/events.jsonl"))
        if logs and logs[0].read_text().count('"kind":"step"') >= steps:
            return proc
        if proc.poll() is not None:
            raise AssertionError(f"the run ended before stepping: {proc.communicate()[1][-2000:]}")
        time.sleep(0.2)
    proc.kill()
    raise AssertionError(f"the run did not take {steps} steps within {within_s} s")
