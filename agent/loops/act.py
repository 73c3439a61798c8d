"""act: newest percept + newest robot state -> policy -> latest action.

The percepts do not pass through the event loop: each policy call takes the next percept from
its `ThreadFed` slot on the policy's thread, where the perception thread fed it
(agent.loops.perceive), reads the newest robot state there and runs the policy, so an action
costs the loop one wake-up, its result. Until 2026-12-03 each percept woke the loop, which then
handed it to the policy's thread: measured in `bench loop`, about 0.1 ms of the loop's CPU a step.
"""

from __future__ import annotations

import threading
import time

from agent.channels import Latest, ThreadFed
from agent.messages import ActionMsg, PerceptMsg, observation
from agent.workers import Busy, Workers, watched
from drivers.base import RobotState
from models.tpm.policy import Policy


class _Acting:
    """The policy's side, on its thread: wait for a newer percept, then act on it."""

    def __init__(
        self,
        percepts: ThreadFed[PerceptMsg],
        states: ThreadFed[RobotState],
        policy: Policy,
        busy: Busy,
        percept_timeout: float,
    ) -> None:
        self.percepts = percepts
        self.states = states
        self.policy = policy
        self.busy = busy
        self.percept_timeout = percept_timeout
        self.seen = 0
        self.stopped = threading.Event()

    def stop(self) -> None:
        """From any thread: a wait for a percept in progress (or a later one) ends."""
        self.stopped.set()
        self.percepts.wake_threads()

    def next_action(self) -> ActionMsg:
        """On the policy's thread: the policy's action for the next percept (timed)."""
        self.seen, msg = self.percepts.wait_newer_blocking(
            self.seen, self.percept_timeout, self.stopped
        )
        newest = self.states.peek()
        if newest is None:  # the episode publishes the first state before the loops start
            raise RuntimeError("no robot state to act on")
        seen = observation(msg.percept.images, msg.percept.masks, newest[1], msg.t_capture)
        t0 = time.monotonic()
        with self.busy:
            action = self.policy.act(seen)
        t_done = time.monotonic()
        return ActionMsg(
            action=action,
            t_capture=msg.t_capture,
            t_done=t_done,
            perceive_ms=msg.perceive_ms,
            act_ms=(t_done - t0) * 1e3,
        )


async def act_loop(
    percepts: ThreadFed[PerceptMsg],
    states: ThreadFed[RobotState],
    policy: Policy,
    out: Latest[ActionMsg],
    *,
    workers: Workers,
    percept_timeout: float,
    stage_timeout: float,
) -> None:
    """One policy call per new percept, with proprioception from the newest robot state.

    A policy call that runs past `stage_timeout` is a StageTimeout naming the policy; no percept
    within `percept_timeout` a TimeoutError naming the slot.
    """
    busy = Busy("policy", stage_timeout)
    acting = _Acting(percepts, states, policy, busy, percept_timeout)
    # the call's own deadline is a backstop: the two waits inside it have theirs
    backstop = percept_timeout + busy.deadline_s + 1.0

    async def run() -> None:
        while True:
            msg = await workers.run(acting.next_action, timeout=backstop, what="policy")
            out.publish(msg)

    try:
        await watched(run, busy)
    finally:
        acting.stop()
