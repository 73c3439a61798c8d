"""How a failed trial ended, in a few words a planner can count: the evaluation's failure table.

A success rate says how often a policy fails, not how; every diagnosis in policies/TRAINING.md so
far took a script of its own to tell an arm that closed its hand beside the object from one that
stalled with it open. Each trial now keeps the last steps' proprioception (`Tail`, from the
runtime's `Step` events: hand position, commanded gripper, measured finger gap), and `ending`
sorts it into one of `ENDINGS`:

- the success check ended the trial with the object put down elsewhere: "placed wrong";
- the step or time budget ran out: by the last step, "closed on nothing" (hand closed, the
  fingers' gap under `EMPTY_GAP_M`: nothing between them), "holding, never released" (closed on
  something), "stalled, hand open" (open, the hand moved under `STILL_M` over the tail) or
  "wandering, hand open";
- anything else by its cause: "target lost", "misread request" (the reasoner chose another
  task), the runtime's own status ("not found", "infeasible", "cancelled"), "fault" (a crash or
  a device fault).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

EMPTY_GAP_M = 0.005  # a closed hand with a smaller gap holds nothing (agent.grasp_retry's default)
STILL_M = 0.01  # the hand moved less than this over the tail: it stalled
TAIL_STEPS = 20

ENDINGS = (
    "placed wrong",
    "closed on nothing",
    "holding, never released",
    "stalled, hand open",
    "wandering, hand open",
    "target lost",
    "misread request",
    "not found",
    "infeasible",
    "cancelled",
    "fault",
)


@dataclass
class Tail:
    """The last `TAIL_STEPS` steps of a trial: hand position, commanded gripper, finger gap."""

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


def ending(result: Mapping[str, Any], tail: Tail | None) -> str | None:
    """How the trial in `result` (run_trial's dict) ended, one of ENDINGS; None for a success."""
    if result.get("success"):
        return None
    reason = str(result.get("reason", ""))
    status = str(result.get("status"))
    if reason.startswith("reasoner chose"):
        return "misread request"
    if status != "failure":
        kind = status.replace("_", " ")
        return kind if kind in ENDINGS else "fault"  # "crashed": the trial's process died
    if reason.startswith("target lost"):
        return "target lost"
    if "budget" not in reason:
        return "placed wrong"  # the success check's verdict: the object came to rest elsewhere
    if tail is None or not tail.ee_pos:
        return "fault"
    if tail.closed:
        if tail.gap_m is not None and tail.gap_m < EMPTY_GAP_M:
            return "closed on nothing"
        return "holding, never released"
    return "stalled, hand open" if tail.moved_m() < STILL_M else "wandering, hand open"


def failure_table(rows: Sequence[tuple[str, Sequence[Mapping[str, Any]]]]) -> list[str]:
    """Markdown lines: per (label, outcomes) row, how many failed trials ended each way (only
    the endings that occur get a column); empty when nothing failed."""
    counts = [
        (label, [o.get("ended") or "not recorded" for o in outcomes if not o.get("success")])
        for label, outcomes in rows
    ]
    seen = {kind for _, kinds in counts for kind in kinds}
    columns = [k for k in (*ENDINGS, "not recorded") if k in seen]
    if not columns:
        return []
    lines = [
        "| Cell | failed | " + " | ".join(columns) + " |",
        "|---" * (len(columns) + 2) + "|",
    ]
    for label, kinds in counts:
        if kinds:
            cells = [str(kinds.count(k)) for k in columns]
            lines.append(f"| {label} | {len(kinds)} | " + " | ".join(cells) + " |")
    return lines
