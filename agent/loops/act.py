"""act: newest percept + newest robot state -> policy -> latest action."""

from __future__ import annotations

import time

from agent.channels import Latest
from agent.messages import ActionMsg, PerceptMsg, observation
from agent.workers import Workers
from drivers.base import RobotState
from models.tpm.policy import Policy


async def act_loop(
    percepts: Latest[PerceptMsg],
    states: Latest[RobotState],
    policy: Policy,
    out: Latest[ActionMsg],
    *,
    workers: Workers,
    percept_timeout: float,
    stage_timeout: float,
) -> None:
    """One policy call per new percept, with proprioception from the newest robot state."""
    reader = percepts.reader()
    while True:
        msg = await reader.next(timeout=percept_timeout)
        newest = states.peek()
        if newest is None:
            continue  # the command loop publishes the first state before this can happen
        seen = observation(msg.percept.images, msg.percept.masks, newest[1], msg.t_capture)
        t0 = time.monotonic()
        action = await workers.run(policy.act, seen, timeout=stage_timeout, what="policy")
        t_done = time.monotonic()
        out.publish(
            ActionMsg(
                action=action,
                t_capture=msg.t_capture,
                t_done=t_done,
                perceive_ms=msg.perceive_ms,
                act_ms=(t_done - t0) * 1e3,
            )
        )
