"""`FrankaRobot`: the Franka driver on franky-control (FR3, and Panda with libfranka >= 0.10).

franky runs each motion in its own control thread; `robot.move(motion, asynchronous=True)`
returns at once and a newer motion takes over the running one seamlessly, which is exactly the
preemption the command loop needs. A motion's failure is raised by the next `poll_motion()`.
"""

from __future__ import annotations

import gc
import logging
from typing import Any, Literal

import numpy as np

from drivers.base import RobotError, require_sdk
from drivers.franka._common import ArmDriver, ArmFault, ConnectionLost, GripperBackend
from drivers.franka.config import FrankaConfig

log = logging.getLogger(__name__)

GuidingMode = Literal["buttons", "impedance"]
_INSTALL = "the Franka driver needs franky-control: pip install 'tpm-agent[real]'"


class _FrankyGripper(GripperBackend):
    def __init__(self, gripper: Any) -> None:
        self._g = gripper

    def width(self) -> float:
        return float(self._g.width)

    def max_width(self) -> float:
        return float(self._g.max_width)


class FrankaRobot(ArmDriver):
    """A Franka arm through franky-control; see `FrankaConfig` for the limits it enforces.

    Motions are absolute Cartesian targets in the base frame with a fixed hand orientation, so
    a chain of preempting steps cannot accumulate rotation drift.
    """

    backend_name = "franky"

    def __init__(self, config: FrankaConfig | None = None) -> None:
        super().__init__(config or FrankaConfig())
        self._franky: Any = None
        self._robot: Any = None
        self._quat: list[float] | None = None
        self.guiding: GuidingMode | None = None  # set by guide(), cleared by stop()

    def _connect(self) -> GripperBackend | None:
        franky = self._franky = require_sdk("franky", error=RobotError, hint=_INSTALL)
        cfg = self.config
        realtime = (
            franky.RealtimeConfig.Enforce
            if cfg.realtime == "enforce"
            else franky.RealtimeConfig.Ignore
        )
        with self._translated(connecting=True):
            robot = franky.Robot(cfg.host, realtime_config=realtime)
            robot.relative_dynamics_factor = cfg.dynamics_factor
            # franky scales the limit by the dynamics factor: pre-divide so that max_velocity is
            # the real cap, never above the arm's own maximum.
            vmax = robot.translation_velocity_limit.max
            robot.translation_velocity_limit.set(min(vmax, cfg.max_velocity / cfg.dynamics_factor))
            robot.set_collision_behavior([cfg.torque_threshold] * 7, [cfg.force_threshold] * 6)
            if robot.has_errors:
                log.warning("franky: arm at %s reports errors on connect; recovering", cfg.host)
                robot.recover_from_errors()
            pose = robot.state.O_T_EE
            self._quat = (
                list(cfg.orientation)
                if cfg.orientation is not None
                else [float(v) for v in pose.quaternion]
            )
            self._robot = robot
            if not cfg.gripper.enabled:
                return None
            return _FrankyGripper(franky.Gripper(cfg.host))

    def _read(self) -> tuple[np.ndarray, np.ndarray]:
        with self._translated():
            state = self._robot.state
            ee = np.array(state.O_T_EE.translation, dtype=float)
            joints = np.array(state.q, dtype=float)
            stamp = state.time.to_msec()
        self._check_fresh(stamp)
        return ee, joints

    def _check_motion(self) -> None:
        with self._translated():
            self._robot.poll_motion()

    def _send(self, position: np.ndarray) -> None:
        franky = self._franky
        motion = franky.CartesianMotion(franky.Affine(position.tolist(), self._quat))
        with self._translated():
            self._robot.move(motion, asynchronous=True)

    def _move_joints(self, joints: np.ndarray) -> None:
        franky = self._franky
        with self._translated():
            self._robot.move(franky.JointMotion(joints), asynchronous=False)
            if self.config.orientation is None:
                self._quat = [float(v) for v in self._robot.state.O_T_EE.quaternion]

    def _halt(self) -> None:
        with self._translated():
            self._robot.stop()
        try:
            self._robot.join_motion(timeout=2.0)
        except self._franky.ControlException as exc:
            log.debug("franky: stopped motion ended with %s", exc)  # "Move command preempted!"
        except Exception as exc:
            with self._translated():
                raise exc

    def _recover(self) -> None:
        with self._translated():
            self._robot.recover_from_errors()

    # ----------------------------------------------------------------- hand-guiding
    def guide(self, mode: GuidingMode, damping: float = 30.0) -> None:
        """Let the operator move the arm by hand (`record` with `teleop.device = "guiding"`).

        Translation is free, the hand's orientation and the elbow stay held: the policy acts in
        position only. `buttons`: libfranka's guiding mode (`Robot::setGuidingMode`) and no FCI
        motion, so the operator presses the two guiding buttons at the flange to move the arm
        (robot mode Guiding) and releasing them holds it. `impedance`: franky's Cartesian
        impedance controller with zero translational stiffness and `damping` (Ns/m): the
        gravity-compensated arm floats and slows down where it is let go; rotation is held stiff.
        franky-sim serves only the latter (its server stops on kSetGuidingMode). `stop()` (every
        ending) ends either: the arm then holds where the hand left it.
        """
        with self._lock:
            self._usable()
            self._guard("check the motion", self._check_motion)
            if mode == "buttons":
                free = [True, True, True, False, False, False]
                try:
                    with self._translated():
                        self._robot.set_guiding_mode(free, False)
                except (ArmFault, ConnectionLost) as exc:
                    raise RobotError(
                        f"the arm at {self.config.host} refused guiding mode ({exc}); is FCI "
                        "active in Desk and the arm unlocked?"
                    ) from None
                self._guard("end the held motion", self._halt)  # buttons need no FCI motion
            else:
                self._guard("start the compliant motion", lambda: self._float(damping))
            self.guiding = mode
            self.stopped = False

    def _float(self, damping: float) -> None:
        franky = self._franky
        with self._translated():
            motion = franky.CartesianImpedanceMotion(self._robot.state.O_T_EE)
            rot = 150.0  # Nm/rad: the hand's orientation held (a push tilts it < 1 deg)
            stiffness = np.array([0.0] * 3 + [rot] * 3)
            damped = np.array([damping] * 3 + [2 * rot**0.5] * 3)
            motion.set_gains(franky.CartesianImpedanceGains.diagonal(stiffness, damped))
            self._robot.move(motion, asynchronous=True)

    def grip(self, closed: bool) -> None:
        """Command only the gripper (while guided, the hand moves the arm); never waits."""
        with self._lock:
            self._usable()
            self._guard("check the motion", self._check_motion)
            if self._gripper is not None:
                self._gripper.check()
                if closed != self._gripper_closed:
                    self._gripper.command(closed)
            self._gripper_closed = closed

    def stop(self) -> None:
        super().stop()
        self.guiding = None

    def _disconnect(self) -> None:
        # franky has no close(): the connection ends when the Robot is freed. It can sit in a
        # reference cycle, and the arm serves one client, so collect now rather than someday.
        self._robot = None
        gc.collect()

    def _translated(self, *, connecting: bool = False) -> _Translate:
        return _Translate(self._franky, connecting)


class _Translate:
    """Maps franky's exception types onto the driver's fault protocol."""

    def __init__(self, franky: Any, connecting: bool) -> None:
        self._franky = franky
        self._connecting = connecting

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: object
    ) -> Literal[False]:
        if exc is None or not isinstance(exc, Exception):
            return False
        f = self._franky
        if isinstance(
            exc,
            f.NetworkException
            | f.ProtocolException
            | f.IncompatibleVersionException
            | f.RealtimeException,
        ):
            raise ConnectionLost(f"{type(exc).__name__}: {exc}") from exc
        if isinstance(exc, RuntimeError) and "net exception" in str(exc).lower():
            # The motion thread reports a dropped link as a bare RuntimeError("Net Exception").
            raise ConnectionLost(f"{type(exc).__name__}: {exc}") from exc
        if isinstance(exc, f.GripperException) and self._connecting:
            raise ConnectionLost(f"gripper: {exc}") from exc
        if isinstance(
            exc,
            f.ControlException | f.CommandException | f.InvalidOperationException | RuntimeError,
        ):
            # ControlException carries the reflex reason ("cartesian_reflex", ...); franky's
            # planner raises RuntimeError for unreachable targets.
            raise ArmFault(f"{type(exc).__name__}: {exc}") from exc
        return False
