"""How an episode that failed ended, in a few words an operator or a planner can count.

A failure's reason says what ran out ("step budget of 250 steps used up"), not what the arm was
doing then; every diagnosis in policies/TRAINING.md took a script of its own to tell an arm that
closed its hand beside the object from one that stalled with it open. The episode keeps its last
steps' proprioception (`Tail`: hand position, commanded gripper, measured finger gap) and
`ending` names the end (`Outcome.ended`), one of `ENDINGS`:

- the success check ended it with the object put down elsewhere: "placed wrong";
- the step or time budget ran out: by the last step, "closed on nothing" (hand closed, the
  fingers' gap under `EMPTY_GAP_M`: nothing between them), "holding, never released" (closed on
  something, or a robot that reports no gap), "stalled, hand open" (open, the hand stayed within
  `STILL_M` over the tail) or "wandering, hand open" ("no step taken" when none was);
- anything else by its cause: "target lost", the runtime's own status ("not found",
  "infeasible", "cancelled"), "fault" (a device or model fault, or the trial's process died).
  The evaluation adds "misread request" (the reasoner chose another task than the trial's).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

#: a closed hand whose fingers' gap is smaller holds nothing (every object in our catalogs is 2 cm
#: or more across); the grasp retry's default threshold too (`runtime.empty_grip_m`)
EMPTY_GAP_M = 0.005
STILL_M = 0.01  # the hand moved less than this over the tail: it stalled
TAIL_STEPS = 20

ENDINGS = (
    "placed wrong",
    "closed on nothing",
    "holding, never released",
    "stalled, hand open",
    "wandering, hand open",
    "no step taken",
    "target lost",
    "misread request",
    "not found",
    "infeasible",
    "cancelled",
    "fault",
)


@dataclass
class Tail:
    """An episode's last `TAIL_STEPS` steps: hand position, commanded gripper, finger gap."""

    ee_pos: deque[tuple[float, float, float]] = field(
        default_factory=lambda: deque(maxlen=TAIL_STEPS)
    )
    closed: bool = False
    gap_m: float | None = None

    def add(
        self, ee_pos: Sequence[float], gripper_closed: bool, gripper_width: float | None
    ) -> None:
        self.ee_pos.append((float(ee_pos[0]), float(ee_pos[1]), float(ee_pos[2])))
        self.closed, self.gap_m = gripper_closed, gripper_width

    def moved_m(self) -> float:
        """How far the hand got from where the tail began (its farthest point)."""
        if len(self.ee_pos) < 2:
            return 0.0
        points = np.asarray(self.ee_pos)
        return float(np.linalg.norm(points - points[0], axis=1).max())


def closed_on_nothing(closed: bool, gap_m: float | None, empty_gap_m: float = EMPTY_GAP_M) -> bool:
    """The hand was told to close and its fingers' gap shows nothing between them (a robot that
    reports no gap never reads as empty)."""
    return closed and gap_m is not None and gap_m < empty_gap_m


def ending(status: str, reason: str, tail: Tail | None) -> str | None:
    """How an episode with `status` and `reason` ended, one of ENDINGS; None for a success."""
    if status == "success":
        return None
    if status != "failure":
        kind = status.replace("_", " ")
        return kind if kind in ENDINGS else "fault"  # "crashed": the trial's process died
    if reason.startswith("target lost"):
        return "target lost"
    if "budget" not in reason:
        return "placed wrong"  # the success check's verdict: the object came to rest elsewhere
    if tail is None or not tail.ee_pos:
        return "no step taken"
    if closed_on_nothing(tail.closed, tail.gap_m):
        return "closed on nothing"
    if tail.closed:
        return "holding, never released"
    return "stalled, hand open" if tail.moved_m() < STILL_M else "wandering, hand open"
