"""Faults through the Runtime (issue 12, section 2): each ends with the arm stopped first and the
run folder intact.

Every test checks three things:
(a) the episode ends with a Fault or Finished event naming the cause in one line;
(b) the arm was told to stop BEFORE the episode's events ended: a wrapper over the real sim robot
    (`StopSpy`) notes when `stop` was called, and the event index of that moment is checked (events
    carry the runtime's clock, `time.monotonic()` under asyncio); in a `python -m agent run`
    subprocess, `Outcome.stop == "ok"` in the last event (it is set by the stop that precedes
    `Finished`) and the order of the log lines stand in for the wrapper;
(c) the run folder is complete: events.jsonl parses to its last line, summary.json holds the
    outcome, and the video is playable (ffmpeg, through imageio-ffmpeg, reads every frame the
    summary counts) or absent, never truncated.

Faults are injected at the narrowest boundary: the robot's `stop` (raising, hanging), the
recorder's one write to its event log (`RunRecorder._append`, raising ENOSPC as a full disk
would), the video encoder's `add`, and `json.dump` for the atomic writes. The rest is real.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import pytest

from agent import Fault, Finished, RunFolderError, Runtime, Step
from agent.backends import Parts
from agent.events import Event, Outcome
from agent.recording import RunRecorder, VideoWriter, new_run_folder, write_json_atomic
from drivers.base import CameraError, Frame, RobotError
from drivers.cameras.capture import CameraSettings, RawFrame, StreamingCamera
from tests.conftest import make_config
from tests.faults_helpers import (
    REQUEST,
    StopSpy,
    agent_proc,
    check_run_folder,
    collect,
    fatal_fault,
    only_fault,
    read_events,
    run_with_fault,
    spying,
    stopped_before,
    stopped_in_log,
)
from tests.models.test_reasoning_openai import ChatServer, Reply, completion, error

VIDEO = "output.video=true"


# --------------------------------------------------------------------- 1. SIGTERM
def test_sigterm_ends_a_cli_run_like_ctrl_c(tmp_path: Path) -> None:
    """`docker stop` / systemd: SIGTERM cancels the episode, stops the arm, finishes the run folder
    (summary, playable video) and exits 143 with one clear last line."""
    proc = agent_proc(
        "run",
        REQUEST,
        "--set", "models.policy=expert",
        "--set", "sim.image_width=96",
        "--set", "sim.image_height=96",
        "--log-json", "--log-level", "info", "--quiet",
        cwd=tmp_path,
    )  # fmt: skip
    runs = tmp_path / "runs"
    deadline = time.monotonic() + 150
    while time.monotonic() < deadline:  # until the arm is moving: steps in the event log
        logs = list(runs.glob("*/events.jsonl"))
        if logs and logs[0].read_text().count('"kind":"step"') >= 5:
            break
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("the run never started stepping")
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=90)
    assert proc.returncode == 143, err[-3000:]
    assert "Traceback" not in err
    # (a) one clear last line, and the summary names the cause
    assert err.strip().splitlines()[-1] == (
        "error: terminated by SIGTERM: the arm was stopped and the drivers closed"
    )
    assert out.startswith("CANCELLED: terminated by SIGTERM")
    folder = next(runs.iterdir())
    events = read_events(folder)
    assert isinstance(events[-1], Finished)
    outcome = events[-1].outcome
    assert (outcome.status, outcome.reason) == ("cancelled", "terminated by SIGTERM")
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


# --------------------------------------------------------------------- 2. unwritable run folder
@pytest.mark.parametrize("where", ["a file", "under a file", "/proc"])
def test_a_runs_dir_that_cannot_be_written_is_one_line_and_exit_2(
    tmp_path: Path, where: str
) -> None:
    """Checked before the runtime starts: nothing moves, one line, exit 2, no folder left."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    runs_dir = {
        "a file": blocker,
        "under a file": blocker / "runs",
        "/proc": Path("/proc/agent-runs-test"),
    }[where]
    started = time.monotonic()
    proc = agent_proc("run", REQUEST, "--runs-dir", str(runs_dir), cwd=tmp_path)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot write the run folder "), err
    assert "Traceback" not in err and "ExceptionGroup" not in err
    assert not out
    assert time.monotonic() - started < 60  # refused before loading the world and models
    assert blocker.read_text() == "x"


@pytest.mark.asyncio
async def test_an_unwritable_run_dir_is_refused_before_anything_moves(tmp_path: Path) -> None:
    """execute() checks the run folder before the world is touched; the error leaves `async with
    Runtime` as itself (not an ExceptionGroup), and a folder holding a run is not reused."""
    config = make_config(tmp_path, "runtime.max_steps=5")
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    spy: dict[str, StopSpy] = {}
    async with Runtime(config, parts_factory=spying(spy)) as runtime:
        before = runtime.parts.robot.state().ee_pos.copy()
        with pytest.raises(RunFolderError, match=r"cannot write the run folder .*Not a directory"):
            await runtime.execute(REQUEST, run_dir=blocker / "run").__anext__()
        assert not runtime.busy and spy["robot"].stop_times == []
        assert np.allclose(runtime.parts.robot.state().ee_pos, before, atol=1e-3)
        # the runtime goes on: a run, then the same folder again, refused before anything moves
        folder = tmp_path / "run"
        events = await collect(runtime, run_dir=folder)
        assert events[-1].outcome.steps == 5  # type: ignore[attr-defined]
        with pytest.raises(RunFolderError, match="already holds a run"):
            await runtime.execute(REQUEST, run_dir=folder).__anext__()
        assert not runtime.busy
        check_run_folder(folder, events)
    with pytest.raises(RunFolderError):  # uncaught in the body: it leaves as itself
        async with Runtime(config) as runtime:
            await collect(runtime, run_dir=blocker / "run")


def _recording_fault_went_on(events: list[Event], spy: StopSpy, cause: str) -> Outcome:
    """A non-fatal sink Fault naming `cause`; the episode ran 20 steps, then the arm stopped."""
    assert cause in only_fault(events, "record", fatal=False).message
    outcome = events[-1].outcome  # type: ignore[attr-defined]
    assert outcome.status == "failure" and "step budget" in outcome.reason
    assert outcome.steps == 20 and outcome.stop == "ok"
    stopped_before(events, spy)
    return outcome


async def _recorded_episode(tmp_path: Path, folder: Path) -> tuple[list[Any], dict[str, StopSpy]]:
    """A 20-step recorded episode (video on) into `folder`, with the arm's stop calls spied."""
    config = make_config(tmp_path, VIDEO, "runtime.max_steps=20")
    spy: dict[str, StopSpy] = {}
    async with Runtime(config, parts_factory=spying(spy)) as runtime:
        with anyio.fail_after(90):
            events = await collect(runtime, run_dir=folder)
    return events, spy


@pytest.mark.asyncio
async def test_a_full_disk_mid_run_is_a_fault_and_the_episode_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk, simulated at the recorder's one write to its event log (`_append` raises
    OSError(ENOSPC) from the 12th event on): a non-fatal Fault, recording stops, the episode runs
    to its end with the arm stopped, and what was written stays whole."""
    written = 11
    real_append = RunRecorder._append
    calls = {"n": 0}

    def append(self: RunRecorder, data: bytes) -> None:
        calls["n"] += 1
        if calls["n"] > written:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_append(self, data)

    monkeypatch.setattr(RunRecorder, "_append", append)
    folder = tmp_path / "run"
    events, spy = await _recorded_episode(tmp_path, folder)
    outcome = _recording_fault_went_on(events, spy["robot"], "No space left on device")
    # the log holds the first 11 events, each whole; the summary the outcome and the error
    summary = check_run_folder(folder)
    assert read_events(folder) == events[:written]
    assert Outcome.model_validate(summary["outcome"]) == outcome
    assert "No space left on device" in summary["recording_error"]


@pytest.mark.asyncio
async def test_a_failing_video_encoder_is_a_fault_and_the_episode_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The video sink fails after 4 frames (`VideoWriter.add` raises BrokenPipeError, as a dead
    encoder's pipe does): a non-fatal Fault, the events go on being logged, the video keeps its
    4 frames, playable."""
    real_add = VideoWriter.add

    def add(self: VideoWriter, image: Any) -> None:
        if self.frames >= 4:
            raise BrokenPipeError(errno.EPIPE, os.strerror(errno.EPIPE))
        real_add(self, image)

    monkeypatch.setattr(VideoWriter, "add", add)
    folder = tmp_path / "run"
    events, spy = await _recorded_episode(tmp_path, folder)
    _recording_fault_went_on(events, spy["robot"], "Broken pipe")
    summary = check_run_folder(folder, events)
    assert summary["video_frames"] == 4 and "Broken pipe" in summary["recording_error"]


# --------------------------------------------------------------------- 3. a safe stop that fails
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


# --------------------------------------------------------------------- 4. run folders
def test_two_runs_in_the_same_second_get_their_own_folders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The folder is claimed when it is named: 12 threads at once, one second, 12 folders."""
    monkeypatch.setattr("agent.recording._stamp", lambda: "20260101-120000")
    folders: list[Path] = []
    barrier = threading.Barrier(12)

    def claim() -> None:
        barrier.wait()
        folders.append(new_run_folder(tmp_path / "runs", REQUEST))

    threads = [threading.Thread(target=claim) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(folders)) == 12 and all(f.is_dir() for f in folders)
    names = sorted(f.name for f in folders)
    assert "20260101-120000-i-spilled-the-milk" in names
    assert "20260101-120000-i-spilled-the-milk-12" in names


def test_summary_and_config_are_written_whole_or_not_at_all(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crash in the middle of writing (json.dump writes half, then fails) leaves the old file,
    or none, and no temporary file."""
    real_dump = json.dump

    def dump_half_then_fail(obj: Any, fp: Any, **kwargs: Any) -> None:
        fp.write(json.dumps(obj, **kwargs)[:20])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    path = tmp_path / "summary.json"
    write_json_atomic(path, {"outcome": "old"})
    monkeypatch.setattr("agent.recording.json.dump", dump_half_then_fail)
    with pytest.raises(OSError, match="No space left"):
        write_json_atomic(path, {"outcome": "new"})
    assert json.loads(path.read_text()) == {"outcome": "old"}
    with pytest.raises(OSError):
        write_json_atomic(tmp_path / "absent.json", {"x": 1})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]

    # config.json: the run folder is refused whole (no config, no event log begun)
    config = make_config(tmp_path)
    with pytest.raises(RunFolderError, match="No space left"):
        RunRecorder(tmp_path / "run", config)
    assert list((tmp_path / "run").iterdir()) == []

    # summary.json: finish() reports the failure in the log and does not raise
    monkeypatch.setattr("agent.recording.json.dump", real_dump)
    recorder = RunRecorder(tmp_path / "run", config)
    monkeypatch.setattr("agent.recording.json.dump", dump_half_then_fail)
    recorder.finish(Outcome(status="cancelled", success=None, reason="x", stop="ok"))
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["config.json", "events.jsonl"]


# --------------------------------------------------------------------- 5. cameras (scenarios 1, 2)
class BrokenCamera:
    """The real sim camera, delivering `frames` frames, then failing for good as `how` says:
    "hangs" (read never returns: the stage-timeout path), "raises" (a driver without a capture
    thread letting its SDK's own exception out), "disconnects" (CameraError: an unplugged camera).
    A hung read waits on `released`, set when the test ends, so that no thread outlives it."""

    def __init__(self, inner: Any, frames: int, how: str, released: threading.Event) -> None:
        self.inner, self.name, self.left, self.how = inner, inner.name, frames, how
        self.released = released

    def open(self) -> None:
        self.inner.open()

    def close(self) -> None:
        self.inner.close()

    def read(self, timeout: float) -> Any:
        if self.left > 0:
            self.left -= 1
            return self.inner.read(timeout)
        if self.how == "hangs":
            self.released.wait(60)
        time.sleep(0.02)
        if self.how == "raises":
            raise RuntimeError("Frame didn't arrive within 5000")
        raise CameraError(f"camera {self.name!r}: device disconnected")


class SdkSource:
    """A vendor SDK's frame source over the real sim camera, raising mid-stream after `frames`
    grabs as pyrealsense2 does ("Frame didn't arrive"). Drives the real capture thread that the
    RealSense and Kinect drivers share (drivers.cameras.capture), which cannot run against
    hardware here.
    `last` keeps the sim frame for its ground-truth annotations (see SdkCamera)."""

    def __init__(self, camera: Any, frames: int) -> None:
        self.camera, self.left = camera, frames
        self.last: Any = None

    def start(self) -> None:
        self.camera.open()

    def grab(self, timeout: float) -> RawFrame | None:
        if self.left <= 0:
            raise RuntimeError("Frame didn't arrive within 5000")
        try:
            frame = self.camera.read(max(timeout, 1.0))  # the sim renders at 10 fps
        except CameraError:
            return None
        self.left -= 1
        self.last = frame
        return RawFrame(rgb=frame.rgb)

    def reset(self) -> None:
        pass  # a hardware reset that does not bring the stream back

    def stop(self) -> None:
        self.camera.close()


class SdkCamera(StreamingCamera):
    """A real camera driver's shape over `SdkSource`. Its frames get the sim's ground-truth
    segmentation back (no SDK delivers one), which the sim's ground-truth detector reads."""

    def __init__(self, inner: Any, frames: int) -> None:
        config = CameraSettings(max_age_s=0.5, stall_timeout_s=0.25, max_resets=0, poll_s=0.02)
        super().__init__(inner.name, config)
        self.inner, self.frames = inner, frames

    def _make_source(self) -> SdkSource:
        return SdkSource(self.inner, self.frames)

    def read(self, timeout: float) -> Frame:
        frame = super().read(timeout)
        last = self._source.last  # type: ignore[union-attr]
        return replace(frame, segmentation=last.segmentation, labels=last.labels)


CAMERA_FAULTS = {  # how the camera breaks -> (camera, what the fault's message says)
    "hangs": ("front", "camera 'front' failed 2 times in a row: camera read did not finish"),
    "raises": ("side", "camera 'side' failed 2 times in a row: RuntimeError: Frame didn't arrive"),
    "sdk raises": ("side", "camera 'side' failed 2 times in a row: camera side: stopped deliv"),
    "disconnects": ("side", "camera 'side' failed 2 times in a row: camera 'side': device disc"),
}


@pytest.mark.asyncio
@pytest.mark.parametrize("how", list(CAMERA_FAULTS))
async def test_a_camera_that_fails_mid_episode_is_a_fault_after_the_arm_stopped(
    tmp_path: Path, how: str
) -> None:
    """Scenarios 1 and 2: 20 frames in (the arm moving), a camera hangs, its SDK raises or it
    disconnects for good: the capture gives up after camera_failures reads, the episode ends with
    one Fault naming the camera and why, the arm is stopped before Finished, the folder whole."""
    name, message = CAMERA_FAULTS[how]
    config = make_config(
        tmp_path, VIDEO, "runtime.camera_timeout_s=0.3", "runtime.camera_failures=2"
    )

    released = threading.Event()

    def wrap(parts: Parts) -> None:
        inner = parts.cameras[name]
        if how == "sdk raises":
            parts.cameras[name] = SdkCamera(inner, 20)
        else:
            parts.cameras[name] = BrokenCamera(inner, 20, how, released)

    folder = tmp_path / "run"
    try:
        events, spy = await run_with_fault(config, folder, wrap, timeout_s=60)
    finally:
        released.set()
    assert any(isinstance(e, Step) for e in events), "the fault came mid-episode"
    fault = fatal_fault(events, spy, "perceive")
    assert fault.message.startswith(message), fault.message
    if how != "hangs":
        assert "Frame didn't arrive" in fault.message or "disconnected" in fault.message
    check_run_folder(folder, events)


# --------------------------------------------------------------------- 6. models (scenario 6)
CRASH = "CUDA error: an illegal memory access was encountered"


class CrashingAfter:
    """A real model whose `method` raises on the `n`-th call counted in `calls` (shared by the
    trackers one factory makes): a model crashing mid-episode, e.g. on a GPU fault."""

    def __init__(self, inner: Any, method: str, n: int, calls: list[int]) -> None:
        self.inner, self.method, self.n, self.calls = inner, method, n, calls

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if name != self.method:
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls[0] += 1
            if self.calls[0] >= self.n:
                raise RuntimeError(CRASH)
            return attr(*args, **kwargs)

        return call


def crash_model(model: str, n: int) -> Callable[[Parts], None]:
    """A parts wrapper making `model` crash on its `n`-th call; the rest stays real."""
    calls = [0]

    def wrap(parts: Parts) -> None:
        if model == "policy":
            parts.policy = CrashingAfter(parts.policy, "act", n, calls)  # type: ignore[assignment]
            return
        real = parts.new_pipeline

        def new_pipeline() -> Any:
            pipeline = real()
            if model == "detector":
                pipeline.detector = CrashingAfter(pipeline.detector, "detect", n, calls)
            elif model == "segmenter":
                pipeline.segmenter = CrashingAfter(pipeline.segmenter, "segment", n, calls)
            else:
                factory = pipeline.tracker_factory
                pipeline.tracker_factory = lambda: CrashingAfter(factory(), "update", n, calls)
            return pipeline

        parts.new_pipeline = new_pipeline

    return wrap


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("model", "where"),
    [
        ("detector", "perceive"),
        ("tracker", "perceive"),
        ("segmenter", "perceive"),
        ("policy", "act"),
    ],
)
async def test_a_model_that_crashes_mid_episode_is_a_fault_after_the_arm_stopped(
    tmp_path: Path, model: str, where: str
) -> None:
    """Scenario 6: the detector (run on every frame here, so that it runs mid-episode), a
    tracker, the segmenter or the policy raises after some steps: one Fault from the loop it
    ran in, naming the error, the arm stopped before Finished, the run folder whole.

    The crash comes on the sixth frame whatever the model: per frame of the two views, a model
    is called once per view, and the trackers once per view and target (4 calls). How many
    steps the act loop has sent by then depends on the machine's load (CI once saw 2 before a
    tracker crash on the third frame), so mid-episode means: at least one step went out."""
    every_frame = f"models.detect_every_frame={str(model == 'detector').lower()}"
    config = make_config(tmp_path, VIDEO, every_frame)
    folder = tmp_path / "run"
    calls_per_frame = {"tracker": 4, "policy": 1}.get(model, 2)
    events, spy = await run_with_fault(config, folder, crash_model(model, 6 * calls_per_frame))
    assert any(isinstance(e, Step) for e in events), "the fault came mid-episode"
    fault = fatal_fault(events, spy, where)
    assert fault.message == f"RuntimeError: {CRASH}"
    check_run_folder(folder, events)


# --------------------------------------------------------------------- 7. overrun (scenario 7)
class SlowingPolicy:
    """The real expert, taking `delay_s` per call from its `n`-th call on: a policy that overruns
    its deadline once the episode is under way (a GPU shared with another job, thermal limits)."""

    def __init__(self, inner: Any, n: int, delay_s: float) -> None:
        self.inner, self.n, self.delay_s, self.calls = inner, n, delay_s, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def act(self, observation: Any) -> Any:
        self.calls += 1
        if self.calls >= self.n:
            time.sleep(self.delay_s)
        return self.inner.act(observation)


@pytest.mark.asyncio
async def test_a_policy_that_overruns_after_the_arm_moved_has_its_actions_refused(
    tmp_path: Path,
) -> None:
    """Scenario 7: 6 timely actions move the arm, then each policy call takes 2 s against a
    1 s action deadline: every later action is refused as stale and the arm holds where it
    was; the outcome counts them, the arm is stopped before Finished, the folder whole."""
    config = make_config(tmp_path, "runtime.max_steps=12", "runtime.action_deadline_s=1.0")

    def wrap(parts: Parts) -> None:
        parts.policy = SlowingPolicy(parts.policy, n=7, delay_s=2.0)  # type: ignore[assignment]

    folder = tmp_path / "run"
    events, spy = await run_with_fault(config, folder, wrap)
    steps = [e for e in events if isinstance(e, Step)]
    assert len(steps) == 12
    executed = [s.executed for s in steps]
    assert sum(executed[:6]) >= 4 and executed[6:] == [False] * 6, executed
    moved = np.linalg.norm(np.subtract(steps[5].ee_pos, steps[0].ee_pos))
    assert moved > 0.02, "the arm moved before the overrun"
    held = [s.ee_pos for s in steps[7:]]
    assert np.ptp(np.array(held), axis=0).max() < 0.01, "the arm held while actions were stale"
    outcome = events[-1].outcome  # type: ignore[attr-defined]
    assert (outcome.status, outcome.stop) == ("failure", "ok")
    assert outcome.stale_actions == executed.count(False) >= 6
    assert outcome.latency_ms["act"]["max"] >= 2000
    stopped_before(events, spy)
    check_run_folder(folder, events)


# --------------------------------------------------------------------- 8. the LLM (scenario 5)
LLM_FAULTS = {  # what the server does -> (its replies, settings, what the fault says)
    "times out": (
        [Reply(delay_s=20.0, body=completion("{}"))],
        ["reasoning.timeout_s=2", "reasoning.max_retries=5", "runtime.reason_timeout_s=4"],
        "within the 3 s allowed for reasoning (1 attempt(s), the last: timed out)",
    ),
    "401": ([error(401, "Incorrect API key provided")], [], "authentication failed (HTTP 401)"),
    "429": (
        [Reply(status=429, body=error(429, "quota").body, headers={"retry-after": "0"})],
        ["reasoning.max_retries=1"],
        "rate limited (HTTP 429) at ",
    ),
    "malformed": ([Reply(body=completion("Sure! The sponge."))], [], "answer is not valid JSON"),
}


@pytest.mark.parametrize("how", list(LLM_FAULTS))
def test_an_llm_that_fails_ends_a_cli_run_with_its_own_message(tmp_path: Path, how: str) -> None:
    """Scenario 5 through `python -m agent run` with the openai reasoner against a real HTTP
    server on 127.0.0.1: a timeout (retries that would outlast the runtime's 4 s reasoning
    timeout stop at the reasoner's deadline inside it), a 401, a 429 and an answer that is not
    JSON each end the run with one Fault from the reasoner saying so, not the runtime's generic
    "did not finish"; the arm is stopped before Finished; the run folder is whole."""
    replies, settings, message = LLM_FAULTS[how]
    server = ChatServer()
    server.script = replies
    try:
        overrides = [
            "models.policy=expert",
            'models.reasoner="openai"',
            f'reasoning.base_url="{server.url}"',
            'reasoning.model="test-model"',
            "sim.image_width=96",
            "sim.image_height=96",
            *settings,
        ]
        sets = [arg for override in overrides for arg in ("--set", override)]
        runs = tmp_path / "runs"
        args = ["run", REQUEST, *sets, "--runs-dir", str(runs), "--quiet"]
        args += ["--log-json", "--log-level", "info"]
        proc = agent_proc(*args, cwd=tmp_path, env={"COLUMNS": "500"})  # one line, unwrapped
        out, err = proc.communicate(timeout=120)
    finally:
        server.close()
    assert proc.returncode == 1, err[-3000:]
    assert "Traceback" not in err
    folder = next(runs.iterdir())
    events = read_events(folder)
    fault = only_fault(events, "reasoner", fatal=True)
    assert message in fault.message and "did not finish" not in fault.message, fault.message
    finished = events[-1]
    assert isinstance(finished, Finished) and events[-2] is fault
    assert (finished.outcome.status, finished.outcome.stop) == ("fault", "ok")
    assert f"FAULT: reasoner: {fault.message}" in out.splitlines()
    stopped_in_log(err)
    check_run_folder(folder, events)


# --------------------------------------------------------------------- 9. not in view (scen. 12)
TINY_CATALOG = """
[[object]]
name = "sponge"
split = "seen"
family = "box"
size = [0.09, 0.06, 0.035]
rgb = [0.95, 0.85, 0.15]
mass = 0.03
description = "a yellow rectangular kitchen sponge"

[[object]]
name = "pearl"
split = "seen"
family = "sphere"
size = [0.005]
rgb = [0.9, 0.9, 0.9]
mass = 0.01
description = "a tiny white pearl"
pickable = false
"""


def test_an_object_no_camera_sees_is_exit_code_3(tmp_path: Path) -> None:
    """A real object too small for 96 px views (a 5 mm pearl): the request names it, no camera
    finds it, and `run` says so in its first line and exits 3 ("nothing to do"), the arm told to
    stop before the episode finished, the run folder whole."""
    catalog = tmp_path / "objects.toml"
    catalog.write_text(TINY_CATALOG)
    runs = tmp_path / "runs"
    sets = [
        *("--set", "models.policy=expert", "--set", "sim.image_width=96"),
        *("--set", "sim.image_height=96", "--set", f'sim.catalog="{catalog}"'),
        *("--set", 'sim.objects=["sponge", "pearl"]'),
    ]
    args = ["run", "put the sponge next to the pearl", *sets, "--runs-dir", str(runs), "--quiet"]
    proc = agent_proc(*args, "--log-json", "--log-level", "info", cwd=tmp_path)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 3, err[-3000:]
    assert out.splitlines()[0] == "NOT_FOUND: not found in any camera view (front, side): pearl"
    folder = next(runs.iterdir())
    events = read_events(folder)
    outcome = events[-1].outcome  # type: ignore[attr-defined]
    assert (outcome.status, outcome.steps, outcome.stop) == ("not_found", 0, "ok")
    stopped_in_log(err)
    check_run_folder(folder, events)


# --------------------------------------------------------------------- 10. the arm (scen. 3, 4)
REFLEX = (
    "franka arm at 172.16.0.2: motion aborted (cartesian_reflex); "
    "the arm was recovered and holds its pose"
)
LOST = "libfranka: UDP receive: Timeout"


class FailingArm:
    """The real sim arm, failing on its `n`-th move as the Franka driver (drivers.franka) fails:
    "reflex": the RobotError its fault protocol raises after an aborted motion (the arm recovered,
    holding); "link lost": the RobotError of a lost connection, `link_error` set, every later call
    refused and `stop` returning without reaching the arm, as ArmDriver.stop does then.

    Injected here because franky-sim raises no reflex on request and its server runs inside the
    runtime's process under franka-sim (no process to kill); the driver's own handling of both
    against franky-sim is tested in tests/drivers/test_franka.py."""

    def __init__(self, inner: Any, n: int, how: str) -> None:
        self.inner, self.n, self.how, self.moves = inner, n, how, 0
        self.link_error: str | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def _lost(self, what: str) -> RobotError:
        self.link_error = LOST
        return RobotError(f"lost the connection to the franka arm at 172.16.0.2 {what}: {LOST}")

    def state(self) -> Any:
        if self.link_error:
            raise self._lost("while trying to read the state")
        return self.inner.state()

    def move(self, delta: Any, gripper_closed: bool) -> None:
        self.moves += 1
        if self.link_error or (self.moves >= self.n and self.how == "link lost"):
            raise self._lost("while trying to start a motion")
        if self.moves == self.n:
            self.inner.hold()
            raise RobotError(REFLEX)
        self.inner.move(delta, gripper_closed)

    def hold(self) -> None:
        if self.link_error:
            raise self._lost("while trying to hold")
        self.inner.hold()

    def stop(self) -> None:
        if not self.link_error:
            self.inner.stop()


@pytest.mark.asyncio
@pytest.mark.parametrize("how", ["reflex", "link lost"])
async def test_an_arm_that_faults_mid_episode_ends_it_and_a_lost_link_is_no_safe_stop(
    tmp_path: Path, how: str
) -> None:
    """Scenarios 3 and 4: the 8th move ends in a reflex (the driver recovered the arm) or in a
    lost link. One Fault from the command loop with the driver's message; the stop is tried
    before Finished; with the link gone it is reported failed (a Fault, and Outcome.stop), not
    "robot stopped"; the run folder is whole."""
    config = make_config(tmp_path, VIDEO)

    def wrap(parts: Parts) -> None:
        parts.robot = FailingArm(parts.robot, 8, how)  # type: ignore[assignment]

    folder = tmp_path / "run"
    events, spy = await run_with_fault(config, folder, wrap)
    assert sum(isinstance(e, Step) for e in events) >= 5, "the fault came mid-episode"
    if how == "reflex":
        assert fatal_fault(events, spy, "command").message == REFLEX
    else:
        faults = [e for e in events if isinstance(e, Fault)]
        assert [(f.where, f.fatal) for f in faults] == [("command", True), ("robot", True)]
        assert faults[0].message.startswith("lost the connection") and LOST in faults[0].message
        assert faults[1].message == f"safe stop failed: the link to the arm is lost ({LOST})"
        outcome = events[-1].outcome  # type: ignore[attr-defined]
        assert (
            outcome.status == "fault"
            and outcome.stop == f"failed: the link to the arm is lost ({LOST})"
        )
        stopped_before(events, spy, last=2)
    check_run_folder(folder, events)
