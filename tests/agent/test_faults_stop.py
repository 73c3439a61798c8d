"""Faults through the Runtime (issue 12, section 2): how an episode is stopped from outside
(SIGTERM, Ctrl-C, `runtime.cancel`) and a safe stop that itself fails or hangs.

Every test checks (a) the cause in one line, (b) the arm told to stop before the episode's events
ended, (c) a complete run folder: see tests/faults_helpers.py for the checks. Faults are injected at
the narrowest boundary (here: the robot's `stop`, raising or hanging); the rest is real.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import anyio
import pytest

from agent import Fault, Finished, Runtime, Step
from agent.events import Event
from drivers.base import RobotError
from tests.conftest import make_config
from tests.faults_helpers import (
    REQUEST,
    VIDEO,
    StopSpy,
    check_run_folder,
    collect,
    read_events,
    run_until_stepping,
    spying,
    stopped_before,
)

# ------------------------------------------------------------------------------ SIGTERM and cancel
SIGNALS = {  # signal -> (exit code, the last line, the outcome's reason (None: not checked))
    signal.SIGTERM: (143, "error: terminated by SIGTERM", "terminated by SIGTERM"),
    signal.SIGINT: (130, "error: interrupted", None),
}


@pytest.mark.parametrize("sig", list(SIGNALS), ids=["SIGTERM", "SIGINT"])
def test_a_signal_ends_a_cli_run_with_the_arm_stopped(tmp_path: Path, sig: int) -> None:
    """Ctrl-C (SIGINT), and `docker stop` / systemd (SIGTERM), handled as Ctrl-C is: the episode
    is cancelled, the arm stopped, the run folder finished (summary, playable video), and the
    process exits 130 / 143 with one clear last line."""
    code, last_line, reason = SIGNALS[sig]
    proc = run_until_stepping(tmp_path)
    runs = tmp_path / "runs"
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=90)
    assert proc.returncode == code, err[-3000:]
    assert "Traceback" not in err
    # (a) one clear last line, and the summary names the cause
    assert err.strip().splitlines()[-1] == (
        f"{last_line}: the arm was stopped and the drivers closed"
    )
    folder = next(runs.iterdir())
    events = read_events(folder)
    assert isinstance(events[-1], Finished)
    outcome = events[-1].outcome
    assert outcome.status == "cancelled"
    if reason is not None:
        assert outcome.reason == reason and out.startswith(f"CANCELLED: {reason}")
    assert not any(isinstance(e, Fault) for e in events)
    assert sum(isinstance(e, Step) for e in events) >= 5
    # (b) the arm was stopped before the last event: Finished carries the stop's result, and the
    # log says "robot stopped" before "episode finished" (and both before the drivers closed)
    assert outcome.stop == "ok"
    logged = [json.loads(line)["event"] for line in err.splitlines() if line.startswith("{")]
    assert "robot stopped" in logged
    stopped = logged.index("robot stopped")
    assert stopped < logged.index("episode finished") < logged.index("runtime closed")
    # (c) the run folder is complete, the video playable
    summary = check_run_folder(folder, events)
    assert summary["video_frames"] > 0 and summary["recording_error"] is None


@pytest.mark.asyncio
async def test_cancel_with_a_reason_stops_the_arm_before_finished(tmp_path: Path) -> None:
    """What SIGTERM does inside the CLI, through the API: `runtime.cancel(reason)`."""
    config = make_config(tmp_path, VIDEO)
    spy: dict[str, StopSpy] = {}
    folder = tmp_path / "run"
    events: list[Event] = []
    async with Runtime(config, parts_factory=spying(spy)) as runtime:
        with anyio.fail_after(90):
            async for event in runtime.execute(REQUEST, run_dir=folder):
                events.append(event)
                if isinstance(event, Step) and event.index == 6:
                    assert runtime.cancel("terminated by SIGTERM")
        assert not runtime.busy
    outcome = events[-1].outcome  # type: ignore[attr-defined]
    assert (outcome.status, outcome.reason, outcome.stop) == (
        "cancelled",
        "terminated by SIGTERM",
        "ok",
    )
    stops = spy["robot"].stop_times
    assert len(stops) == 2  # the episode's, then the runtime's close
    stopped_before(events, spy["robot"])  # after every step, before Finished
    check_run_folder(folder, events)


# -------------------------------------------------------------------------- a safe stop that fails
@pytest.mark.asyncio
async def test_a_safe_stop_that_raises_reaches_the_outcome_and_the_events(tmp_path: Path) -> None:
    config = make_config(tmp_path, VIDEO, "runtime.max_steps=8")
    spy: dict[str, StopSpy] = {}
    build = spying(spy, fail=RobotError("libfranka: command rejected (reflex mode)"))
    folder = tmp_path / "run"
    async with Runtime(config, parts_factory=build) as runtime:
        with anyio.fail_after(90):
            events = await collect(runtime, run_dir=folder)
    fault, finished = events[-2], events[-1]
    assert isinstance(fault, Fault) and isinstance(finished, Finished)
    assert (fault.where, fault.fatal) == ("robot", True)
    assert fault.message == "safe stop failed: libfranka: command rejected (reflex mode)"
    outcome = finished.outcome
    assert outcome.stop == "failed: libfranka: command rejected (reflex mode)"
    assert outcome.status == "fault"
    assert (
        outcome.reason.startswith("safe stop failed: libfranka") and "step budget" in outcome.reason
    )
    # the stop was tried after the last step and before the Fault and Finished that report it
    stopped_before(events, spy["robot"], last=2)
    summary = check_run_folder(folder, events)
    assert summary["outcome"]["stop"].startswith("failed: ")


@pytest.mark.asyncio
async def test_a_safe_stop_that_hangs_times_out_into_the_outcome(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stop call that hangs is abandoned after STOP_TIMEOUT_S (0.5 s here), and says so."""
    monkeypatch.setattr("agent.runtime.STOP_TIMEOUT_S", 0.5)
    config = make_config(tmp_path, "runtime.max_steps=8")
    spy: dict[str, StopSpy] = {}
    folder = tmp_path / "run"
    async with Runtime(config, parts_factory=spying(spy, hang_s=3.0)) as runtime:
        with anyio.fail_after(90):
            events = await collect(runtime, run_dir=folder)
        finished = events[-1]
        assert isinstance(finished, Finished)
        assert finished.outcome.stop == "timed out after 0.5 s"
        assert finished.outcome.status == "fault"
        assert events[-2].message == "safe stop timed out after 0.5 s"  # type: ignore[attr-defined]
        t_stop = spy["robot"].stop_times[0]
        stopped_before(events, spy["robot"], last=2)
        assert finished.t - t_stop < 2.0, "bounded: the hung call was not waited for"
    check_run_folder(folder, events)
