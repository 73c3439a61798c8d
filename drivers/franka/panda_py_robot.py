"""`PandaPyRobot`: the Franka driver on panda-python, for Panda arms with older firmware.

panda-python's PyPI wheel bundles libfranka 0.9.2 (robot server v5): it talks to Panda arms
on system versions before libfranka 0.10, not to an FR3 nor to franky-sim (server v10), where the
connection fails with "incorrect object size". Its moves (`move_to_pose`) block, so this driver
streams setpoints to panda-python's asynchronous Cartesian impedance controller from a small
thread that walks the setpoint toward the target at the configured speed.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import numpy as np

from drivers.base import RobotError, require_sdk
from drivers.franka._common import ArmDriver, ArmFault, ConnectionLost, GripperBackend
from drivers.franka.config import FrankaConfig

log = logging.getLogger(__name__)

_INSTALL = "the panda-python driver needs panda-python: pip install 'tpm-agent[real]'"
_STREAM_HZ = 100.0
_MAX_SPEED = 1.7  # m/s, the Panda's translational velocity limit


def _import_panda_py() -> Any:
    return require_sdk(
        "panda_py", "panda_py.controllers", "panda_py.libfranka", error=RobotError, hint=_INSTALL
    )


class PandaPyGripper(GripperBackend):
    """The Franka Hand through panda-python's libfranka binding (gripper protocol v3).

    Public because the hand works on its own: its protocol also matches franky-sim and FR3 hands.
    """

    def __init__(self, host: str) -> None:
        panda_py = _import_panda_py()
        try:
            self._g = panda_py.libfranka.Gripper(host)
        except Exception as exc:
            raise RobotError(f"cannot connect to the Franka Hand at {host}: {exc}") from exc

    def width(self) -> float:
        return float(self._g.read_once().width)

    def max_width(self) -> float:
        return float(self._g.read_once().max_width)


class PandaPyRobot(ArmDriver):
    """A Panda arm (libfranka < 0.10) through panda-python; same limits as `FrankaRobot`."""

    backend_name = "panda-python"

    def __init__(self, config: FrankaConfig | None = None) -> None:
        super().__init__(config or FrankaConfig())
        self._panda: Any = None
        self._ctrl: Any = None
        self._quat: np.ndarray | None = None
        self._goal: np.ndarray | None = None
        self._goal_lock = threading.Lock()
        self._streaming = threading.Event()
        self._streamer: threading.Thread | None = None

    def _connect(self) -> GripperBackend | None:
        panda_py = _import_panda_py()
        cfg = self.config
        lf = panda_py.libfranka
        realtime = (
            lf.RealtimeConfig.kEnforce if cfg.realtime == "enforce" else lf.RealtimeConfig.kIgnore
        )
        try:
            self._panda = panda_py.Panda(cfg.host, realtime_config=realtime)
            self._panda.get_robot().set_collision_behavior(
                [cfg.torque_threshold] * 7,
                [cfg.torque_threshold] * 7,
                [cfg.force_threshold] * 6,
                [cfg.force_threshold] * 6,
            )
        except Exception as exc:
            raise ConnectionLost(_explain(exc)) from exc
        self._quat = np.array(
            cfg.orientation if cfg.orientation is not None else self._panda.get_orientation(),
            dtype=float,
        )
        self._ctrl = panda_py.controllers.CartesianImpedance()
        return PandaPyGripper(cfg.host) if cfg.gripper.enabled else None

    def _read(self) -> tuple[np.ndarray, np.ndarray]:
        try:
            state = self._panda.get_state()
            pose = np.asarray(state.O_T_EE, dtype=float).reshape(4, 4, order="F")
            return pose[:3, 3].copy(), np.asarray(state.q, dtype=float)
        except Exception as exc:
            raise ConnectionLost(str(exc)) from exc

    def _check_motion(self) -> None:
        try:
            self._panda.raise_error()
        except RuntimeError as exc:
            self._streaming.clear()
            raise ArmFault(str(exc)) from exc

    def _send(self, position: np.ndarray) -> None:
        with self._goal_lock:
            self._goal = position.copy()
        if not self._streaming.is_set():
            self._start_stream(position)

    def _start_stream(self, goal: np.ndarray) -> None:
        current, _ = self._read()
        self._ctrl.set_control(current, self._quat)
        try:
            self._panda.start_controller(self._ctrl)
        except Exception as exc:
            raise ArmFault(str(exc)) from exc
        self._streaming.set()
        self._streamer = threading.Thread(
            target=self._stream, args=(current,), name="panda-py-setpoint", daemon=True
        )
        self._streamer.start()

    def _stream(self, setpoint: np.ndarray) -> None:
        """Move the impedance setpoint toward the goal at most at the configured speed."""
        cfg = self.config
        step = min(cfg.max_velocity, cfg.dynamics_factor * _MAX_SPEED) / _STREAM_HZ
        while self._streaming.is_set():
            with self._goal_lock:
                goal = self._goal if self._goal is not None else setpoint
            gap = goal - setpoint
            dist = float(np.linalg.norm(gap))
            setpoint = goal.copy() if dist <= step else setpoint + gap * (step / dist)
            try:
                self._ctrl.set_control(setpoint, self._quat)
            except Exception as exc:  # the controller stopped (fault): _check_motion reports it
                log.debug("panda-python: setpoint stream ended: %s", exc)
                return
            time.sleep(1.0 / _STREAM_HZ)

    def _move_joints(self, joints: np.ndarray) -> None:
        self._halt()
        if not self._panda.move_to_joint_position(joints, speed_factor=self.config.dynamics_factor):
            raise ArmFault("move_to_joint_position failed")
        if self.config.orientation is None:
            self._quat = np.array(self._panda.get_orientation(), dtype=float)

    def _halt(self) -> None:
        self._streaming.clear()
        if self._streamer is not None:
            self._streamer.join(1.0)
        try:
            self._panda.stop_controller()
        except Exception as exc:
            raise ArmFault(str(exc)) from exc

    def _recover(self) -> None:
        self._streaming.clear()
        try:
            self._panda.recover()
        except Exception as exc:
            raise ConnectionLost(str(exc)) from exc

    def _disconnect(self) -> None:
        self._panda = None


def _explain(exc: BaseException) -> str:
    text = str(exc)
    if "incorrect object size" in text or "incompatible" in text.lower():
        return (
            f"{text}: panda-python's libfranka 0.9.2 speaks only to Panda arms before "
            "libfranka 0.10; use the 'franka' (franky-control) driver for an FR3, newer "
            "Panda firmware or franky-sim"
        )
    return text
