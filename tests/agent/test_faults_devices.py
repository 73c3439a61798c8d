"""Faults through the Runtime (issue 12, section 2, scenarios 1-4): cameras that hang, raise or
disconnect mid-episode, and an arm that faults or loses its link.

Every test checks (a) the cause in one line, (b) the arm told to stop before the episode's events
ended, (c) a complete run folder: see tests/faults_helpers.py. The cameras are the real sim cameras
broken at their read (or a vendor SDK's grab, under the real capture thread); the lost link is a
real franky-sim server killed under the real Franka driver.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio
import pytest
from structlog.testing import capture_logs

from agent import Fault, Runtime, Step
from agent.backends import Parts, build_parts
from drivers.base import CameraError, Frame
from drivers.cameras.capture import CameraSettings, RawFrame, StreamingCamera
from tests.conftest import make_config
from tests.faults_helpers import (
    ROOT,
    VIDEO,
    StopSpy,
    check_run_folder,
    collect,
    fatal_fault,
    read_events,
    run_with_fault,
    stopped_before,
)


# ------------------------------------------------------------------------ cameras (scenarios 1, 2)
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


# ------------------------------------------------------------------------ the arm (scenarios 3, 4)
FRANKY = ("franky", "franky_sim", "mujoco")
needs_franky_sim = pytest.mark.skipif(
    not all(importlib.util.find_spec(m) for m in FRANKY),
    reason="needs franky-control, franky-sim and mujoco",
)
#: one loopback address per case, clear of test_franka.py (.1, .2) and test_franka_sim_run (.3)
HOSTS = {"abort": "127.0.0.4", "kill": "127.0.0.5"}
FAULT_AT_MOVE = 8


class BreakingArm:
    """The real Franka driver (franky-control's libfranka) against the real franky-sim; on the
    `FAULT_AT_MOVE`-th move something happens to the controller before the move goes out:
    "abort": the running motion is stopped from a second command path (franky's own
    `Robot.stop`, as a reflex or the user stop button aborts it), so the driver meets a real
    ControlException; "kill": franky-sim's server dies as a killed process would (its physics
    thread stops and its sockets close), so libfranka loses the link for real. Notes the time of
    every `stop` as `StopSpy` does."""

    def __init__(self, inner: Any, world: Any, how: str) -> None:
        self.inner, self.world, self.how, self.moves = inner, world, how, 0
        self.stop_times: list[float] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def move(self, delta: Any, gripper_closed: bool) -> None:
        self.moves += 1
        if self.moves >= FAULT_AT_MOVE and self.how == "abort" and not self.inner.faults:
            # aborted in flight: the driver's next call meets the exception (stopping before the
            # move aborted nothing when the last step's motion had ended, as it did on a loaded
            # machine). Until the driver has recorded the fault, every later move is aborted too:
            # a stop that lands before franky-sim's motion thread started the motion aborts
            # nothing either (once in a fresh CI run: no Fault at all)
            self.inner.move(delta, gripper_closed)
            self.inner._robot.stop()
            time.sleep(0.05)
            return
        if self.moves == FAULT_AT_MOVE:
            kill_server(self.world)
        self.inner.move(delta, gripper_closed)

    def stop(self) -> None:
        self.stop_times.append(time.monotonic())
        self.inner.stop()


def kill_server(world: Any) -> None:
    """What a SIGKILL of a franky-sim process does to its clients, inside this process (the
    franka-sim profile serves franky-sim from the runtime's own process): physics stops, so no
    more UDP state arrives, and every socket closes, the listening ones and the arm's and the
    hand's client connections (the kernel closes them all for a killed process; with those left
    open, the link goes silent instead: tests/drivers/test_franka.py covers that). The MuJoCo
    model stays, so that the sim cameras go on rendering the last state."""
    world._stop.set()
    world._thread.join(5)
    world._server.cleanup()  # the listening sockets
    for arm in world._server.robot_servers:
        for server in (arm, arm.gripper_server):
            if server is not None:
                server.reset_state()  # the client connections


def run_arm_fault(how: str, folder: str, runs: str) -> None:
    """The child process's episode: franka-sim with a `BreakingArm`; writes the stop times and
    the runtime's health before and after to `folder`/seen.json and leaves without joining
    libfranka's abandoned threads."""
    from agent import load_config
    from tests.conftest import SMALL

    config = load_config(
        "franka-sim",
        [*SMALL, VIDEO, f'output.runs_dir="{runs}"', f'franka.host="{HOSTS[how]}"'],
    )
    arm: dict[str, BreakingArm] = {}

    def factory(config: Any) -> Parts:
        parts = build_parts(config)
        arm["robot"] = BreakingArm(parts.robot, parts.judge.world, how)  # type: ignore[union-attr]
        parts.robot = arm["robot"]  # type: ignore[assignment]
        return parts

    async def episode() -> None:
        async with Runtime(config, parts_factory=factory) as runtime:
            health = runtime.health()  # before: fit
            with anyio.fail_after(90):
                await collect(runtime, run_dir=Path(folder))
            seen = {"stops": arm["robot"].stop_times, "health": [health, runtime.health()]}
            Path(folder, "seen.json").write_text(json.dumps(seen))

    anyio.run(episode)
    os._exit(0)  # libfranka threads of the abandoned calls may still be blocked: do not join them


@needs_franky_sim
@pytest.mark.parametrize("how", ["abort", "kill"])
def test_an_arm_that_faults_mid_episode_ends_it_and_a_lost_link_is_no_safe_stop(
    tmp_path: Path, how: str
) -> None:
    """Scenarios 3 and 4 with the real driver against franky-sim (profile franka-sim): the 8th
    move meets an aborted motion (or a later one, if franky-sim had not started that motion when
    it was stopped; the driver recovers the arm, holding) or a killed server. One
    Fault from the command loop with the driver's message; the stop is tried before Finished;
    with the link gone it is reported failed (a Fault, and Outcome.stop), never "robot stopped",
    and the runtime's health (a service's /health) names the lost link; the run folder is
    whole. In a child process: the calls libfranka abandons leave threads behind that upset
    later realtime tests (see tests/drivers/test_franka.py)."""
    folder = tmp_path / "run"
    code = (
        "import sys; from tests.agent.test_faults_devices import run_arm_fault; "
        "run_arm_fault(*sys.argv[1:])"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, how, str(folder), str(tmp_path / "runs")],
        capture_output=True, text=True, timeout=240, cwd=ROOT,
        env={**os.environ, "MUJOCO_GL": "egl", "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    events = read_events(folder)
    seen = json.loads((folder / "seen.json").read_text())
    spy = StopSpy(None)
    spy.stop_times = seen["stops"]
    health_before, health_after = seen["health"]
    assert health_before == []
    assert any(isinstance(e, Step) for e in events), "the fault came mid-episode"
    if how == "abort":
        message = fatal_fault(events, spy, "command").message
        assert "motion aborted" in message and "recovered and holds its pose" in message
    else:
        faults = [e for e in events if isinstance(e, Fault)]
        assert [(f.where, f.fatal) for f in faults] == [("command", True), ("robot", True)]
        assert faults[0].message.startswith("lost the connection"), faults[0].message
        assert faults[1].message.startswith("safe stop failed: the link to the arm is lost")
        outcome = events[-1].outcome  # type: ignore[attr-defined]
        assert outcome.status == "fault"
        assert outcome.stop.startswith("failed: the link to the arm is lost"), outcome.stop
        stopped_before(events, spy, last=2)
        # what a service's /health reports from now on, instead of "ok"
        assert len(health_after) == 1 and health_after[0].startswith("robot: "), health_after
    if how == "abort":
        assert health_after == []  # recovered: the next task may run
    check_run_folder(folder, events)


# ------------------------------------------------------------------------ closing
class StuckOnClose:
    """The real sim camera whose close never returns until `released` (an SDK stuck on a device
    that stopped answering); everything else passes through."""

    def __init__(self, inner: Any, released: threading.Event) -> None:
        self.inner, self.released = inner, released

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def close(self) -> None:
        self.released.wait(60)
        self.inner.close()


def test_a_device_stuck_closing_is_abandoned_and_the_rest_still_close(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The runtime closes each device with a deadline (`agent.backends.CLOSE_TIMEOUT_S`, 0.5 s
    here): a camera whose close hangs is logged and left, the other camera and the simulated
    world still close, and leaving the runtime does not hang."""
    monkeypatch.setattr("agent.backends.CLOSE_TIMEOUT_S", 0.5)
    config = make_config(tmp_path)
    released = threading.Event()
    parts: dict[str, Parts] = {}

    def factory(config: Any) -> Parts:
        built = parts["built"] = build_parts(config)
        built.cameras["front"] = StuckOnClose(built.cameras["front"], released)  # type: ignore[assignment]
        return built

    async def open_and_close() -> float:
        async with Runtime(config, parts_factory=factory):
            start = time.monotonic()
        return time.monotonic() - start

    try:
        with capture_logs() as logs:
            took = anyio.run(open_and_close)
    finally:
        released.set()
    failed = [e for e in logs if e["event"] == "close failed"]
    assert [e["device"] for e in failed] == ["camera front"], logs
    assert "did not return within 0.5 s" in failed[0]["error"]
    assert took < 5.0
    side = parts["built"].cameras["side"]
    assert side._thread is None, "the other camera was closed"  # type: ignore[attr-defined]
    world = parts["built"].judge.world  # type: ignore[union-attr]
    assert not world.realtime_running, "the world was closed"
