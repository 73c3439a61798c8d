"""Success checks for pick-and-place episodes, following the paper's criteria.

A trial succeeds when the pick object A was grasped (both fingers on it and lifted >= 2 cm, latched
by the world) and, after release (no longer pinched by both fingers and at rest, below 2 cm/s),
stands in the requested relation to the place target B:

- `place_near`: the horizontal gap between A's footprint and B's footprint is at most 2 inches
  (5.08 cm). Footprints are B's disc (round objects, the user figure's feet) or axis-aligned
  rectangle, and A's axis-aligned bounding rectangle. Edge gaps, not centre distances, because a
  centre rule would make "near the 24 cm cutting board" impossible and "near the egg" trivial.
  Beside, not on or in: A resting on B or inside it (centre over B's footprint, touching B) is
  not "next to the B", though its gap is zero.
- `place_inside`: A's centre is within B's footprint and A's lowest point is below B's rim.
- `place_on`: A's centre is within B's footprint, A touches B, and A's lowest point is no lower
  than 1 cm under B's top.

`done` is True once the outcome is decided: success, A released and at rest elsewhere, or A off
the table. Before that (never grasped, still held, still moving) the episode goes on.

"Was grasped" is the world's latch, which the world's `begin_task` clears (and a reset clears with
the rest of the scene): on one open runtime each task is judged only by what happens in it, never
by a grasp or a placement an earlier task left behind.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:  # mujoco: the runtime's supervisor imports `Judge` without the sim extra
    from drivers.sim.state import SceneState

NEAR_DISTANCE = 0.0508  # 2 inches
REST_SPEED = 0.02  # m/s
ON_TOLERANCE = 0.01
OFF_TABLE_Z = -0.05
SKILLS = ("place_near", "place_inside", "place_on")


@dataclass(frozen=True, slots=True)
class Verdict:
    """Whether the episode's outcome is decided, whether it succeeded, and why (one line)."""

    done: bool
    success: bool
    reason: str


class Judge(Protocol):
    """What the runtime's supervisor asks every tick whether the task is achieved. Only the
    simulator can tell (`SimJudge`, from privileged state); on a real table people judge, and the
    runtime runs without one."""

    def verdict(self, task: Any) -> Verdict: ...


class SimJudge:
    """Judges tasks (objects with `pick`, `place`, `skill`) against the world's privileged state."""

    def __init__(
        self,
        world: SceneState,
        near_distance: float = NEAR_DISTANCE,
        rest_speed: float = REST_SPEED,
    ) -> None:
        self.world = world
        self.near_distance = near_distance
        self.rest_speed = rest_speed

    def verdict(self, task: Any) -> Verdict:
        skill = str(getattr(task.skill, "value", task.skill))
        pick, place = task.pick, task.place
        if skill not in SKILLS:
            return Verdict(True, False, f"unknown skill {skill!r}")
        names = self.world.object_names()
        for role, name in (("pick", pick), ("place", place)):
            if name not in names:
                return Verdict(True, False, f"{role} object {name!r} is not in the scene")
        world = self.world
        a_low, a_high = world.object_bounds(pick)
        if a_high[2] < OFF_TABLE_Z:
            return Verdict(True, False, f"{pick} fell off the table")
        if not world.was_grasped(pick):
            return Verdict(False, False, f"{pick} not grasped yet")
        if pick in world.held_objects():
            return Verdict(False, False, f"{pick} still in the gripper")
        speed = float(np.linalg.norm(world.object_velocity(pick)))
        if speed > self.rest_speed:
            return Verdict(False, False, f"{pick} still moving ({speed:.3f} m/s)")
        ok, why = self._relation(skill, pick, place, a_low, a_high)
        return Verdict(True, ok, why)

    def _relation(
        self, skill: str, pick: str, place: str, a_low: np.ndarray, a_high: np.ndarray
    ) -> tuple[bool, str]:
        world = self.world
        b_low, b_high = world.object_bounds(place)
        disc = world.object_spec(place).is_disc
        b_center = world.object_position(place)[:2] if disc else (b_low[:2] + b_high[:2]) / 2
        b_radius = world.object_spec(place).extents[0] / 2
        a_center = (a_low[:2] + a_high[:2]) / 2
        if disc:
            inside = math.dist(a_center, b_center) <= b_radius
        else:
            inside = bool(np.all(a_center >= b_low[:2]) and np.all(a_center <= b_high[:2]))
        if skill == "place_near":
            if inside and world.in_contact(pick, place):
                return False, f"{pick} is on or in {place}, not next to it"
            gap = (
                _rect_to_point(a_low, a_high, b_center) - b_radius
                if disc
                else _rect_to_rect(a_low, a_high, b_low, b_high)
            )
            gap = max(0.0, gap)
            ok = gap <= self.near_distance
            return (
                ok,
                f"{pick} is {gap * 100:.1f} cm from {place} "
                f"(limit {self.near_distance * 100:.2f} cm)",
            )
        if skill == "place_inside":
            below_rim = a_low[2] < b_high[2]
            ok = bool(inside and below_rim)
            return ok, (
                f"{pick} inside {place}"
                if ok
                else f"{pick} not inside {place} (over footprint: {inside}, below rim: {below_rim})"
            )
        on_top = a_low[2] >= b_high[2] - ON_TOLERANCE
        touching = world.in_contact(pick, place)
        ok = bool(inside and on_top and touching)
        return ok, (
            f"{pick} on top of {place}"
            if ok
            else f"{pick} not on {place} (over footprint: {inside}, above top: {on_top}, "
            f"touching: {touching})"
        )


def _rect_to_rect(
    a_low: np.ndarray, a_high: np.ndarray, b_low: np.ndarray, b_high: np.ndarray
) -> float:
    dx = max(0.0, float(b_low[0] - a_high[0]), float(a_low[0] - b_high[0]))
    dy = max(0.0, float(b_low[1] - a_high[1]), float(a_low[1] - b_high[1]))
    return math.hypot(dx, dy)


def _rect_to_point(low: np.ndarray, high: np.ndarray, point: np.ndarray) -> float:
    dx = max(0.0, float(low[0] - point[0]), float(point[0] - high[0]))
    dy = max(0.0, float(low[1] - point[1]), float(point[1] - high[1]))
    return math.hypot(dx, dy)
