"""target: how long the task's objects have been missing from every view, for hold and ending.

"Missing" is what perception says: a role (pick, and place for tasks that have one) with no box
in any view of a percept, after the tracker lost it and the re-detection (with its bounded
back-off, models.perception) did not find it again. One view losing it is not missing: the other
still guides the policy. The gripper hides the object during a grasp for a moment, so a short
grace (`HOLD_GRACE_S`) passes before the command loop holds the arm (no policy moves sent while
the target is missing); the supervisor ends the episode once a target has been missing for
`runtime.target_lost_s`. Perception keeps running meanwhile, so a target seen again releases the
hold and the episode goes on.

Measured with the scripted expert on the sim profile (224 px views, ground-truth detection, KCF,
re-detection on every lost frame; seeds 0-3 x "I spilled the milk" / "give me the milk carton",
8 episodes, 8 successes, 1,273 percepts), and the shipped TPM policy (6 episodes: 3 successes,
3 that used up the 600-step budget; 2,207 percepts): no percept missed a target in both views, so
no episode held; the 1 s grace is margin for detectors slower to find an object again (Grounding
DINO with its back-off) and for a gripper that covers a small object in both views.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from models.perception import Percept
from models.types import TaskSpec

#: How long a target may be missing from every view before the arm holds (a grasp's occlusion
#: must not stall a good episode); the ending (`runtime.target_lost_s`) comes later.
HOLD_GRACE_S = 1.0


@dataclass
class TargetWatch:
    """Per role, when its object was last seen in any view; fed each percept (on the perception
    thread), read by the loops.

    Times are `time.monotonic()` (the frames' clock), taken as each percept arrives.
    """

    names: dict[str, str]  # role -> object name, the roles the task uses
    lost_after_s: float
    grace_s: float = HOLD_GRACE_S
    last_seen: dict[str, float] = field(default_factory=dict)
    missing: set[str] = field(default_factory=set)  # roles absent from the newest percept

    @classmethod
    def for_task(cls, task: TaskSpec, lost_after_s: float, now: float) -> TargetWatch:
        """A watch for `task`'s roles, every target seen at `now` (start found them all)."""
        names = {"pick": task.pick or ""}
        if task.place is not None:
            names["place"] = task.place
        return cls(names, lost_after_s, last_seen=dict.fromkeys(names, now))

    def see(self, percept: Percept, now: float) -> None:
        """Take a new percept: a role with a box in any view is seen now, else missing.

        Called on the perception thread while the loop reads: `missing` is replaced whole, and
        a role's time is stamped before it leaves `missing`, so a reader never sees a role
        missing since a stale time."""
        missing = set()
        for role in self.names:
            if any(boxes.get(role) is not None for boxes in percept.boxes.values()):
                self.last_seen[role] = now
            else:
                missing.add(role)
        self.missing = missing

    def longest_missing(self, now: float) -> tuple[str, float] | None:
        """The object missing longest from every view, and for how many seconds; None if none."""
        if not self.missing:
            return None
        role = min(self.missing, key=lambda r: self.last_seen[r])
        return self.names[role], now - self.last_seen[role]

    def hold_reason(self, now: float) -> str | None:
        """Why the arm must hold now (a target missing past the grace), or None."""
        missing = self.longest_missing(now)
        if missing is None or missing[1] < min(self.grace_s, self.lost_after_s):
            return None
        return f"{missing[0]} not seen in any camera view for {missing[1]:.1f} s"

    def lost_reason(self, now: float) -> str | None:
        """The episode's ending once a target has been missing for `lost_after_s`, or None."""
        missing = self.longest_missing(now)
        if missing is None or missing[1] < self.lost_after_s:
            return None
        return f"target lost: {missing[0]} not seen for {missing[1]:.1f} s"
