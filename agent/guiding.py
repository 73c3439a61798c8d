"""Hand-guiding as `record`'s input (`teleop.device = "guiding"`): the operator moves the Franka
by hand while the runtime only reads its state.

Everything else is `record`'s with the keyboard (`agent.teleop`): the reasoner, the detector, the
tracker and segmenter run as in `run`, the command loop still ticks at the control rate, and the
terminal's space and Enter toggle the gripper and end the episode. What differs:

- `GuidedRecordingRobot` puts the arm in guiding mode at the episode's first action
  (`FrankaRobot.guide`: libfranka's guiding mode on a real arm, or franky's compliant impedance
  controller) and from then on sends only the gripper: the arm's moves come from the hand. The
  recorded action of a step is the move the hand executed between the state that step was
  decided on and the next step's (the last step: the state when the episode ended), so the
  recorded moves add up to where the hand went. The safe stop at every ending ends the guiding:
  the arm holds where the hand left it.
- `GuidingPolicy` checks, at every percept, that the hand is still inside the recording's
  workspace box (leaving it ends the episode as a fault, `LeftWorkspace`, as the deadman does:
  the arm stops and holds, `record` stops after the operator's verdict), and counts a move of
  the hand of more than `teleop.guiding.still_m` as input for the deadman rule: no motion and no
  key for `teleop.deadman_s` ends the episode.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from agent.teleop import InputSilent, Limits, RecordingRobot, TeleopPolicy
from drivers.base import DriverError
from drivers.input import GuidingSettings, InputCommand, InputDevice, InputError
from models.types import Action, Observation, TaskSpec


class LeftWorkspace(InputError):
    """The guided hand left the workspace box: the episode ends and the arm holds there."""


class GuidingPolicy(TeleopPolicy):
    """The operator's hand (and the terminal's gripper and end keys) as the runtime's policy."""

    name = "guiding"

    def __init__(
        self, device: InputDevice, limits: Limits, deadman_s: float, settings: GuidingSettings
    ) -> None:
        super().__init__(device, limits, deadman_s)
        self.still_m = settings.still_m
        self._anchor: np.ndarray | None = None
        self._moved = time.monotonic()

    def reset(self, task: TaskSpec) -> None:
        super().reset(task)
        self._anchor = None
        self._moved = time.monotonic()

    def check(self, command: InputCommand, observation: Observation) -> None:
        here = np.asarray(observation.proprio[:3], dtype=float)
        low, high = self.limits.low, self.limits.high
        if np.any(here < low) or np.any(here > high):
            at = ", ".join(f"{v:.3f}" for v in here)
            box = f"{np.round(low, 3).tolist()} .. {np.round(high, 3).tolist()}"
            raise LeftWorkspace(
                f"the hand left the workspace box at ({at}) m (box {box}): the episode ends and "
                "the arm holds there"
            )
        now = time.monotonic()
        if self._anchor is None or np.linalg.norm(here - self._anchor) > self.still_m:
            self._anchor, self._moved = here, now
        silent = now - max(command.t_heard, self._moved, self._since)
        if silent > self.deadman_s:
            raise InputSilent(
                f"the arm was not moved and no key came for {silent:.1f} s (teleop.deadman_s = "
                f"{self.deadman_s:g}): the episode ends and the arm holds"
            )


class GuidedRecordingRobot(RecordingRobot):
    """The arm in guiding mode, recording what the hand executed (see the module doc)."""

    def __init__(
        self,
        inner: Any,
        policy: TeleopPolicy,
        views: tuple[str, ...],
        image_size: int,
        settings: GuidingSettings,
    ) -> None:
        super().__init__(inner, policy, views, image_size)
        self.settings = settings
        self.max_step = policy.limits.max_step
        self.fast_steps = 0  # steps the hand moved further than a policy may per step
        self._pending: tuple[Action, Observation] | None = None

    def move(self, delta: np.ndarray, gripper_closed: bool) -> None:
        if self.inner.guiding is None:  # the episode's first action: the hand takes the arm
            self.inner.guide(self.settings.mode, self.settings.damping)
        self.inner.grip(gripper_closed)
        found = self.policy.executed(delta)
        if found is None:
            return
        pending, self._pending = self._pending, found
        if pending is not None:
            self._record(*pending, np.asarray(found[1].proprio[:3], dtype=float))

    def hold(self) -> None:
        if self.inner.guiding is None:  # while guided, the operator's hand holds the arm
            self.inner.hold()

    def flush(self) -> None:
        """The episode ended: its last step's move is the one to where the hand is now."""
        pending, self._pending = self._pending, None
        if pending is None or self.sink is None:
            return
        try:
            here = np.asarray(self.inner.state().ee_pos, dtype=float)
        except DriverError:  # the link is gone: the last step cannot be measured, so it goes
            return
        self._record(*pending, here)

    def begin(self) -> None:
        """A new episode: nothing pending, no fast step counted yet."""
        self._pending, self.fast_steps = None, 0

    def _record(self, action: Action, obs: Observation, after: np.ndarray) -> None:
        move = after - np.asarray(obs.proprio[:3], dtype=float)
        if np.linalg.norm(move) > self.max_step + 1e-6:
            self.fast_steps += 1
        self.add(obs, move, action.gripper_closed)


def guiding_refusal(config: Any) -> str | None:
    """Why `config` cannot record by hand-guiding (one line), or None."""
    if config.teleop.device != "guiding":
        return None
    if config.robot.backend != "franka":
        return (
            f'hand-guiding needs a Franka driven by franky (robot.backend = "franka", the real '
            f"or franka-sim profile), not robot.backend = {config.robot.backend!r}"
        )
    if config.cameras.backend == "franka_sim" and config.teleop.guiding.mode == "buttons":
        return (
            "franky-sim has no guiding buttons (it does not serve libfranka's setGuidingMode): "
            'set teleop.guiding.mode = "impedance"'
        )
    return None


def says_too_fast(robot: GuidedRecordingRobot) -> str | None:
    """One line when the hand moved faster than a policy may move per step, else None."""
    if not robot.fast_steps:
        return None
    return (
        f"{robot.fast_steps} of {robot.steps} steps moved the hand more than "
        f"{robot.max_step * 100:g} cm (the max step a policy's action may take): guide more "
        "slowly, or the trained policy will be slower than the demonstration"
    )
