"""What both Franka drivers share: target limiting, the gripper worker and the fault protocol.

`ArmDriver` implements `drivers.base.Robot` once; a backend (franky-control or panda-python)
supplies only the library calls through a handful of hooks. Keeping the safety logic in one place
means the limits, the preemption semantics and the fault handling cannot drift between the two.
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, Self, TypeVar

import numpy as np

from drivers.base import CallTimeout, RobotError, RobotState, call_within, shortened
from drivers.franka.config import FrankaConfig, GripperConfig

log = logging.getLogger(__name__)
_T = TypeVar("_T")


class ArmFault(Exception):
    """Raised by a backend hook when the controller aborted a motion (reflex, limit, preemption).

    The driver answers by recovering the arm and holding it, then raises `RobotError`.
    """


class ConnectionLost(Exception):
    """Raised by a backend hook when the arm or its gripper no longer answers."""


def limit_target(
    target: np.ndarray, measured: np.ndarray, delta: np.ndarray, config: FrankaConfig
) -> np.ndarray:
    """The next commanded position: `target + delta`, made safe.

    Steps longer than `max_step` are shortened (direction kept); the result may run at most
    `max_lead` ahead of the measured hand, and is clipped into the workspace box. Building on the
    previous *target* rather than the measured pose keeps a stream of small steps smooth (each step
    preempts the previous motion before it has finished).
    """
    step = np.asarray(delta, dtype=float).reshape(3)
    if not np.all(np.isfinite(step)):
        raise RobotError(f"move delta must be finite, got {step}")
    new = np.asarray(target, dtype=float) + shortened(step, config.max_step)
    new = measured + shortened(new - measured, config.max_lead)
    return np.clip(new, config.workspace_low, config.workspace_high)


class GripperBackend(ABC):
    """Blocking gripper calls of one library; `GripperWorker` runs them off the command thread.

    franky's `Gripper` and libfranka's (through panda-python) share homing, move and grasp, so
    those are written once over `_g`; the libraries differ only in how the width is read.
    """

    _g: Any  # the library's gripper object

    def homing(self) -> None:
        self._g.homing()

    def open(self, width: float, speed: float) -> None:
        self._g.move(width, speed)

    def grasp(self, config: GripperConfig) -> bool:
        c = config
        return bool(
            self._g.grasp(c.grasp_width, c.speed, c.force, c.epsilon_inner, c.epsilon_outer)
        )

    @abstractmethod
    def width(self) -> float: ...

    @abstractmethod
    def max_width(self) -> float: ...


class GripperWorker:
    """Executes open / grasp commands in its own thread, newest command wins.

    A grasp takes ~0.5-1 s, far longer than one 10-30 Hz command period, so the command loop only
    posts the wanted state and returns. Commands that arrive while one is running collapse into
    the newest (an open-close-open flicker becomes one open). A library error is kept and raised
    by the next `check()` as `RobotError`: it reaches the runtime instead of dying in a thread.
    """

    def __init__(self, backend: GripperBackend, config: GripperConfig) -> None:
        self._backend = backend
        self._config = config
        self._cond = threading.Condition()
        self._wanted: bool | None = None  # True = closed
        self._busy = False
        self._error: BaseException | None = None
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="franka-gripper", daemon=True)
        self.closed = False  # last state the worker finished commanding
        self.grasped: bool | None = None  # last grasp result (None before any grasp)
        self.open_width = (
            config.open_width if config.open_width is not None else backend.max_width()
        )

    def start(self) -> None:
        self._thread.start()

    def command(self, closed: bool) -> None:
        """Ask for the gripper to be closed (grasp) or open; returns at once."""
        with self._cond:
            self._wanted = closed
            self._cond.notify()

    def wait_idle(self, timeout: float) -> bool:
        """Block until no command is pending or running (tests, shutdown); False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._wanted is not None or self._busy:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._error is not None:
                    return False
                self._cond.wait(remaining)
        return True

    def check(self) -> None:
        """Raise the error of a failed gripper command once, as `RobotError`."""
        with self._cond:
            error, self._error = self._error, None
        if error is not None:
            raise RobotError(f"gripper command failed: {error}") from error

    def stop(self, timeout: float = 2.0) -> None:
        with self._cond:
            self._closing = True
            self._wanted = None
            self._cond.notify()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._wanted is None and not self._closing:
                    self._cond.wait()
                if self._closing:
                    return
                wanted = bool(self._wanted)  # the wait ends with a request or a close
                self._wanted = None
                self._busy = True
            try:
                if wanted:
                    self.grasped = self._backend.grasp(self._config)
                else:
                    self._backend.open(self.open_width, self._config.speed)
                    self.grasped = None
                self.closed = wanted
            except Exception as exc:  # library errors differ per backend; all end in check()
                log.error("gripper %s failed: %s", "grasp" if wanted else "open", exc)
                with self._cond:
                    self._error = exc
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()


class ArmDriver(ABC):
    """`drivers.base.Robot` for a Franka arm; subclasses supply the library calls.

    Thread model: `state`, `move`, `hold`, `stop` are called from one runtime worker thread
    (calls are serialised by a lock anyway); the library runs the motion in its own control thread
    and the gripper has its own worker. Every library exception is turned into `RobotError`.
    """

    backend_name = "franka"

    def __init__(self, config: FrankaConfig) -> None:
        self.config = config
        self._lock = threading.RLock()
        self._opened = False
        self._closed = False
        self._lost: str | None = None
        self._target: np.ndarray | None = None
        self._stamp: tuple[int, float] | None = None  # (controller's state stamp, when it changed)
        self._gripper: GripperWorker | None = None
        self._gripper_closed = False
        self.stopped = False
        self.faults: list[str] = []  # reasons of the faults seen, oldest first

    @property
    def link_error(self) -> str | None:
        """Why the connection to the arm was lost, or None while it holds (for health checks)."""
        return self._lost

    # ----------------------------------------------------------------- backend hooks
    @abstractmethod
    def _connect(self) -> GripperBackend | None:
        """Connect to the arm (and gripper when enabled); apply limits and dynamics."""

    @abstractmethod
    def _read(self) -> tuple[np.ndarray, np.ndarray]:
        """(end-effector position (3,), joint positions (7,)) from the latest robot state."""

    @abstractmethod
    def _check_motion(self) -> None:
        """Raise ArmFault if the running motion was aborted since the last call."""

    @abstractmethod
    def _send(self, position: np.ndarray) -> None:
        """Start moving to `position` asynchronously, preempting the running motion."""

    @abstractmethod
    def _move_joints(self, joints: np.ndarray) -> None:
        """Move to joint positions and wait until there (blocking; between episodes only)."""

    @abstractmethod
    def _halt(self) -> None:
        """Stop the running motion now and wait until the arm stands (an abort is expected)."""

    @abstractmethod
    def _recover(self) -> None:
        """Clear the controller's error state (automatic error recovery)."""

    @abstractmethod
    def _disconnect(self) -> None: ...

    # ----------------------------------------------------------------- Robot protocol
    def open(self) -> None:
        """Connect, home the gripper (optional) and hold the current pose."""
        with self._lock:
            if self._closed:
                raise RobotError("robot is closed")
            if self._opened:
                return
            try:
                gripper = self._connect_within(self.config.connect_timeout_s)
                if gripper is not None:
                    if self.config.gripper.home_on_open:
                        gripper.homing()
                    self._gripper = GripperWorker(gripper, self.config.gripper)
                    self._gripper.start()
                ee, _ = self._read()
            except (ConnectionLost, ArmFault) as exc:
                raise RobotError(
                    f"cannot connect to the {self.backend_name} arm at {self.config.host}: {exc}"
                ) from exc
            self._target = ee
            self._opened = True
            log.info(
                "%s arm at %s open, hand at %s",
                self.backend_name,
                self.config.host,
                np.round(ee, 4),
            )

    def state(self) -> RobotState:
        with self._lock:
            self._usable()
            ee, joints = self._guard("read the state", self._read)
            self._guard("check the motion", self._check_motion)
            width = 0.0
            if self._gripper is not None:
                self._gripper.check()
                width = self._guard("read the gripper", self._gripper_width)
            return RobotState(
                ee_pos=ee,
                gripper_width=width,
                gripper_closed=self._gripper_closed,
                t=time.monotonic(),
                joints=joints,
            )

    def move(self, delta: np.ndarray, gripper_closed: bool) -> None:
        """Preempt the running motion with one to the limited new target; never waits for it."""
        with self._lock:
            self._usable()
            self._guard("check the motion", self._check_motion)
            if self._gripper is not None:
                self._gripper.check()
            ee, _ = self._guard("read the state", self._read)
            assert self._target is not None
            target = limit_target(self._target, ee, delta, self.config)
            self._guard("start a motion", lambda: self._send(target))
            self._target = target
            self.stopped = False
            if gripper_closed != self._gripper_closed and self._gripper is not None:
                self._gripper.command(gripper_closed)
            self._gripper_closed = gripper_closed

    def hold(self) -> None:
        """Target the hand's current position: the arm decelerates and stays there."""
        with self._lock:
            self._usable()
            self._guard("check the motion", self._check_motion)
            ee, _ = self._guard("read the state", self._read)
            target = np.clip(ee, self.config.workspace_low, self.config.workspace_high)
            self._guard("hold", lambda: self._send(target))
            self._target = target

    def home(self, joints: tuple[float, ...] | None = None) -> None:
        """Move to `joints` (default `config.home_joints`) and wait: a reset between episodes.

        Blocking by design (seconds), so never call it from the command loop. The hand's
        orientation is re-read afterwards unless the config fixes one.
        """
        with self._lock:
            self._usable()
            self._guard("check the motion", self._check_motion)
            target = np.asarray(joints if joints is not None else self.config.home_joints, float)
            self._guard("move home", lambda: self._move_joints(target))
            self._target, _ = self._guard("read the state", self._read)
            self.stopped = False

    def stop(self) -> None:
        """End any motion now; idempotent, also after a fault, a lost connection or close.

        Bounded by `config.stop_timeout_s`: a controller that stopped answering in the middle of
        starting a motion leaves libfranka waiting without end, holding the lock its own stop
        needs. The arm is then unreachable, and is reported so (`link_error`), not stopped.
        """
        with self._lock:
            self.stopped = True
            if not self._opened or self._closed or self._lost is not None:
                return
            timeout, name = self.config.stop_timeout_s, f"{self.backend_name}-stop"
            try:
                self._target = call_within(self._halt_and_read, timeout, name)
            except CallTimeout:
                self._lost = f"the arm did not confirm the stop within {timeout:g} s"
                log.error("%s: %s; the call is abandoned", self.backend_name, self._lost)
            except ConnectionLost as exc:
                self._lost = str(exc)
                log.error("%s: connection lost while stopping: %s", self.backend_name, exc)
            except ArmFault as exc:
                # Stop must not raise on a fault: recover so that the arm holds, and record it.
                self._handle_fault("stop", exc, raise_error=False)

    def _halt_and_read(self) -> np.ndarray:
        self._halt()
        return self._read()[0]

    def close(self) -> None:
        """Stop motion first, then release the gripper worker and the connection (idempotent).

        Never hangs: releasing a connection whose controller went silent waits on libfranka's
        stuck control thread, so it is given `config.stop_timeout_s` and then abandoned.
        """
        with self._lock:
            if self._closed:
                return
            self.stop()
            self._closed = True
            if self._gripper is not None:
                # Drop the hand's connection too: like the arm, it serves one client at a time.
                self._gripper.stop()
                self._gripper = None
            if self._opened:
                try:
                    call_within(
                        self._disconnect,
                        self.config.stop_timeout_s,
                        f"{self.backend_name}-disconnect",
                    )
                except CallTimeout as exc:
                    log.error("%s: %s; the connection is abandoned", self.backend_name, exc)
                except Exception as exc:  # closing must not mask the reason we are closing
                    log.warning("%s: disconnect failed: %s", self.backend_name, exc)

    def __enter__(self) -> Self:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------- helpers
    def _connect_within(self, timeout: float) -> GripperBackend | None:
        """`_connect` in a helper thread, so that an arm that never answers cannot hang open()."""
        try:
            return call_within(self._connect, timeout, f"{self.backend_name}-connect")
        except CallTimeout:
            raise RobotError(
                f"the {self.backend_name} arm at {self.config.host} did not answer "
                f"within {timeout:g} s (is another client connected, e.g. Desk or "
                "a second driver, or is the host wrong?)"
            ) from None

    def _check_fresh(self, stamp: int) -> None:
        """ConnectionLost when the controller's state stamp (`stamp`, e.g. its ms counter) has not
        moved for `config.stale_state_s`. During a motion libfranka hands out the newest state of
        its control loop without asking the arm; a controller that went silent as the motion
        started leaves that loop waiting, and its state frozen, without an error of its own."""
        now = time.monotonic()
        if self._stamp is None or stamp != self._stamp[0]:
            self._stamp = (stamp, now)
        elif now - self._stamp[1] > self.config.stale_state_s:
            raise ConnectionLost(
                f"the arm's state has not changed for {now - self._stamp[1]:.1f} s "
                "(the controller stopped answering)"
            )

    def wait_gripper(self, timeout: float = 5.0) -> bool:
        """Block until the gripper has finished its commands (tests and scripted episodes)."""
        return self._gripper is None or self._gripper.wait_idle(timeout)

    @property
    def target(self) -> np.ndarray | None:
        """The position the arm is currently commanded to (base frame, m)."""
        return None if self._target is None else self._target.copy()

    def _gripper_width(self) -> float:
        assert self._gripper is not None
        try:
            return self._gripper._backend.width()
        except Exception as exc:  # any library's gripper read failing means the link is gone
            raise ConnectionLost(f"gripper: {exc}") from exc

    def _usable(self) -> None:
        if self._closed:
            raise RobotError("robot is closed")
        if not self._opened:
            raise RobotError("robot is not open: call open() first")
        if self._lost is not None:
            raise RobotError(
                f"lost the connection to the {self.backend_name} arm at "
                f"{self.config.host}: {self._lost}"
            )

    def _guard(self, what: str, call: Callable[[], _T]) -> _T:
        """Run one library call; translate its failures into the driver's fault protocol."""
        try:
            return call()
        except ConnectionLost as exc:
            self._lost = str(exc)
            log.error("%s: connection lost while trying to %s: %s", self.backend_name, what, exc)
            raise RobotError(
                f"lost the connection to the {self.backend_name} arm at "
                f"{self.config.host} while trying to {what}: {exc}"
            ) from exc
        except ArmFault as exc:
            self._handle_fault(what, exc, raise_error=True)
            raise AssertionError("unreachable") from exc

    def _handle_fault(self, what: str, exc: ArmFault, *, raise_error: bool) -> None:
        """Log the reason, recover the arm, hold where it stands; never retry the motion."""
        reason = str(exc) or type(exc).__name__
        self.faults.append(reason)
        log.error(
            "%s: motion aborted (%s) while trying to %s; recovering and holding",
            self.backend_name,
            reason,
            what,
        )
        try:
            self._recover()
            self._target, _ = self._read()
        except (ConnectionLost, ArmFault) as again:
            self._lost = f"recovery after '{reason}' failed: {again}"
            raise RobotError(
                f"lost the connection to the {self.backend_name} arm at "
                f"{self.config.host}: motion aborted ({reason}) and recovery "
                f"failed: {again}"
            ) from again
        self.stopped = True
        if raise_error:
            raise RobotError(
                f"{self.backend_name} arm at {self.config.host}: motion aborted "
                f"({reason}); the arm was recovered and holds its pose"
            ) from exc
