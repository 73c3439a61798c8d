"""An operator as the runtime's policy, and the recording of what the arm executed (`record`).

`TeleopPolicy` takes the place of the learned policy in the runtime's act loop: at every percept it
polls the input device (`drivers.input`), limits the asked move as the drivers do (at most
`max_step` per control step, the hand kept inside the workspace box), and returns it as the action;
the operator's "end" becomes `done`. Everything else is `run`'s: the reasoner, the detector on the
first frames, the tracker and segmenter every frame, the command loop's deadlines, the safe stop
on every ending (Ctrl-C, a reflex the driver recovered and holds, a lost camera). A device that
goes silent for `teleop.deadman_s`, or dies, ends the episode as a fault: the arm is stopped.

`RecordingRobot` wraps the arm: a step is recorded only when the command loop really sends its
action to the arm (a stale or overwritten action is not), as (both views and role masks reduced by
`prepare_views`, the proprioception the operator's decision was made on, the limited move and the
gripper state) into an `EpisodeSink`, the same writing path as `agent.collection`.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from agent.collection import EpisodeSink
from agent.config import Config
from drivers.base import DriverError, RobotState, shortened
from drivers.input import InputCommand, InputDevice, InputError, TeleopSettings
from models.tpm.inputs import prepare_views
from models.tpm.sources import episode_source as episode_source  # where an episode came from
from models.types import Action, Observation, TaskSpec


class InputSilent(InputError):
    """The input device sent nothing for `teleop.deadman_s`: the episode ends, the arm stops."""


@dataclass(frozen=True, slots=True)
class Limits:
    """What the arm's driver allows per step, so that the recorded move is the executed one."""

    max_step: float
    low: np.ndarray
    high: np.ndarray

    def limit(self, move: np.ndarray, at: np.ndarray) -> np.ndarray:
        """`move` shortened to `max_step` (direction kept), then cut so that `at + move` stays in
        the workspace box."""
        step = shortened(np.asarray(move, dtype=float).reshape(3), self.max_step)
        here = np.asarray(at, dtype=float).reshape(3)
        return np.clip(here + step, self.low, self.high) - here


def limits_for(config: Config) -> Limits:
    """The configured arm's step and workspace limits (and `teleop.max_step_m`, if smaller)."""
    teleop = config.teleop
    if config.robot.backend == "sim":
        from drivers.sim.world import WORKSPACE_HIGH, WORKSPACE_LOW

        step, low, high = config.sim.max_step_m, WORKSPACE_LOW, WORKSPACE_HIGH
    else:
        f = config.franka
        step, low, high = f.max_step, np.array(f.workspace_low), np.array(f.workspace_high)
    return Limits(min(step, teleop.max_step_m), np.asarray(low, float), np.asarray(high, float))


def open_input_device(settings: TeleopSettings) -> InputDevice:
    """The configured input device (not yet opened)."""
    if settings.device == "spacemouse":
        from drivers.input.spacemouse import SpaceMouse

        return SpaceMouse(settings.spacemouse, settings.max_step_m)
    from drivers.input.keyboard import GuidingKeys, KeyboardDevice

    if settings.device == "guiding":
        return GuidingKeys(settings.key_step_m)
    return KeyboardDevice(settings.key_step_m)


class TeleopPolicy:
    """The operator, through `device`, as a `models.tpm.policy.Policy` (see the module doc)."""

    name = "teleop"

    def __init__(self, device: InputDevice, limits: Limits, deadman_s: float) -> None:
        self.device = device
        self.limits = limits
        self.deadman_s = deadman_s
        self._gripper_closed: bool | None = None
        self._ended = False
        self._since = time.monotonic()
        self._lock = threading.Lock()
        #: actions not yet executed -> the observation they were decided on and `_asked` then
        self.pending: dict[int, tuple[Action, Observation, np.ndarray]] = {}
        #: every move the operator asked for since the episode began, and the share of it that
        #: the actions sent to the arm so far carried (see `act`)
        self._asked = np.zeros(3)
        self._sent = np.zeros(3)

    def reset(self, task: TaskSpec) -> None:
        # keys pressed since the episode's device opened (reasoning, detecting) still count: the
        # operator was told to start once the task was reasoned
        self._gripper_closed = None
        self._ended = False
        self._since = time.monotonic()
        with self._lock:
            self.pending.clear()
            self._asked, self._sent = np.zeros(3), np.zeros(3)

    def check(self, command: InputCommand, observation: Observation) -> None:
        """The deadman rule: InputSilent when the device was not heard for `deadman_s`."""
        silent = time.monotonic() - max(command.t_heard, self._since)
        if silent > self.deadman_s:
            raise InputSilent(
                f"the {self.device.name} sent nothing for {silent:.1f} s (teleop.deadman_s = "
                f"{self.deadman_s:g}): the episode ends and the arm holds"
            )

    def act(self, observation: Observation) -> Action:
        command = self.device.poll()  # InputError once the device died
        self.check(command, observation)
        closed = self._gripper_closed
        if closed is None:
            closed = bool(observation.proprio[3] > 0.5)
        if command.toggle_gripper:
            closed = not closed
        self._gripper_closed = closed
        self._ended = self._ended or command.end
        with self._lock:
            # a key press whose action the arm never got (stale, or overwritten by a newer one
            # before the command loop's tick) is carried into the next action, not lost; what a
            # sent action could not carry (beyond the max step) is dropped, so nothing piles up
            self._asked = self._asked + command.move
            action = Action(
                move=self._unsent(self._asked, self._ended, observation),
                gripper_closed=closed,
                done=self._ended,
            )
            self.pending[id(action.move)] = (action, observation, self._asked.copy())
        return action

    def _unsent(self, asked: np.ndarray, done: bool, observation: Observation) -> np.ndarray:
        """The move that carries `asked` less what was sent so far, limited from where the
        hand was in `observation` (none once the operator ended the episode). Lock held."""
        want = np.zeros(3) if done else asked - self._sent
        return self.limits.limit(want, observation.proprio[:3])

    def executed(self, move: np.ndarray) -> tuple[Action, Observation] | None:
        """The action whose `move` the command loop is sending now, with its observation, and
        with the move it must carry: what the operator had asked when it was decided, less what
        the actions sent before it carried. An action decided while an earlier one was still on
        its way was computed before that one counted as sent; sent as decided, it would carry
        the earlier presses a second time. Every action decided before it was never sent
        (latest wins) and is forgotten."""
        with self._lock:
            found = self.pending.pop(id(move), None)
            if found is None or found[0].move is not move:
                return None
            action, observation, asked = found
            carried = self._unsent(asked, action.done, observation)
            self._sent = asked
            after = observation.t_capture
            self.pending = {k: v for k, v in self.pending.items() if v[1].t_capture > after}
            return dataclasses.replace(action, move=carried), observation


class RecordingRobot:
    """The arm, recording each executed step of the current episode into `sink` (see the module
    doc). Every other call passes through unchanged."""

    def __init__(
        self, inner: Any, policy: TeleopPolicy, views: tuple[str, ...], image_size: int
    ) -> None:
        self.inner = inner
        self.policy = policy
        self.views = views
        self.image_size = image_size
        self.sink: EpisodeSink | None = None
        self.steps = 0
        self.error: str | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def open(self) -> None:
        self.inner.open()

    def state(self) -> RobotState:
        state: RobotState = self.inner.state()
        return state

    def hold(self) -> None:
        self.inner.hold()

    def stop(self) -> None:
        self.inner.stop()

    def close(self) -> None:
        self.inner.close()

    def move(self, delta: np.ndarray, gripper_closed: bool) -> None:
        found = self.policy.executed(delta)
        if found is None:  # not the operator's action (none is recorded)
            self.inner.move(delta, gripper_closed)
            return
        action, obs = found
        self.inner.move(action.move, gripper_closed)  # first the arm, then the bookkeeping
        self.add(obs, action.move, action.gripper_closed)

    def flush(self) -> None:
        """The episode's actions ended (nothing is held back here; see agent.guiding)."""

    def add(self, obs: Observation, move: np.ndarray, gripper_closed: bool) -> None:
        """Record one step into `sink` (none: nothing is recorded)."""
        sink = self.sink
        if sink is None:
            return
        try:
            rgb, mask = prepare_views(obs.images, obs.masks, self.views, self.image_size)
            sink.add_step(
                rgb,
                mask,
                np.asarray(obs.proprio, dtype=np.float32),
                np.array([*move, float(gripper_closed)], dtype=np.float32),
            )
        except Exception as exc:  # a recording error must not move or stop the arm itself
            self.error = f"recording a step failed: {exc}"
            raise DriverError(self.error) from None
        self.steps += 1


def episode_info(
    *,
    request: str,
    config: Config,
    device: str,
    notes: Mapping[str, Any],
    scene: Mapping[str, Any],
    source: str = "teleop",
) -> dict[str, Any]:
    """What an episode records about where it came from (`source`: teleop, or guiding: moved by
    hand, the actions measured rather than commanded) and its scene."""
    return {
        "source": source,
        "device": device,
        "profile": config.profile,
        "robot": config.robot.backend,
        "cameras": config.cameras.backend,
        "control_hz": config.runtime.control_hz,
        "request": request,
        **scene,
        **{k: v for k, v in notes.items() if v is not None},
        "recorded_at": time.time(),
    }
