"""What flows through the runtime's latest-wins channels, each stamped with monotonic times.

`t_capture` is always the capture time of the oldest camera frame a message derives from, so any
stage can compute the age of what it is about to use. The frames themselves travel one per view
and are taken as one set (`drivers.cameras.pairing.FrameSet`) by the perceive loop.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from drivers.base import RobotState
from models.perception import Percept
from models.types import ActionLike, Observation


def observation(
    images: Mapping[str, np.ndarray],
    masks: Mapping[str, np.ndarray],
    state: RobotState,
    t_capture: float = 0.0,
) -> Observation:
    """What the policy sees: the views and their role masks, with proprioception from `state`
    ([x, y, z, gripper_closed], the layout every policy was trained on) and the fingers' gap.

    The one place a robot state becomes a policy input: the act loop, collection's DAgger pilot
    and the benchmarks' sequential loop all build it here.
    """
    return Observation(
        images=images,
        masks=masks,
        proprio=np.array([*state.ee_pos, float(state.gripper_closed)], dtype=np.float32),
        t_capture=t_capture,
        gripper_width=state.gripper_width,
    )


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
