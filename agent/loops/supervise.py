"""supervise: decides when an episode ends (success check, policy done, step and time budgets)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass

import anyio

from agent.channels import Latest
from agent.messages import StepRecord
from agent.workers import Workers
from drivers.sim.success import Judge, Verdict
from models.types import TaskSpec

#: the supervisor checks success itself after this many periods without a verdict from a step
OWN_CHECK_PERIODS = 1.5


@dataclass(frozen=True, slots=True)
class Ending:
    status: str  # "success" | "failure"
    success: bool | None
    reason: str


async def supervise_loop(
    task: TaskSpec,
    judge: Judge | None,
    steps: Latest[StepRecord],
    *,
    rate_hz: float,
    max_steps: int,
    max_duration_s: float,
    settle_s: float,
    workers: Workers,
    call_timeout: float,
    lost: Callable[[float], str | None] | None = None,
    verdicts: Latest[Verdict] | None = None,
) -> Ending:
    """Return how the episode ends; the caller then cancels the other loops.

    `lost(now)` (the target watch's `lost_reason`) ends it as a failure when a target has been
    missing from every view too long; a success check that passes first still wins.
    `verdicts`: success checks made elsewhere (the command loop's, on the robot's thread after a
    move, agent.loops.command); the judge is called here only when none came for
    `OWN_CHECK_PERIODS` periods.
    """
    start = time.monotonic()
    done_since: float | None = None
    period = 1.0 / rate_hz
    reader = verdicts.reader() if verdicts is not None and judge is not None else None
    while True:
        verdict: Verdict | None = None
        if reader is None:
            await anyio.sleep(period)
        else:
            with contextlib.suppress(TimeoutError):
                verdict = await reader.next(timeout=period * OWN_CHECK_PERIODS)
        now = time.monotonic()
        latest = steps.peek()
        record = latest[1] if latest else None
        if judge is not None:
            if verdict is None:
                verdict = await workers.run(
                    judge.verdict, task, timeout=call_timeout, what="success check"
                )
            if verdict.done:
                return Ending(
                    "success" if verdict.success else "failure", verdict.success, verdict.reason
                )
        reason = lost(now) if lost is not None else None
        if reason is not None:
            return Ending("failure", False, reason)
        if record is not None and record.done:
            done_since = done_since if done_since is not None else now
            if now - done_since >= settle_s:
                if verdict is None:
                    return Ending("success", None, "the policy finished (no success check here)")
                return Ending("failure", False, f"the policy finished but {verdict.reason}")
        if record is not None and record.index >= max_steps:
            return Ending("failure", False, f"step budget of {max_steps} steps used up")
        if now - start > max_duration_s:
            return Ending("failure", False, f"time budget of {max_duration_s:g} s used up")
