"""`SimRobot`: a `drivers.base.Robot` over a `World`'s Cartesian controller.

Commands only move the world's end-effector target; the physics (realtime thread or lockstep
`world.step`) does the moving, so `move` never blocks. Like franky on a real FR3, `stop()` preempts
the current motion and holds, and a later `move()` is accepted again (`stopped` tells which).
"""

from __future__ import annotations

import time

import numpy as np

from drivers.base import RobotError, RobotState, shortened
from drivers.sim.world import World


class SimRobot:
    """The FR3 of `world`, driven by relative moves of at most `max_step` metres per call.

    With `realtime=True` (the runtime's case) `open()` starts the world's physics thread; tests
    and data collection pass `realtime=False` and advance time with `world.step`. Closing the
    robot leaves the world (and its physics thread) to its owner.
    """

    def __init__(
        self,
        world: World,
        max_step: float = 0.02,
        *,
        realtime: bool = True,
        max_lead: float | None = None,
    ) -> None:
        if max_step <= 0:
            raise ValueError("max_step must be positive")
        self.world = world
        self.max_step = max_step
        self.realtime = realtime
        # How far the target may run ahead of the real hand: a blocked arm does not accumulate
        # a long queue of moves that it would execute all at once when freed.
        self.max_lead = max_lead if max_lead is not None else 3 * max_step
        self._closed = False
        self._stopped = False

    @property
    def stopped(self) -> bool:
        return self._stopped

    def open(self) -> None:
        self._check()
        if self.realtime:
            self.world.start_realtime()

    def state(self) -> RobotState:
        self._check()
        world = self.world
        return RobotState(
            ee_pos=world.ee_position(),
            gripper_width=world.gripper_width(),
            gripper_closed=world.gripper_closed,
            t=time.monotonic(),
            joints=world.joint_positions(),
        )

    def move(self, delta: np.ndarray, gripper_closed: bool) -> None:
        """New target = current target + `delta` clipped to `max_step` (direction kept)."""
        self._check()
        step = np.asarray(delta, dtype=float).reshape(3)
        if not np.all(np.isfinite(step)):
            raise RobotError(f"move delta must be finite, got {step}")
        ee = self.world.ee_position()
        target = self.world.ee_target() + shortened(step, self.max_step)
        target = ee + shortened(target - ee, self.max_lead)
        self.world.set_target(target, gripper_closed)
        self._stopped = False

    def hold(self) -> None:
        """Target = where the hand is now; the gripper keeps its last command."""
        self._check()
        self.world.set_target(self.world.ee_position(), self.world.gripper_closed)

    def stop(self) -> None:
        """Hold and mark stopped; callable from any state, twice, and after close."""
        if self._closed or self.world.closed:
            self._stopped = True
            return
        self.hold()
        self._stopped = True

    def close(self) -> None:
        """Safe-stop, then refuse further commands (idempotent)."""
        if not self._closed:
            self.stop()
            self._closed = True

    def __enter__(self) -> SimRobot:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check(self) -> None:
        if self._closed:
            raise RobotError("robot is closed")
        if self.world.closed:
            raise RobotError("the simulated world is closed")
