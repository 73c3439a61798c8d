"""Grasp retry: a hand that closed on nothing opens, lifts and lets the policy try again.

Why: the learned policy's most common closed-loop failure is closing its hand beside the object
and staying there (policies/TRAINING.md, stages 9-11: 8 to 16 of 26-28 lockstep failures end with
the hand closed on nothing), a state its demonstrations hardly hold and it rarely leaves by
itself. The fingers' measured gap tells such a grasp from a real one without any model: closed
around an object the gap stays at least the object's thickness (2 cm and more in our catalogs),
closed on nothing it falls to about zero. libfranka's own `Gripper::grasp` judges a grasp by the
same gap, and every robot driver here reports it (`RobotState.gripper_width`).

`GraspRetry` wraps a policy: while the last command closed the hand (the proprioception's gripper
bit) and the measured gap is below `empty_gap_m`, it takes over for a few steps, opening the hand
and lifting it `lift_m` straight up in steps no longer than `step_m` (the policy's own step size),
then hands control back. The policy then sees an open hand above the object, the state its
demonstrations reach the grasp from. At most `retries` times an episode; after that the policy's
actions pass through untouched (a policy that keeps closing on nothing fails as it would have).

Off by default (`runtime.grasp_retries = 0`): with the shipped policy it measured no gain (20
validation trials a cell, the same scenes: standard 12/20 with it, 11/20 and 13/20 in two runs
without; new background 6/20 with it, 6/20 and 8/20 without).
The retries did fire, in 3 of the 8 standard failures, and each time the policy closed again at
the same spot, 2.5-8 cm beside the object: its misses are a systematic misjudgement of where the
object is, which a second try does not change. Offered for policies whose misses are not.

A thin object (thinner than `empty_gap_m`) would read as nothing: lower the threshold for such a
catalog.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import structlog

from agent.endings import EMPTY_GAP_M, closed_on_nothing
from models.tpm.policy import Policy
from models.types import Action, ActionLike, Observation, TaskSpec

log = structlog.get_logger("agent.grasp_retry")


@dataclass(frozen=True, slots=True)
class GraspRetrySettings:
    """How often and how far a hand that closed on nothing is taken back (`runtime` section)."""

    retries: int = 2
    empty_gap_m: float = EMPTY_GAP_M
    lift_m: float = 0.04
    step_m: float = 0.01

    @property
    def lift_steps(self) -> int:
        """Steps of the takeover: at least one (it opens the hand), more to lift `lift_m`."""
        return max(1, math.ceil(self.lift_m / self.step_m - 1e-9))


class GraspRetry:
    """A policy that hands `inner` back the arm with the hand open after an empty grasp."""

    def __init__(self, inner: Policy, settings: GraspRetrySettings) -> None:
        self.inner = inner
        self.settings = settings
        self.name = inner.name
        skills = getattr(inner, "skills", None)
        if skills is not None:
            self.skills = skills  # the runtime's feasibility check reads it (optional member)
        self.retries_used = 0
        self._takeover_left = 0

    def reset(self, task: TaskSpec) -> None:
        self.retries_used = 0
        self._takeover_left = 0
        self.inner.reset(task)

    def act(self, observation: Observation) -> ActionLike:
        if self._takeover_left == 0 and self._may_retry(observation):
            self.retries_used += 1
            self._takeover_left = self.settings.lift_steps
            log.info(
                "grasp retry",
                retry=self.retries_used,
                of=self.settings.retries,
                gap_mm=round(1e3 * float(observation.gripper_width or 0.0), 1),
            )
        if self._takeover_left > 0:
            self._takeover_left -= 1
            lift = self.settings.lift_m / self.settings.lift_steps
            return Action(
                move=np.array([0.0, 0.0, lift], dtype=np.float32),
                gripper_closed=False,
                info={"grasp_retry": float(self.retries_used)},
            )
        return self.inner.act(observation)

    def _may_retry(self, observation: Observation) -> bool:
        """A retry is left, and the hand closed on nothing (agent.endings' rule)."""
        closed = float(observation.proprio[3]) >= 0.5
        return self.retries_used < self.settings.retries and closed_on_nothing(
            closed, observation.gripper_width, self.settings.empty_gap_m
        )
