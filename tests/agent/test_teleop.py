"""The operator as the runtime's policy (agent/teleop.py): limits, carried key presses, deadman.

The input device here is a scripted stand-in for the protocol (`drivers.input.InputDevice`): the
real devices have their own tests (tests/drivers/test_input.py) and the whole path runs in
tests/agent/test_record.py; this file checks the arithmetic between them.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from agent.teleop import InputSilent, Limits, TeleopPolicy
from drivers.input import InputCommand
from models.types import Observation, Skill, TaskSpec

TASK = TaskSpec(request="give me the sponge", skill=Skill.PLACE_NEAR, pick="sponge", place="user")
LIMITS = Limits(0.02, np.array([0.2, -0.4, 0.01]), np.array([0.8, 0.4, 0.55]))


class Scripted:
    """Hands out the queued moves, one per poll; heard now unless told otherwise."""

    name = "scripted"

    def __init__(self) -> None:
        self.moves: list[tuple[float, float, float]] = []
        self.t_heard = time.monotonic()
        self.toggle = False

    def open(self) -> None: ...

    def close(self) -> None: ...

    def poll(self) -> InputCommand:
        move = np.array(self.moves.pop(0) if self.moves else (0.0, 0.0, 0.0))
        toggle, self.toggle = self.toggle, False
        return InputCommand(move=move, toggle_gripper=toggle, end=False, t_heard=self.t_heard)


def observe(at: tuple[float, float, float], t: float, closed: float = 0.0) -> Observation:
    return Observation(images={}, masks={}, proprio=np.array([*at, closed]), t_capture=t)


def test_moves_are_limited_to_the_max_step_and_the_workspace_box() -> None:
    inside, low = np.array([0.5, 0.0, 0.3]), np.array([0.5, 0.0, 0.02])
    assert np.allclose(LIMITS.limit(np.array([0.03, 0.04, 0.0]), inside), [0.012, 0.016, 0])
    assert np.allclose(LIMITS.limit(np.array([0.0, 0.0, -0.02]), low), [0, 0, -0.01])


def test_a_press_whose_action_was_never_sent_carries_into_the_next_and_the_excess_is_dropped():
    device = Scripted()
    policy = TeleopPolicy(device, LIMITS, deadman_s=5.0)
    policy.reset(TASK)
    here = (0.5, 0.0, 0.3)
    device.moves = [(0.01, 0, 0), (0.01, 0, 0), (0.05, 0, 0), (0, 0, 0)]
    first = policy.act(observe(here, 1.0))  # overwritten before the command loop's tick
    second = policy.act(observe(here, 2.0))
    assert np.allclose(first.move, [0.01, 0, 0]) and np.allclose(second.move, [0.02, 0, 0])
    found = policy.executed(second.move)
    assert found is not None and found[1].t_capture == 2.0
    assert policy.executed(first.move) is None  # older than the one sent: forgotten
    third = policy.act(observe(here, 3.0))  # 5 cm asked: one max step is sent, the rest dropped
    assert np.allclose(third.move, [0.02, 0, 0])
    policy.executed(third.move)
    assert np.allclose(policy.act(observe(here, 4.0)).move, 0.0)


def test_two_actions_decided_before_either_was_sent_carry_each_press_once():
    """Both presses heard before the first action; the second action was decided before the
    first counted as sent. Sent one after the other, the arm goes 2 cm, not 4 (what CI caught:
    the recorded episode held -0.02, -0.02 for two presses of 1 cm)."""
    device = Scripted()
    policy = TeleopPolicy(device, LIMITS, deadman_s=5.0)
    policy.reset(TASK)
    here = (0.5, 0.0, 0.3)
    device.moves = [(-0.02, 0, 0), (0, 0, 0)]
    first, second = policy.act(observe(here, 1.0)), policy.act(observe(here, 2.0))
    assert np.allclose(first.move, [-0.02, 0, 0]) and np.allclose(second.move, [-0.02, 0, 0])
    sent = [policy.executed(first.move), policy.executed(second.move)]
    assert all(found is not None for found in sent)
    moves = [found[0].move for found in sent if found is not None]
    assert np.allclose(moves, [[-0.02, 0, 0], [0, 0, 0]])


def test_the_gripper_toggles_from_the_arms_state_and_a_silent_device_ends_the_episode():
    device = Scripted()
    policy = TeleopPolicy(device, LIMITS, deadman_s=0.2)
    policy.reset(TASK)
    device.toggle = True
    assert policy.act(observe((0.5, 0, 0.3), 1.0, closed=0.0)).gripper_closed is True
    assert policy.act(observe((0.5, 0, 0.3), 2.0, closed=0.0)).gripper_closed is True  # kept
    device.t_heard = time.monotonic() - 1.0
    time.sleep(0.25)  # also past the episode's start
    with pytest.raises(InputSilent, match="the scripted sent nothing for"):
        policy.act(observe((0.5, 0, 0.3), 3.0))
