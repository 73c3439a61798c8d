"""What flows through the runtime's latest-wins channels, each stamped with monotonic times.

`t_capture` is always the capture time of the oldest camera frame a message derives from, so any
stage can compute the age of what it is about to use.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from drivers.base import Frame
from models.perception import Percept
from models.types import ActionLike


@dataclass(frozen=True, slots=True)
class FrameSet:
    """One frame per view; `skew_ms` is the capture-time spread between the views."""

    frames: dict[str, Frame]
    t_capture: float
    skew_ms: float


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


def frameset(frames: dict[str, Frame]) -> FrameSet:
    times = [f.t_capture for f in frames.values()]
    return FrameSet(frames=frames, t_capture=min(times), skew_ms=(max(times) - min(times)) * 1e3)
