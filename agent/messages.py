"""What flows through the runtime's latest-wins channels, each stamped with monotonic times.

`t_capture` is always the capture time of the oldest camera frame a message derives from, so any
stage can compute the age of what it is about to use. The frames themselves travel one per view
and are taken as one set (`drivers.cameras.pairing.FrameSet`) by the perceive loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from models.perception import Percept
from models.types import ActionLike


@dataclass(frozen=True, slots=True)
class PerceptMsg:
    percept: Percept
    t_capture: float
    t_done: float
    perceive_ms: float
    stage_ms: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ActionMsg:
    action: ActionLike
    t_capture: float
    t_done: float
    perceive_ms: float
    act_ms: float


@dataclass(frozen=True, slots=True)
class StepRecord:
    """The command loop's account of one received action, for the supervisor and telemetry."""

    index: int
    executed: bool
    done: bool
    t: float
