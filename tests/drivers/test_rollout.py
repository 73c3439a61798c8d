"""The shared step loop (`drivers.sim.rollout`) on a real lockstep MuJoCo scene and its expert."""

from __future__ import annotations

import pytest

pytest.importorskip("mujoco")

from drivers.base import Frame, RobotState
from drivers.sim import SceneSpec, ScriptedExpert
from drivers.sim.expert import ExpertAction
from drivers.sim.rollout import LockstepScene, perceiving, run_steps


class Task:
    pick, place, skill = "sponge", "user", "place_near"


class Counting:
    """Perception that only counts: `start` once on the first views, `step` on every later."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def start(self, task: object, views: dict[str, Frame]) -> str:
        self.calls.append("start")
        return "start"

    def step(self, views: dict[str, Frame]) -> str:
        self.calls.append("step")
        return "step"


def test_steps_move_the_arm_then_end_on_budget_stop_or_done() -> None:
    spec = SceneSpec(seed=0, objects=["sponge"], image_width=64, image_height=64)
    with LockstepScene.open(spec, ["front"], control_hz=10.0, max_step_m=0.02) as scene:
        assert scene.control_steps == round(0.1 / scene.world.model.opt.timestep)
        expert = ScriptedExpert(scene.world)
        expert.reset(Task())
        perception = Counting()
        seen: list[str] = []

        def decide(percept: str, state: RobotState) -> ExpertAction | None:
            seen.append(percept)
            action = expert.act(None)
            return None if action.done else action

        start = scene.robot.state().ee_pos.copy()
        t0 = scene.world.data.time
        observe = perceiving(perception, Task(), scene.render)
        ended = run_steps(observe, decide, scene.robot, max_steps=3, advance=scene.advance)
        assert (ended.moves, ended.budget_used) == (3, True)
        assert perception.calls == seen == ["start", "step", "step"]
        assert scene.world.data.time == pytest.approx(t0 + 0.3)  # one control period a move
        assert abs(scene.robot.state().ee_pos - start).max() > 0.005  # the arm followed

        ended = run_steps(observe, decide, scene.robot, max_steps=50, until=lambda: True)
        assert (ended.moves, ended.stopped) == (1, True)  # `until` is asked after each move

        ended = run_steps(observe, decide, scene.robot, max_steps=400, advance=scene.advance)
        assert ended.done and not ended.budget_used and 20 < ended.moves < 400
        assert expert.phase == "done"
