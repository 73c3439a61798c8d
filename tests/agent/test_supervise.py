"""The supervisor's success checks: taken from the command loop's robot calls while steps come,
made by the supervisor itself only when none came (real channels, a real asyncio loop and worker
thread; the judge is a small scripted one, as the sim's needs a world and a grasp)."""

from __future__ import annotations

import anyio
import pytest

from agent.channels import Latest
from agent.loops.supervise import OWN_CHECK_PERIODS, supervise_loop
from agent.messages import StepRecord
from agent.workers import Workers
from drivers.sim.success import Verdict
from models.types import Skill, TaskSpec

pytestmark = pytest.mark.anyio
TASK = TaskSpec("wipe the milk", Skill.PLACE_NEAR, pick="sponge", place="user")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class CountingJudge:
    def __init__(self) -> None:
        self.calls = 0

    def verdict(self, task: TaskSpec) -> Verdict:
        self.calls += 1
        return Verdict(True, True, "its own check")


async def supervise(judge: CountingJudge, verdicts: Latest[Verdict], rate_hz: float):
    return await supervise_loop(
        TASK,
        judge,
        Latest[StepRecord]("steps"),
        rate_hz=rate_hz,
        max_steps=100,
        max_duration_s=30.0,
        settle_s=0.0,
        workers=Workers("judge"),
        call_timeout=5.0,
        verdicts=verdicts,
    )


async def test_verdicts_from_the_steps_end_the_episode_without_a_check_of_its_own() -> None:
    judge, verdicts = CountingJudge(), Latest[Verdict]("verdicts")
    ending = []

    async def run() -> None:
        ending.append(await supervise(judge, verdicts, rate_hz=5.0))

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        for reason in ("not grasped yet", "still moving"):
            await anyio.sleep(0.1)  # steps come faster than 1.5 periods (0.3 s)
            verdicts.publish(Verdict(False, False, reason))
        await anyio.sleep(0.1)
        verdicts.publish(Verdict(True, True, "sponge is 2 cm from user"))
    assert ending[0].status == "success" and ending[0].reason == "sponge is 2 cm from user"
    assert judge.calls == 0


async def test_without_steps_the_supervisor_checks_for_itself() -> None:
    judge, verdicts = CountingJudge(), Latest[Verdict]("verdicts")
    started = anyio.current_time()
    ending = await supervise(judge, verdicts, rate_hz=10.0)
    assert ending.reason == "its own check" and judge.calls == 1
    assert anyio.current_time() - started >= OWN_CHECK_PERIODS / 10.0 - 0.01
