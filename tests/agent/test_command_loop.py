"""The command loop's two schedules against the real sim arm (lockstep world, no physics thread):
act on arrival (rate-limited, latest wins) and the fixed-rate clock.

Nothing is faked: the actions are published on the real latest-wins channel the act loop uses, and
the robot is the sim's `SimRobot`, wrapped only to note when each `move` call was made. Time
margins are generous (hundreds of ms): these check the schedule's logic, not its speed, which
`bench loop` measures.
"""

from __future__ import annotations

import threading
import time

import anyio
import numpy as np
import pytest

from agent.channels import Latest
from agent.loops.command import CommandTick, command_loop
from agent.messages import ActionMsg, StepRecord
from agent.workers import Workers
from drivers.base import RobotState
from drivers.sim.robot import SimRobot
from drivers.sim.scene import SceneSpec
from drivers.sim.success import Verdict
from drivers.sim.world import World
from models.types import Action

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def world() -> World:
    world = World.build(SceneSpec(seed=0, objects=["sponge"], include_user=False))
    yield world
    world.close()


class TimedRobot:
    """The real sim robot; notes the monotonic time (the clock anyio's asyncio loop reads) and
    the x move of each `move` call, which runs in a worker thread."""

    def __init__(self, inner: SimRobot) -> None:
        self.inner = inner
        self.moves: list[tuple[float, float]] = []  # (anyio time, dx)

    def __getattr__(self, name: str):
        return getattr(self.inner, name)

    def move(self, delta: np.ndarray, gripper_closed: bool) -> None:
        self.moves.append((time.monotonic(), float(delta[0])))
        self.inner.move(delta, gripper_closed)


def _action(dx: float, t_capture: float) -> ActionMsg:
    now = anyio.current_time()
    return ActionMsg(
        action=Action(move=np.array([dx, 0.0, 0.0]), gripper_closed=False),
        t_capture=t_capture,
        t_done=now,
        perceive_ms=0.0,
        act_ms=0.0,
    )


async def _run(
    world: World, mode: str, rate_hz: float, script, *, min_interval_s: float = 0.0, **extra
):
    """Run the command loop beside `script(actions)`, then return the robot, ticks and states."""
    robot = TimedRobot(SimRobot(world, realtime=False))
    actions: Latest[ActionMsg] = Latest("actions")
    states: Latest[RobotState] = Latest("states")
    steps: Latest[StepRecord] = Latest("steps")
    ticks: list[CommandTick] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(
            lambda: command_loop(
                actions,
                states,
                steps,
                robot,
                rate_hz=rate_hz,
                deadline_s=0.5,
                workers=Workers("test"),
                call_timeout=5.0,
                max_steps=100,
                on_tick=ticks.append,
                mode=mode,
                min_interval_s=min_interval_s,
                **extra,
            )
        )
        await script(actions)
        tg.cancel_scope.cancel()
    return robot, ticks, states


async def test_on_arrival_sends_each_action_without_waiting_for_a_clock(world: World) -> None:
    """With a 1 Hz state clock, each action still goes out as soon as it is published."""
    published: list[float] = []

    async def script(actions: Latest[ActionMsg]) -> None:
        await anyio.sleep(0.05)
        for dx in (0.001, 0.002, 0.003):
            published.append(anyio.current_time())
            actions.publish(_action(dx, published[-1]))
            await anyio.sleep(0.15)

    robot, ticks, states = await _run(world, "on_arrival", 1.0, script)
    assert [dx for _, dx in robot.moves] == [0.001, 0.002, 0.003]
    assert [t.record.executed for t in ticks] == [True] * 3
    waits = [sent - pub for (sent, _), pub in zip(robot.moves, published, strict=True)]
    assert max(waits) < 0.1, waits  # the 1 Hz clock would have made them wait up to 1 s
    assert states.published >= 4  # a state read before the first action and one per command


async def test_on_arrival_keeps_the_minimum_interval_and_sends_the_newest(world: World) -> None:
    """Three actions 10 ms apart right after a command: the next command waits out the 300 ms
    interval and then sends the newest of them; the two in between are never executed."""

    async def script(actions: Latest[ActionMsg]) -> None:
        await anyio.sleep(0.05)
        actions.publish(_action(0.001, anyio.current_time()))
        await anyio.sleep(0.02)
        for dx in (0.002, 0.003, 0.004):
            actions.publish(_action(dx, anyio.current_time()))
            await anyio.sleep(0.01)
        await anyio.sleep(0.5)

    robot, ticks, _ = await _run(world, "on_arrival", 5.0, script, min_interval_s=0.3)
    assert [dx for _, dx in robot.moves] == [0.001, 0.004]
    assert robot.moves[1][0] - robot.moves[0][0] >= 0.3 - 1e-3
    assert [t.record.index for t in ticks] == [1, 2]


async def test_on_arrival_refuses_a_stale_action_and_holds(world: World) -> None:
    async def script(actions: Latest[ActionMsg]) -> None:
        await anyio.sleep(0.05)
        actions.publish(_action(0.001, anyio.current_time() - 2.0))  # frame 2 s old
        await anyio.sleep(0.1)

    robot, ticks, _ = await _run(world, "on_arrival", 5.0, script)
    assert robot.moves == [] and [t.record.executed for t in ticks] == [False]


async def test_fixed_rate_waits_for_its_tick_and_reads_state_every_period(world: World) -> None:
    """At 2 Hz an action published just after a tick waits for the next one (~0.5 s)."""
    published: list[float] = []

    async def script(actions: Latest[ActionMsg]) -> None:
        await anyio.sleep(0.1)
        published.append(anyio.current_time())
        actions.publish(_action(0.001, published[0]))
        await anyio.sleep(0.9)

    robot, _, states = await _run(world, "fixed_rate", 2.0, script)
    assert [dx for _, dx in robot.moves] == [0.001]
    assert robot.moves[0][0] - published[0] > 0.25
    assert states.published >= 2


async def test_the_success_check_rides_on_a_moves_robot_call_at_most_once_a_period(
    world: World,
) -> None:
    """`check` runs on the robot's thread right after a fresh action's move, at most every
    `check_period_s`, and its verdict reaches `verdicts` (the supervisor's); the command's send
    time is the move's, not the check's end."""
    calls: list[tuple[str, float]] = []

    def check() -> Verdict:
        calls.append((threading.current_thread().name, time.monotonic()))
        time.sleep(0.05)  # a slow check must not count in the command's latency
        return Verdict(False, False, f"check {len(calls)}")

    verdicts: Latest[Verdict] = Latest("verdicts")

    async def script(actions: Latest[ActionMsg]) -> None:
        await anyio.sleep(0.05)
        for dx in (0.001, 0.002, 0.003, 0.004):
            actions.publish(_action(dx, anyio.current_time()))
            await anyio.sleep(0.12)

    robot, ticks, _ = await _run(
        world, "on_arrival", 1.0, script, check=check, check_period_s=0.2, verdicts=verdicts
    )
    assert len(robot.moves) == 4
    assert len(calls) == 2, calls  # moves 120 ms apart, checks at least 200 ms apart
    assert all(name == "test-worker" for name, _ in calls)
    assert calls[1][1] - calls[0][1] >= 0.2
    assert verdicts.published == 2 and verdicts.peek()[1].reason == "check 2"
    assert max(t.command_ms for t in ticks) < 50, [t.command_ms for t in ticks]
