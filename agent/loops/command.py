"""command: a fixed-rate loop that sends fresh actions to the robot and refuses stale ones."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import anyio

from agent.channels import Latest
from agent.messages import ActionMsg, StepRecord
from agent.workers import run_blocking
from drivers.base import Robot, RobotState


@dataclass(frozen=True, slots=True)
class CommandTick:
    """What happened to one received action, with everything telemetry needs."""

    record: StepRecord
    action: ActionMsg
    state: RobotState
    command_ms: float
    total_ms: float
    lateness_ms: float


async def command_loop(
    actions: Latest[ActionMsg],
    states: Latest[RobotState],
    steps: Latest[StepRecord],
    robot: Robot,
    *,
    rate_hz: float,
    deadline_s: float,
    limiter: anyio.CapacityLimiter,
    call_timeout: float,
    max_steps: int,
    on_tick: Callable[[CommandTick], None],
) -> None:
    """Every period: read the robot state, then execute the newest unseen action if fresh.

    An action whose source frame is older than `deadline_s` is not executed: the arm holds
    (diffusion_policy's rule: late actions are dropped, not executed). With no new action the
    driver keeps moving to its last target. Ticks are scheduled on absolute deadlines, so one slow
    tick does not shift the whole schedule; a tick that is more than a period late is skipped.
    The step budget is enforced here, where steps happen: after `max_steps` actions the arm
    holds and no further action is taken, whenever the supervisor gets to end the episode.
    """
    period = 1.0 / rate_hz
    reader = actions.reader()
    index = 0
    next_tick = anyio.current_time()
    while True:
        lateness_ms = max(0.0, anyio.current_time() - next_tick) * 1e3
        state = await run_blocking(
            robot.state, limiter=limiter, timeout=call_timeout, what="robot state read"
        )
        states.publish(state)
        msg = reader.poll() if index < max_steps else None
        if msg is not None:
            age = anyio.current_time() - msg.t_capture
            executed = age <= deadline_s
            t0 = anyio.current_time()
            if executed:
                await run_blocking(
                    robot.move,
                    msg.action.move,
                    msg.action.gripper_closed,
                    limiter=limiter,
                    timeout=call_timeout,
                    what="robot move",
                )
            else:
                await run_blocking(robot.hold, limiter=limiter, timeout=call_timeout, what="hold")
            t_sent = anyio.current_time()
            index += 1
            if index == max_steps:
                await run_blocking(robot.hold, limiter=limiter, timeout=call_timeout, what="hold")
            record = StepRecord(index=index, executed=executed, done=msg.action.done, t=t_sent)
            steps.publish(record)
            on_tick(
                CommandTick(
                    record=record,
                    action=msg,
                    state=state,
                    command_ms=(t_sent - t0) * 1e3,
                    total_ms=(t_sent - msg.t_capture) * 1e3,
                    lateness_ms=lateness_ms,
                )
            )
        next_tick += period
        now = anyio.current_time()
        if next_tick < now - period:
            next_tick = now  # overrun: skip missed ticks instead of bursting to catch up
        await anyio.sleep_until(next_tick)
