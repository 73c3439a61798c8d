"""Grasp retry (agent.grasp_retry) in the MuJoCo world: a hand closed on nothing is opened and
lifted, a hand closed on an object is left alone, and the retries are bounded per episode.

The inner policies are small scripted ones (the runtime's policy protocol): they drive the real
simulated arm and gripper, so the gap the retry judges by is the one MuJoCo's fingers report.
"""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")

from dataclasses import dataclass

import numpy as np
import pytest

from agent.backends import build_tpm_policy
from agent.config import load_config
from agent.grasp_retry import GraspRetry, GraspRetrySettings
from drivers.sim.expert import ScriptedExpert
from drivers.sim.robot import SimRobot
from drivers.sim.scene import SceneSpec
from drivers.sim.world import World
from models.types import Action, ActionLike, Observation, TaskSpec


@dataclass(frozen=True)
class Task:
    pick: str
    place: str
    skill: str


TASK = Task("sponge", "user", "place_near")


class CloseWhereYouAre:
    """Lowers the hand `descend` steps of 1 cm, then closes it and keeps it closed."""

    name = "close-where-you-are"

    def __init__(self, descend: int) -> None:
        self.descend = descend
        self.calls = 0

    def reset(self, task: TaskSpec) -> None:
        self.calls = 0

    def act(self, observation: Observation) -> ActionLike:
        self.calls += 1
        down = self.calls <= self.descend
        return Action(move=np.array([0.0, 0.0, -0.01 if down else 0.0]), gripper_closed=not down)


class ExpertPolicy:
    """The scripted expert behind the policy protocol (it reads the world, not the observation)."""

    name = "expert"

    def __init__(self, world: World) -> None:
        self.expert = ScriptedExpert(world, max_step=0.01)

    def reset(self, task: TaskSpec) -> None:
        self.expert.reset(task)

    def act(self, observation: Observation) -> ActionLike:
        return self.expert.act(None)


def _drive(world: World, policy: GraspRetry, steps: int) -> list[tuple[ActionLike, float]]:
    """Lockstep: observe the robot, act, move, one 10 Hz control step; (action, gap) per step."""
    robot = SimRobot(world, max_step=0.02, realtime=False)
    policy.reset(TASK)  # type: ignore[arg-type]
    seen = []
    for _ in range(steps):
        state = robot.state()
        proprio = np.array([*state.ee_pos, float(state.gripper_closed)], dtype=np.float32)
        action = policy.act(Observation({}, {}, proprio, gripper_width=state.gripper_width))
        robot.move(np.asarray(action.move), action.gripper_closed)
        world.step(50)
        seen.append((action, state.gripper_width))
    return seen


@pytest.fixture(scope="module")
def world() -> World:
    with World.build(SceneSpec(seed=0, objects=["sponge"])) as built:
        yield built


def test_a_hand_closed_on_nothing_is_opened_lifted_and_handed_back(world: World) -> None:
    world.reset()
    inner = CloseWhereYouAre(descend=3)
    settings = GraspRetrySettings(retries=2, empty_gap_m=0.005, lift_m=0.04)
    policy = GraspRetry(inner, settings)
    seen = _drive(world, policy, 60)
    takeovers = [i for i, (a, _) in enumerate(seen) if "grasp_retry" in a.info]
    assert policy.retries_used == 2  # it closed on nothing again after each retry: bounded
    assert len(takeovers) == 2 * settings.lift_steps
    first = takeovers[0]
    assert seen[first][1] < settings.empty_gap_m  # what it saw: the fingers together, closed
    for i in takeovers[: settings.lift_steps]:
        action = seen[i][0]
        assert not action.gripper_closed
        np.testing.assert_allclose(action.move, [0.0, 0.0, 0.01], atol=1e-6)
    # the real fingers opened during the takeover, and the policy had the arm back after it
    assert max(gap for _, gap in seen[first : first + settings.lift_steps + 1]) > 0.02
    assert inner.calls == 60 - len(takeovers)
    assert all(a.gripper_closed for a, _ in seen[takeovers[-1] + 1 :])  # passes through now


def test_a_hand_closed_on_the_object_is_left_alone(world: World) -> None:
    """The expert grasps the sponge and carries it: the gap stays the sponge's, no retry."""
    world.reset()
    policy = GraspRetry(ExpertPolicy(world), GraspRetrySettings())
    seen = _drive(world, policy, 90)
    closed_gaps = [gap for a, gap in seen[-20:] if a.gripper_closed]
    assert closed_gaps and min(closed_gaps) > 0.01  # holding: the sponge between the fingers
    assert world.was_grasped("sponge")
    assert policy.retries_used == 0 and not any("grasp_retry" in a.info for a, _ in seen)


def test_no_gap_reported_means_no_retry() -> None:
    inner = CloseWhereYouAre(descend=0)
    policy = GraspRetry(inner, GraspRetrySettings())
    closed = np.array([0.5, 0.0, 0.1, 1.0], dtype=np.float32)
    for _ in range(5):
        action = policy.act(Observation({}, {}, closed, gripper_width=None))
        assert action.gripper_closed
    assert policy.retries_used == 0


def test_the_config_wraps_the_tpm_policy_only_when_asked() -> None:
    plain = build_tpm_policy(load_config("sim"))  # off by default
    assert not isinstance(plain, GraspRetry)
    asked = ["runtime.grasp_retries=3", "runtime.empty_grip_m=0.004", "runtime.retry_lift_m=0.06"]
    wrapped = build_tpm_policy(load_config("sim", asked))
    assert isinstance(wrapped, GraspRetry)
    assert wrapped.name == "tpm" and "place_near" in wrapped.skills
    assert wrapped.settings == GraspRetrySettings(retries=3, empty_gap_m=0.004, lift_m=0.06)
    assert wrapped.settings.lift_steps == 6
