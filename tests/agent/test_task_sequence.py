"""Many tasks on one open runtime: each starts from a known world and is judged from its own start.

Against the real MuJoCo world with the scripted expert (small images, no video). The sim world
used to keep the last task's objects and its latched "was grasped" flags, so a second "I spilled
the milk" succeeded after 2 steps and "put the sponge on the tea box" failed after 2.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import pytest

from agent import BlockingRuntime, Event, Fault, Finished, Reasoned, Runtime, Started, Step
from agent.backends import Parts, build_parts
from drivers.base import DriverError, TaskStart
from drivers.sim.success import SimJudge
from drivers.sim.world import HOME_EE
from tests.conftest import make_config

MILK = "I spilled the milk"
TEA_BOX = "put the sponge on the tea box"
#: (request, pick, place, skill), in the order run on one runtime; seed 0's scene has a tea box
SEQUENCE = [
    (MILK, "sponge", "user", "place_near"),
    (MILK, "sponge", "user", "place_near"),
    (TEA_BOX, "sponge", "tea box", "place_on"),
]
#: a real pick and place by the expert takes ~100-130 control steps; the stale judge said 2
FULL_TASK_STEPS = 40


@dataclass(frozen=True)
class _Task:
    pick: str
    place: str
    skill: str


def check_sequence(runs: list[list[Event]]) -> None:
    """Each task of SEQUENCE started in the reset scene and really did its pick and place."""
    steps = []
    for events, (request, pick, place, skill) in zip(runs, SEQUENCE, strict=True):
        started, reasoned, finished = events[0], events[1], events[-1]
        assert isinstance(started, Started) and isinstance(finished, Finished)
        assert isinstance(reasoned, Reasoned)
        assert (reasoned.pick, reasoned.place, reasoned.skill) == (pick, place, skill), request
        assert started.world is not None and started.world.reset and started.world.seed == 0
        first = next(e for e in events if isinstance(e, Step))
        assert np.linalg.norm(np.array(first.ee_pos) - HOME_EE) < 0.03, "the arm starts at home"
        outcome = finished.outcome
        assert outcome.status == "success", f"{request}: {outcome.reason}"
        assert outcome.steps > FULL_TASK_STEPS, f"{request}: judged done after {outcome.steps}"
        steps.append(outcome.steps)
    # the same task from the same start takes about as long as the first time
    assert 0.6 < steps[1] / steps[0] < 1.6, steps


def test_blocking_runtime_judges_each_task_from_its_own_start(tmp_path: Path) -> None:
    config = make_config(tmp_path, "runtime.max_duration_s=120")
    runs: list[list[Event]] = []
    with BlockingRuntime(config) as runtime:
        assert "tea box" in runtime.runtime.parts.scene_objects()
        for i, (request, *_) in enumerate(SEQUENCE):
            runs.append(list(runtime.execute(request, run_dir=tmp_path / f"run{i}")))
    check_sequence(runs)
    summary = json.loads((tmp_path / "run2" / "summary.json").read_text())
    assert summary["world"] == {
        "reset": True,
        "scene": "MuJoCo scene, seed 0 (standard, seen objects)",
        "seed": 0,
    }
    assert summary["outcome"]["status"] == "success"


async def _run(runtime: Runtime, request: str) -> list[Event]:
    return [event async for event in runtime.execute(request)]


@pytest.mark.asyncio
@pytest.mark.parametrize("between_tasks", ["reset", "carry_over"])
async def test_a_finished_scene_never_counts_for_the_next_task(
    tmp_path: Path, between_tasks: str
) -> None:
    """The world as a finished milk task leaves it: a new milk task must pick the sponge again.

    With `reset` the sponge is put back first; with `carry_over` (a real table's way) it stays by
    the user, but the earlier grasp is forgotten. Either way the task is not over at once.
    """
    config = make_config(tmp_path, "runtime.max_steps=8", f"sim.between_tasks={between_tasks}")
    async with Runtime(config) as runtime:
        world = runtime.parts.robot.world  # type: ignore[attr-defined]
        planned = world.object_position("sponge")
        user = world.object_position("user")
        world.teleport("sponge", np.array([user[0] - 0.09, user[1], 0.02]))
        world.mark_grasped("sponge")
        await anyio.sleep(0.5)  # the realtime physics lets it settle
        task = _Task("sponge", "user", "place_near")
        assert SimJudge(world).verdict(task).success  # what the stale judge used to read
        events = await _run(runtime, MILK)
        left = world.object_position("sponge")
    started, finished = events[0], events[-1]
    assert isinstance(started, Started) and isinstance(finished, Finished)
    assert started.world is not None
    assert started.world.reset is (between_tasks == "reset")
    outcome = finished.outcome
    assert outcome.status == "failure" and "step budget" in outcome.reason, outcome.reason
    assert outcome.steps >= 8
    moved_back = bool(np.linalg.norm(left[:2] - planned[:2]) < 0.03)
    assert moved_back is (between_tasks == "reset")


@pytest.mark.asyncio
async def test_a_world_that_cannot_be_readied_is_a_fault_before_anything_moves(
    tmp_path: Path,
) -> None:
    def cannot_reset() -> TaskStart:
        raise DriverError("the simulator lost its scene")

    def build(config: Any) -> Parts:
        parts = build_parts(config)
        parts.begin_task = cannot_reset
        return parts

    async with Runtime(make_config(tmp_path), parts_factory=build) as runtime:
        events = await _run(runtime, MILK)
    assert [e.kind for e in events] == ["started", "fault", "finished"]
    started, fault, finished = events
    assert isinstance(started, Started) and started.world is None
    assert isinstance(fault, Fault) and fault.where == "world"
    assert fault.message == "the simulator lost its scene"
    assert isinstance(finished, Finished) and finished.outcome.status == "fault"
