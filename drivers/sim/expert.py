"""`ScriptedExpert`: a privileged-state demonstrator for pick-and-place, one control step per call.

It reads object positions from the world (never the images) and walks a list of phases: hover
above A, descend, close, wait for the grip, lift, carry at a height that clears everything on the
table, lower to the place spot, open, retreat, done. Each `act()` returns a move of at most
`max_step` towards the current phase's waypoint, computed from the *actual* hand position, so the
demonstrations stay closed-loop and match what a learned policy outputs (the paper's 5-10 mm
steps). A lost grip sends it back to the approach (at most `max_retries` times). When a learner
drives instead (DAgger), each label must follow from the state, whatever path led there: on the
way to the grasp and to the release the waypoint is recomputed every step from a funnel over the
target (`_steer`), and with A already closed in the hand it carries on from the lift.

It satisfies the runtime's policy protocol structurally (`name`, `reset`, `act`) without importing
`models`: `ExpertAction` has the fields of `models.types.Action`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from drivers.sim.scene import HAND_HALF_X, HAND_HALF_Y
from drivers.sim.state import SceneState
from drivers.sim.success import SimJudge

PHASES = ("approach", "descend", "close", "lift", "carry", "lower", "open", "retreat", "done")
REACH = ("approach", "descend")  # the hand open, going to the grasp point
TRANSPORT = ("lift", "carry", "lower")  # A held, going to the release point
HOVER = 0.10  # above the grasp point before descending
REACHED = 0.004  # m: a waypoint counts as reached within this distance
CLOSE_TICKS = 6  # control steps to wait for the fingers to close
OPEN_TICKS = 4
LOST_TICKS = 3  # consecutive steps without a two-finger contact before the grip counts as lost
PHASE_TICKS = 120  # the retreat ends after this many steps, its point reached or not
#: the reach (approach, descend) and the transport (lift ... lower) end after this many steps
#: where the hand is (close there, let go there): e.g. a descent blocked by another object
STAGE_TICKS = 150
NEAR_GAP = 0.02  # edge gap left between A and B for "place near" (the limit is 5.08 cm)
RELEASE_CLEARANCE = 0.012  # A's lowest point above the surface it is released onto
DROP_HEIGHT = 0.03  # lost while lowering, this close above the release point: count it placed
DROP_XY = 0.03  # ... and this close to it horizontally
CARRY_MARGIN = 0.05
# Fingertip pads are ~4.5 cm below the palm: keep the palm above A's top.
PALM_CLEARANCE = 0.04
MIN_GRASP_Z = 0.014
HAND_MARGIN = 0.006  # the hand's side above a tall B's edge when releasing A next to it
#: shifts of a near spot along B's side, as fractions of B's half size (centred first)
NEAR_SHIFTS = (0.0, -0.6, 0.6)
LOW_TARGET = 0.05  # B lower than this lets the hand pass over its side
#: the funnels over the grasp point and over the release point (horizontal distances): within the
#: first the hand may go all the way down, beyond the second it keeps to the hover / carry height,
#: in between a straight line. The release funnel is narrow: a hand coming down beside a tall B,
#: more than 1.5 cm off toward it, would hit it.
GRASP_FUNNEL = (0.008, 0.03)
RELEASE_FUNNEL = (0.005, 0.015)
CLEAR = 0.01  # m: this far below the funnel, go straight up before moving sideways
CARRIED_XY = 0.03  # m: A's centre this close under the hand, and at its hold offset within
CARRIED_Z = 0.01  # this, counts as carried even when the fingers do not pinch it
OPEN_WIDTH = 0.08  # m: the fingers' gap when open
GRIP_MARGIN = 0.005  # closed on something: the gap at least this much narrower than open
REACH_X = (0.31, 0.72)  # where the hand reaches the table top pointing down
REACH_Y = 0.34


@dataclass(frozen=True, slots=True)
class ExpertAction:
    """Same fields as `models.types.Action`: move (m, base frame), gripper, done, info."""

    move: np.ndarray
    gripper_closed: bool
    done: bool = False
    info: Mapping[str, float] = field(default_factory=dict)


class ScriptedExpert:
    """Scripted pick-and-place on privileged state; `act` is called once per control step."""

    name = "expert"
    #: the skills it can carry out (`models.types.Skill` values; no drawers)
    skills = frozenset({"place_near", "place_inside", "place_on"})

    def __init__(self, world: SceneState, max_step: float = 0.01, max_retries: int = 2) -> None:
        self.world = world
        self.max_step = max_step
        self.max_retries = max_retries
        self._task: Any = None
        self._phase = len(PHASES) - 1
        self._ticks = 0
        self._retries = 0
        self._waypoint = np.zeros(3)
        self._hold_offset = 0.0  # see `_measure_hold`
        self._hold_width = 0.0
        self._near_offset: np.ndarray | None = None  # the chosen near spot, from B's centre
        self._misses = 0

    @property
    def phase(self) -> str:
        return PHASES[self._phase]

    def reset(self, task: Any) -> None:
        """Start an episode for `task` (attributes `pick`, `place`, `skill`)."""
        for name in (task.pick, task.place):
            if name not in self.world.object_names():
                raise ValueError(f"expert: {name!r} is not in the scene")
        self._task = task
        self._retries = 0
        self._enter(0)

    def act(self, observation: object = None) -> ExpertAction:
        """One control step; `observation` is ignored (the expert sees the simulator's state)."""
        if self._task is None:
            raise RuntimeError("expert: call reset(task) before act()")
        ee = self.world.ee_position()
        phase = self.phase
        if phase == "done":
            return self._action(np.zeros(3), closed=False, done=True)
        self._ticks += 1
        if self.world.object_bounds(self._task.pick)[1][2] < 0.0:
            self._enter(PHASES.index("done"))
            return self._action(np.zeros(3), closed=False, done=True, failed=True)
        if self._retries and self.phase in REACH and self._placed():
            # the slipped object came to rest where it was to go: the task is done
            self._enter(PHASES.index("retreat"), ee)
        if self.phase in REACH and self._holds_pick():
            # a learner (DAgger) closed the hand on A before this expert's own descent ended:
            # A is held, so the labels go on from the lift (keep closed, carry it), not back
            # to the grasp point with the hand open
            self._enter(PHASES.index("lift"), ee)
        if self.phase in TRANSPORT:
            self._measure_hold(ee)
        if self.phase in REACH + TRANSPORT:
            self._steer(ee)
        phase = self.phase
        closed = phase in ("close", "lift", "carry", "lower")
        if phase == "close":
            if self._ticks >= CLOSE_TICKS:
                self._enter(self._phase + 1, ee)
            return self._action(np.zeros(3), closed=True)
        if phase == "open":
            if self._ticks >= OPEN_TICKS:
                self._enter(self._phase + 1, ee)
            return self._action(np.zeros(3), closed=False)
        if phase in TRANSPORT:
            held = self._task.pick in self.world.held_objects() or self._carried(ee)
            self._misses = 0 if held else self._misses + 1
            # Contacts flicker for a step when a held object tilts: only a run of misses counts.
            if self._misses >= LOST_TICKS and self._nearly_down(ee):
                # slipped out just above its spot: it is placed; open and go (picking it up
                # again next to a tall B would bring the hand down onto B)
                self._enter(PHASES.index("open"), ee)
                return self._action(np.zeros(3), closed=False)
            if self._misses >= LOST_TICKS:
                return self._retry(ee)
        error = self._waypoint - ee
        # Of the reach's and the transport's phases only descend and lower end at a point (the
        # grasp, the release). A stage that runs out of time ends where the hand is: close there,
        # or let go there.
        stage = phase in REACH + TRANSPORT
        if self._ticks >= (STAGE_TICKS if stage else PHASE_TICKS):
            end = ("close" if phase in REACH else "open") if stage else PHASES[self._phase + 1]
            self._enter(PHASES.index(end), ee)
            return self._action(np.zeros(3), closed=end == "close")
        if float(np.linalg.norm(error)) < REACHED:  # descend, lower or retreat: no waypoint follows
            self._enter(self._phase + 1, ee)
            error = self._waypoint - ee
            closed = self.phase in ("close", "lift", "carry", "lower")
        return self._action(_clip(error, self.max_step), closed=closed)

    # ------------------------------------------------------------------ phases

    def _steer(self, ee: np.ndarray) -> None:
        """Set the phase and the waypoint of the reach or the transport from the state alone.

        The reach (hand open: approach, descend) ends at the grasp point, the transport (A held:
        lift, carry, lower) at the release point. Both follow a funnel over the target
        (`GRASP_FUNNEL`, `RELEASE_FUNNEL`): the height the hand should be at is the target's close
        to it horizontally, the top (hover or carry height) further off, a straight line between.
        A hand more than `CLEAR` below that height rises before it moves sideways (it could sweep
        through objects); otherwise it heads for the funnel's point over the target.

        Why the state alone: when a learner drives (DAgger) the hand reaches places the expert
        would not, and each picture must get one label. The phases used to switch at 4 mm
        waypoints with an 8 mm / 3 cm hysteresis between carrying and lowering, so one picture
        could be labelled "up to the carry height" in one episode and "down" in the next (in one
        recorded episode, 70 steps of "up" while the learner lowered the object to its place).
        """
        reach = self.phase in REACH
        target = self._grasp_point() if reach else self._place_point()
        top = target[2] + HOVER if reach else self._carry_height()
        off = float(np.linalg.norm((target - ee)[:2]))
        inner, outer = GRASP_FUNNEL if reach else RELEASE_FUNNEL
        share = float(np.clip((off - inner) / (outer - inner), 0.0, 1.0))
        height = target[2] + share * (top - target[2])
        # sideways only as far as the hand is no lower than CLEAR under that height, and not at
        # all from 2 * CLEAR under it (continuous, so close states get close labels)
        sideways = float(np.clip(2.0 - (height - ee[2]) / CLEAR, 0.0, 1.0)) if share else 1.0
        if sideways < 1.0:
            phase = "approach" if reach else "lift"
        elif share > 0.0:
            phase = "approach" if reach else "carry"
        else:
            phase = "descend" if reach else "lower"
        waypoint = np.append(ee[:2] + sideways * (target - ee)[:2], height)
        self._phase, self._waypoint = PHASES.index(phase), waypoint

    def _enter(self, index: int, ee: np.ndarray | None = None) -> None:
        self._phase = index
        self._ticks = 0
        self._misses = 0
        phase = PHASES[index]
        ee = self.world.ee_position() if ee is None else ee
        if phase == "lift":
            self._measure_hold(ee, grasping=True)
            self._near_offset = None  # a new grasp: choose the near spot afresh
        elif phase == "retreat":
            self._waypoint = ee + np.array([0.0, 0.0, HOVER])
        # the reach's and the transport's waypoints come from `_steer`, on every step

    def _measure_hold(self, ee: np.ndarray, *, grasping: bool = False) -> None:
        """How far the hand is above A's lowest point, and the fingers' gap: measured when the
        grasp is made and on every step A is held (the offset shifts as A tilts or slips in the
        hand), so that the carry height and the release point follow the state; kept once A is
        lost, which must not move the release point to wherever A fell."""
        if grasping or self._task.pick in self.world.held_objects():
            self._hold_offset = float(ee[2] - self.world.object_bounds(self._task.pick)[0][2])
            self._hold_width = self.world.gripper_width()

    def _carried(self, ee: np.ndarray) -> bool:
        """A moves with the hand although the fingers do not pinch it (wedged against one finger
        or the palm): it is where the grasp held it, under the hand, at the measured offset.
        Counting that as lost made the expert open the hand and drop A, three times in 300
        benchmark tasks."""
        if self.world.gripper_width() > self._hold_width + GRIP_MARGIN:
            return False  # an opening hand carries nothing (a learner let go of A)
        low, high = self.world.object_bounds(self._task.pick)
        under = float(np.linalg.norm(((low + high) / 2 - ee)[:2])) < CARRIED_XY
        return under and abs(float(ee[2] - low[2]) - self._hold_offset) < CARRIED_Z

    def _nearly_down(self, ee: np.ndarray) -> bool:
        """The hand is within `DROP_HEIGHT` above its release point and `DROP_XY` beside it."""
        error = self._place_point() - ee
        return float(np.linalg.norm(error[:2])) < DROP_XY and -error[2] < DROP_HEIGHT

    def _holds_pick(self) -> bool:
        """A is pinched by both fingers, closed on it (an open hand touching A's sides is not
        a grasp)."""
        pinched = self._task.pick in self.world.held_objects()
        return pinched and self.world.gripper_width() < OPEN_WIDTH - GRIP_MARGIN

    def _placed(self) -> bool:
        """The judge passes the task as it stands (A released, at rest, where it was to go)."""
        return SimJudge(self.world).verdict(self._task).success

    def _retry(self, ee: np.ndarray) -> ExpertAction:
        """The object slipped: open, go back above it and try again, or give up.

        Retrying does not mean starting over blindly: while going back, an object that came to
        rest where it was to go ends the task (`act`), since grasping it again beside a tall B
        could only undo it.
        """
        if self._retries >= self.max_retries:
            self._enter(PHASES.index("done"))
            return self._action(np.zeros(3), closed=False, done=True, failed=True)
        self._retries += 1
        self._enter(0, ee)
        return self._action(np.zeros(3), closed=False)

    def _action(
        self, move: np.ndarray, *, closed: bool, done: bool = False, failed: bool = False
    ) -> ExpertAction:
        info = {
            "phase": float(self._phase),
            "retries": float(self._retries),
            "failed": float(failed),
        }
        return ExpertAction(
            move=np.asarray(move, dtype=float), gripper_closed=closed, done=done, info=info
        )

    # ------------------------------------------------------------------ geometry

    def _grasp_point(self) -> np.ndarray:
        """Where the fingertip site pinches A: its centre, raised so the palm clears A's top."""
        low, high = self.world.object_bounds(self._task.pick)
        centre = (low + high) / 2
        z = max(centre[2], high[2] - PALM_CLEARANCE, MIN_GRASP_Z)
        return np.array([centre[0], centre[1], z])

    def _carry_height(self) -> float:
        tallest = 0.0
        for name in self.world.object_names():
            if name != self._task.pick:
                tallest = max(tallest, float(self.world.object_bounds(name)[1][2]))
        return min(0.45, max(0.18, tallest + self._hold_offset + CARRY_MARGIN))

    def _place_point(self) -> np.ndarray:
        """The hand position at release for the task's skill."""
        task, world = self._task, self.world
        skill = str(getattr(task.skill, "value", task.skill))
        b_low, b_high = world.object_bounds(task.place)
        b_centre = (b_low + b_high) / 2
        if skill == "place_inside":
            floor = b_low[2] + 0.01
            return np.array(
                [b_centre[0], b_centre[1], floor + RELEASE_CLEARANCE + self._hold_offset]
            )
        if skill == "place_on":
            return np.array(
                [b_centre[0], b_centre[1], b_high[2] + RELEASE_CLEARANCE + self._hold_offset]
            )
        # Chosen once per grasp and kept relative to B: chosen again at every step, the spot
        # jumped between B's sides as the hand brushed neighbours, and the hand went back and
        # forth between carrying and lowering until the step budget ran out.
        if self._near_offset is None:
            self._near_offset = np.array(self._near_spot(b_low, b_high)) - b_centre[:2]
        x, y = b_centre[:2] + self._near_offset
        return np.array([x, y, RELEASE_CLEARANCE + self._hold_offset])

    def _near_spot(self, b_low: np.ndarray, b_high: np.ndarray) -> tuple[float, float]:
        """A free spot beside B within reach: B's x sides (toward the robot first, then behind),
        also shifted along B, then (low B only) its y sides.

        The hand is ~20 cm long along y (the finger axis) but thin along x, so a spot on B's y side
        would bring the palm down onto a tall B; those spots are only tried when B is low. Other
        objects must leave room for A, and for the whole hand where they are taller than the
        palm's height at release. When no spot is free, the reachable one with the most room;
        never a spot out of reach (the arm cannot lower there, and the hand would go back and
        forth between carrying and lowering until the step budget ran out).
        """
        world, pick = self.world, self._task.pick
        a_low, a_high = world.object_bounds(pick)
        half = (a_high - a_low) / 2
        centre, b_half = (b_low + b_high) / 2, (b_high - b_low) / 2
        gap_x = max(NEAR_GAP, HAND_HALF_X - half[0] + HAND_MARGIN)
        xs = (b_low[0] - gap_x - half[0], b_high[0] + gap_x + half[0])
        candidates = [(x, centre[1] + f * b_half[1]) for f in NEAR_SHIFTS for x in xs]
        if b_high[2] < LOW_TARGET:
            ys = (b_low[1] - NEAR_GAP - half[1], b_high[1] + NEAR_GAP + half[1])
            candidates += [(centre[0] + f * b_half[0], y) for f in NEAR_SHIFTS for y in ys]
        palm_z = RELEASE_CLEARANCE + self._hold_offset + PALM_CLEARANCE
        others = []
        for name in world.object_names():
            if name in (pick, self._task.place):
                continue
            lo, hi = world.object_bounds(name)
            tall = hi[2] > palm_z
            reach = (max(half[0], HAND_HALF_X), max(half[1], HAND_HALF_Y)) if tall else half[:2]
            others.append((lo, hi, reach))

        def room(x: float, y: float) -> float:
            """The smallest margin to another object (negative: overlapping)."""
            gaps = [
                max(
                    lo[0] - x - rx - 0.01,
                    x - rx - hi[0] - 0.01,
                    lo[1] - y - ry - 0.015,
                    y - ry - hi[1] - 0.015,
                )
                for lo, hi, (rx, ry) in others
            ]
            return min(gaps, default=np.inf)

        reachable = [
            (float(x), float(y))
            for x, y in candidates
            if REACH_X[0] <= x <= REACH_X[1] and abs(y) <= REACH_Y
        ]
        for x, y in reachable:
            if room(x, y) > 0:
                return x, y
        if reachable:
            return max(reachable, key=lambda spot: room(*spot))
        x, y = candidates[0]
        return float(np.clip(x, *REACH_X)), float(np.clip(y, -REACH_Y, REACH_Y))


def _clip(vector: np.ndarray, limit: float) -> np.ndarray:
    norm = float(np.linalg.norm(vector))
    return vector * (limit / norm) if norm > limit else vector
