"""The Franka drivers against a real libfranka-protocol server (franky-sim, MuJoCo backend).

Nothing here is mocked: `FrankaRobot` talks to `franky-sim` through franky-control's bundled
libfranka over TCP/UDP, exactly as it would to an FR3. franky-sim does not simulate the arm's
error states (its automatic error recovery always succeeds and it raises no reflexes), so the
fault test aborts the running motion from outside the driver, which makes libfranka raise the same
`ControlException` path a reflex takes. panda-python's bundled libfranka 0.9.2 cannot drive
franky-sim's arm (server v10); its gripper can, and is tested in a separate process.
"""

from __future__ import annotations

import importlib.util
import json
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from drivers.base import Robot, RobotError
from drivers.franka import FrankaConfig, FrankaRobot, GripperConfig, limit_target

_HAVE_SIM = all(importlib.util.find_spec(m) is not None for m in ("franky", "franky_sim"))
needs_sim = pytest.mark.skipif(
    not _HAVE_SIM,
    reason="franky-control and franky-sim are not "
    "installed (pip install franky-control franky-sim)",
)
ROBOT_PORT = 1337


def _wait_for_port(
    host: str, port: int, proc: subprocess.Popen[bytes], timeout: float, log: Callable[[], str]
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"franky-sim exited with {proc.returncode}: {log()[-2000:]}")
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"franky-sim did not listen on {host}:{port} within {timeout} s")


class FrankySim:
    """A `franky-sim -s mujoco` server process bound to one loopback address."""

    def __init__(self, host: str) -> None:
        self.host = host
        exe = Path(sys.executable).with_name("franky-sim")
        command = [str(exe)] if exe.exists() else [sys.executable, "-m", "franky_sim.run_server"]
        # Headless: franky-sim renders nothing without -r, so no OpenGL setup is needed. Its log
        # goes to a file: an unread pipe would fill up and stall the server mid-test.
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the server
        self.proc = subprocess.Popen(
            [*command, "-s", "mujoco", "--hostname", host],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        try:
            _wait_for_port(host, ROBOT_PORT, self.proc, timeout=60, log=self.output)
        except BaseException:
            self.kill()
            raise

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def kill(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()


@pytest.fixture(scope="module")
def sim() -> Iterator[FrankySim]:
    if not _HAVE_SIM:
        pytest.skip("franky-control and franky-sim are not installed")
    server = FrankySim("127.0.0.1")
    yield server
    server.kill()


def _config(host: str, **overrides: object) -> FrankaConfig:
    base: dict[str, object] = {
        "host": host,
        "workspace_low": (0.20, -0.30, 0.10),
        "workspace_high": (0.60, 0.30, 0.70),
        "dynamics_factor": 0.3,
        "max_velocity": 0.3,
        "connect_timeout_s": 20.0,
        "realtime": "ignore",  # franky-sim needs no PREEMPT_RT kernel
    }
    base.update(overrides)
    return FrankaConfig(**base)  # type: ignore[arg-type]


def _child_config(host: str, **overrides: object) -> str:
    """`_config` as JSON for a child process's script, less the gripper (the script sets it)."""
    config = _config(host, **overrides).model_dump()
    return json.dumps({k: v for k, v in config.items() if k != "gripper"}, default=list)


@pytest.fixture
def robot(sim: FrankySim) -> Iterator[FrankaRobot]:
    arm = FrankaRobot(_config(sim.host))
    arm.open()
    arm.home()
    yield arm
    arm.close()


def _v(x: float, y: float, z: float) -> np.ndarray:
    return np.array([x, y, z], dtype=float)


def _settle(arm: FrankaRobot, target: np.ndarray, tol: float = 1e-3, timeout: float = 5.0) -> float:
    """Seconds until the hand is within `tol` of `target` (polling at ~500 Hz)."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if np.linalg.norm(arm.state().ee_pos - target) < tol:
            return time.monotonic() - start
        time.sleep(0.002)
    raise AssertionError(f"hand at {arm.state().ee_pos}, not within {tol} of {target}")


# ------------------------------------------------------------------ without a server
def test_limit_target_clips_step_lead_and_box() -> None:
    """The safety arithmetic alone: step length, lead over the measured hand, workspace box."""
    cfg = FrankaConfig(
        workspace_low=(0.2, -0.3, 0.1), workspace_high=(0.6, 0.3, 0.7), max_step=0.02, max_lead=0.05
    )
    here = np.array([0.4, 0.0, 0.4])
    step = limit_target(here, here, np.array([0.3, 0.0, 0.0]), cfg)
    np.testing.assert_allclose(step, [0.42, 0.0, 0.4])
    ahead = limit_target(here + _v(0.045, 0, 0), here, np.array([0.02, 0.0, 0.0]), cfg)
    np.testing.assert_allclose(ahead, [0.45, 0.0, 0.4])
    edge = limit_target(
        np.array([0.4, 0.0, 0.105]), np.array([0.4, 0.0, 0.105]), np.array([0.0, 0.0, -0.02]), cfg
    )
    np.testing.assert_allclose(edge, [0.4, 0.0, 0.1])
    with pytest.raises(RobotError, match="finite"):
        limit_target(here, here, np.array([np.nan, 0.0, 0.0]), cfg)


def test_config_rejects_unsafe_values() -> None:
    with pytest.raises(ValueError, match="empty workspace"):
        FrankaConfig(workspace_low=(0.5, 0, 0), workspace_high=(0.4, 1, 1))
    with pytest.raises(ValueError, match="dynamics_factor"):
        FrankaConfig(dynamics_factor=1.5)
    with pytest.raises(ValueError, match="realtime"):
        FrankaConfig(realtime="maybe")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="open_width"):
        GripperConfig(open_width=0.0)


def test_commands_before_open_are_refused() -> None:
    arm = FrankaRobot(FrankaConfig(host="127.0.0.1"))
    with pytest.raises(RobotError, match="not open"):
        arm.state()
    arm.stop()  # stop is safe from any state
    arm.close()
    with pytest.raises(RobotError, match="closed"):
        arm.move(np.zeros(3), False)


# ------------------------------------------------------------------ against franky-sim
@needs_sim
def test_state_is_fast_and_complete(robot: FrankaRobot) -> None:
    assert isinstance(robot, Robot)
    times = []
    for _ in range(30):
        t0 = time.perf_counter()
        state = robot.state()
        times.append(time.perf_counter() - t0)
    assert state.ee_pos.shape == (3,) and state.joints.shape == (7,)
    np.testing.assert_allclose(state.ee_pos, [0.307, 0.0, 0.487], atol=0.01)  # the ready pose
    assert 0.0 < state.gripper_width <= 0.081 and state.gripper_closed is False
    median = float(np.median(times))
    print(f"state() median {median * 1e3:.2f} ms, max {max(times) * 1e3:.2f} ms")
    assert median < 0.02  # fast enough for a 30 Hz loop with room to spare


@needs_sim
def test_relative_moves_reach_the_summed_target(robot: FrankaRobot) -> None:
    start = robot.state().ee_pos
    steps = [
        np.array(d)
        for d in ([0.02, 0, 0], [0.02, 0, 0], [0, 0.02, 0], [0, 0, -0.02], [0, -0.01, 0.01])
    ]
    latencies = []
    for step in steps:
        t0 = time.perf_counter()
        robot.move(step, gripper_closed=False)
        latencies.append(time.perf_counter() - t0)
        time.sleep(0.05)  # a 20 Hz command loop
    expected = start + np.sum(steps, axis=0)
    _settle(robot, expected)
    print(f"move() median {np.median(latencies) * 1e3:.2f} ms")
    assert max(latencies) < 0.05  # asynchronous: never waits for the motion


@needs_sim
def test_five_centimetre_move_time(sim: FrankySim) -> None:
    """One 5 cm step with max_step = 5 cm: the time the arm needs at the configured speed."""
    with FrankaRobot(_config(sim.host, max_step=0.05, gripper=GripperConfig(enabled=False))) as arm:
        arm.home()
        start = arm.state().ee_pos
        arm.move(np.array([0.05, 0.0, 0.0]), gripper_closed=False)
        elapsed = _settle(arm, start + _v(0.05, 0, 0))
        print(f"5 cm move settled within 1 mm after {elapsed:.3f} s")
        assert elapsed < 3.0


@needs_sim
def test_limits_clip_big_steps_and_the_workspace(robot: FrankaRobot) -> None:
    start = robot.state().ee_pos
    robot.move(np.array([0.5, 0.0, 0.0]), gripper_closed=False)  # 50 cm asked, 2 cm allowed
    np.testing.assert_allclose(robot.target, start + _v(0.02, 0, 0), atol=1e-9)
    _settle(robot, start + _v(0.02, 0, 0))
    deadline = time.monotonic() + 5
    while robot.target is not None and robot.target[2] > 0.10 and time.monotonic() < deadline:
        robot.move(np.array([0.0, 0.0, -0.02]), gripper_closed=False)  # down through the floor
        time.sleep(0.02)
    robot.move(np.array([0.0, 0.0, -0.02]), gripper_closed=False)
    assert robot.target is not None and robot.target[2] == pytest.approx(0.10)
    _settle(robot, robot.target, timeout=10)


@needs_sim
def test_new_move_preempts_the_previous_one(robot: FrankaRobot) -> None:
    start = robot.state().ee_pos
    robot.move(np.array([0.0, 0.02, 0.0]), gripper_closed=False)
    robot.move(np.array([0.0, -0.02, 0.0]), gripper_closed=False)
    robot.move(np.array([0.0, -0.02, 0.0]), gripper_closed=False)  # net: 2 cm the other way
    ys = []
    t_end = time.monotonic() + 1.5
    while time.monotonic() < t_end:
        ys.append(robot.state().ee_pos[1] - start[1])
        time.sleep(0.005)
    assert max(ys) < 0.01  # never went to the first target
    _settle(robot, start + _v(0, -0.02, 0))


@needs_sim
def test_stop_during_a_motion_holds_and_is_idempotent(robot: FrankaRobot) -> None:
    start = robot.state().ee_pos
    for _ in range(2):
        robot.move(np.array([0.0, 0.02, 0.0]), gripper_closed=False)  # 4 cm away
    time.sleep(0.1)
    robot.stop()
    robot.stop()
    assert robot.stopped
    stopped_at = robot.state().ee_pos
    time.sleep(0.3)
    now = robot.state().ee_pos
    assert np.linalg.norm(now - stopped_at) < 2e-3  # holds
    assert now[1] - start[1] < 0.035  # did not finish the 4 cm
    robot.move(np.array([0.0, 0.0, 0.01]), gripper_closed=False)  # accepted again after stop
    assert not robot.stopped
    _settle(robot, now + _v(0, 0, 0.01))


@needs_sim
def test_gripper_grasp_and_open_never_block_the_loop(robot: FrankaRobot) -> None:
    t0 = time.perf_counter()
    robot.move(np.zeros(3), gripper_closed=True)
    assert time.perf_counter() - t0 < 0.05
    assert robot.state().gripper_closed is True  # the commanded state, at once
    assert robot.wait_gripper(10)
    assert robot.state().gripper_width < 0.01  # the sim closes on nothing: an empty grasp
    robot.move(np.zeros(3), gripper_closed=False)
    assert robot.wait_gripper(10)
    assert robot.state().gripper_width > 0.07


@needs_sim
def test_aborted_motion_is_recovered_held_and_reported(robot: FrankaRobot) -> None:
    """The controller aborts the running motion (here: a stop from a second command path, as the
    user stop or a reflex does); the next command reports it once, the arm holds where it stood,
    and the aborted target is never retried."""
    start = robot.state().ee_pos
    for _ in range(2):
        robot.move(np.array([0.0, 0.02, 0.0]), gripper_closed=False)
    time.sleep(0.1)
    robot._robot.stop()  # the abort comes from outside the driver's own stop()
    time.sleep(0.05)
    with pytest.raises(RobotError, match=r"motion aborted \(ControlException.*recovered"):
        robot.move(np.array([0.0, 0.0, 0.01]), gripper_closed=False)
    assert robot.faults and "preempted" in robot.faults[-1]
    held = robot.state().ee_pos
    assert robot.target is not None and np.linalg.norm(robot.target - held) < 1e-3
    time.sleep(0.3)
    assert np.linalg.norm(robot.state().ee_pos - held) < 2e-3
    assert held[1] - start[1] < 0.035
    robot.move(np.array([0.0, 0.0, 0.01]), gripper_closed=False)  # resumes from where it is
    _settle(robot, held + _v(0, 0, 0.01))


_LOST_CONNECTION_SCRIPT = textwrap.dedent("""
    import json, os, signal, sys, time
    import franky
    import numpy as np
    from drivers.base import RobotError
    from drivers.franka import FrankaConfig, FrankaRobot, GripperConfig

    host, server_pid, config = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
    out = {}
    holder = franky.Robot(host, realtime_config=franky.RealtimeConfig.Ignore)
    try:
        FrankaRobot(FrankaConfig(**{**config, "connect_timeout_s": 1.0})).open()
    except RobotError as exc:
        out["busy"] = str(exc)
    del holder
    time.sleep(0.5)  # the abandoned connect attempt now gets (and drops) the connection
    arm = FrankaRobot(FrankaConfig(**config, gripper=GripperConfig(enabled=False)))
    arm.open()
    arm.move(np.array([0.0, 0.0, 0.01]), gripper_closed=False)
    os.kill(server_pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    try:
        while time.monotonic() < deadline:
            arm.state()
            arm.move(np.zeros(3), gripper_closed=False)
            time.sleep(0.05)
    except RobotError as exc:
        out["lost"] = str(exc)
    try:
        arm.state()
    except RobotError as exc:
        out["after"] = str(exc)
    arm.stop()
    arm.close()
    print(json.dumps(out), flush=True)
    os._exit(0)  # libfranka threads of the abandoned calls may still be blocked: do not join them
""")


@needs_sim
def test_busy_arm_and_lost_connection_raise_robot_error() -> None:
    """A second server, so that killing it leaves the module's server alone. The client runs in a
    process of its own: the calls it abandons leave libfranka threads behind (by design: a
    blocked C++ call cannot be cancelled), and in this process they upset later realtime tests
    (franka-sim's run then failed with Ruckig planner errors when it came after this test)."""
    server = FrankySim("127.0.0.2")
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _LOST_CONNECTION_SCRIPT, server.host, str(server.proc.pid),
             _child_config(server.host)],
            capture_output=True, text=True, timeout=120, cwd=Path(__file__).resolve().parents[2],
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-2000:]
        out = json.loads(proc.stdout.strip().splitlines()[-1])
        assert "did not answer within 1 s" in out["busy"]
        assert "lost the connection" in out["lost"] and "lost the connection" in out["after"]
    finally:
        server.kill()


_SILENT_CONTROLLER_SCRIPT = textwrap.dedent("""
    import json, os, signal, sys, time
    import numpy as np
    from drivers.base import RobotError
    from drivers.franka import FrankaConfig, FrankaRobot, GripperConfig

    server_pid, config, first = int(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]
    arm = FrankaRobot(FrankaConfig(**config, gripper=GripperConfig(enabled=False)))
    arm.open()
    send = arm._send

    def send_to_a_frozen_controller(target):
        os.kill(server_pid, signal.SIGSTOP)
        send(target)

    arm._send = send_to_a_frozen_controller
    arm.move(np.array([0.0, 0.0, 0.01]), gripper_closed=False)
    out = {}
    t0 = time.monotonic()
    if first == "state":  # the command loop's next reads
        try:
            while time.monotonic() - t0 < 10:
                arm.state()
                time.sleep(0.05)
        except RobotError as exc:
            out["state_error"] = str(exc)
        out["state_s"] = time.monotonic() - t0
        t0 = time.monotonic()
    arm.stop()
    out["stop_s"], out["link_error"] = time.monotonic() - t0, arm.link_error
    t0 = time.monotonic()
    arm.close()
    out["close_s"] = time.monotonic() - t0
    print(json.dumps(out), flush=True)
""")


@needs_sim
@pytest.mark.parametrize("first", ["stop", "state"])
def test_a_controller_gone_silent_cannot_hang_stop_or_close(first: str) -> None:
    """A controller that stops answering without closing its sockets (a pulled cable, a frozen
    controller: here the franky-sim process is frozen with SIGSTOP just as the driver starts a
    motion, so libfranka waits for the motion's reply without end, holding the lock its own stop
    needs, and hands out the last state it had). "stop": the stop gives up after
    `stop_timeout_s` and says the arm is unreachable. "state": the state reads notice within
    `stale_state_s` that the state stands still, and the link is lost; the stop then returns at
    once. Either way close returns and the process exits normally despite libfranka's stuck
    thread. The freeze is timed by wrapping the driver's `_send` hook: starting a motion is the
    only call that waits on the controller's reply with no deadline of libfranka's own. A server
    per case and a child process, as in the test above."""
    server = FrankySim({"stop": "127.0.0.8", "state": "127.0.0.9"}[first])
    try:
        config = _child_config(server.host, stop_timeout_s=2.0, stale_state_s=1.0)
        proc = subprocess.run(
            [sys.executable, "-c", _SILENT_CONTROLLER_SCRIPT, str(server.proc.pid), config, first],
            capture_output=True, text=True, timeout=60, cwd=Path(__file__).resolve().parents[2],
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-2000:]
        out = json.loads(proc.stdout.strip().splitlines()[-1])
        if first == "stop":
            assert out["link_error"] == "the arm did not confirm the stop within 2 s", out
            assert 2.0 <= out["stop_s"] < 4.0, out
            assert "the call is abandoned" in proc.stderr
        else:
            assert "the arm's state has not changed for 1." in out["state_error"], out
            assert out["state_error"].startswith("lost the connection"), out
            assert 1.0 <= out["state_s"] < 3.0, out
            assert out["link_error"].startswith("the arm's state has not changed"), out
            assert out["stop_s"] < 0.5, out
        assert out["close_s"] < 4.0, out
    finally:
        server.proc.send_signal(signal.SIGCONT)
        server.kill()


_PANDA_PY_SCRIPT = textwrap.dedent("""
    import json, sys, time
    from drivers.base import RobotError
    from drivers.franka import FrankaConfig, GripperConfig, PandaPyGripper, PandaPyRobot

    host = sys.argv[1]
    out = {}
    t0 = time.perf_counter()
    try:
        PandaPyRobot(FrankaConfig(host=host, connect_timeout_s=10, realtime="ignore")).open()
        out["arm"] = "connected"
    except RobotError as exc:
        out["arm"] = str(exc)
    out["arm_s"] = time.perf_counter() - t0
    hand = PandaPyGripper(host)
    hand.homing()
    out["max_width"] = hand.max_width()
    out["grasped"] = hand.grasp(GripperConfig())
    out["closed_width"] = hand.width()
    hand.open(0.08, 0.1)
    out["open_width"] = hand.width()
    print(json.dumps(out))
""")


@needs_sim
@pytest.mark.skipif(
    importlib.util.find_spec("panda_py") is None,
    reason="panda-python is not installed (pip install panda-python)",
)
def test_panda_py_gripper_works_and_its_arm_is_refused_clearly(sim: FrankySim) -> None:
    """In a separate process (FINDINGS: panda-python's constructors hold the GIL while waiting,
    and franky-sim serves one arm client at a time, which the module's fixture may hold)."""
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", _PANDA_PY_SCRIPT, sim.host],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert "incorrect object size" in out["arm"] and "franky-control" in out["arm"]
    assert out["arm_s"] < 5
    assert out["max_width"] == pytest.approx(0.08, abs=0.005)
    assert out["grasped"] is True and out["closed_width"] < 0.01  # an empty grasp in the sim
    assert out["open_width"] > 0.07
