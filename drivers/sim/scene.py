"""Scene planning: a `SceneSpec` (seed, required objects, split, setting) -> a `SceneLayout`.

Building a scene happens in two steps so each can be checked on its own:

1. `plan_scene` (here; pure Python, milliseconds, no MuJoCo): draws distractors, places every
   object on the table without overlap and within the arm's reach, picks the background from the
   backgrounds file (`drivers/sim/data/backgrounds.toml` or `SceneSpec.backgrounds`) and draws the
   scene's `Look` (randomised when `SceneSpec.randomise` is enabled: `drivers.sim.look`). Tests of
   counts and determinism run on this plan without compiling anything.
2. `build_scene` (`drivers.sim.scene_build`, ~0.7 s, mostly the arm's meshes) compiles the plan.

Geometry conventions: the robot base is at the origin on the table top (z = 0), x points away
from the robot, the gripper keeps one orientation and closes along y.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from drivers.sim.backgrounds import Backgrounds, load_backgrounds
from drivers.sim.catalog import USER, USER_NAME, Catalog, ObjectSpec, load_catalog
from drivers.sim.config import SceneSpec
from drivers.sim.look import Look, draw_look

CAMERAS: tuple[str, ...] = ("front", "side")

# Where objects may be placed (centre of the footprint), metres in the robot base frame.
PLACE_X = (0.33, 0.67)
PLACE_Y = (-0.27, 0.27)
# Gap kept between footprint circles so the open fingers fit between neighbours.
PLACE_CLEARANCE = 0.03
# The hand's half size across and along its finger axis (y): it comes down over each required
# object (to grasp it, or to release onto or into it) with this box around its centre.
HAND_HALF_X = 0.035
HAND_HALF_Y = 0.105
DISTRACTORS: dict[str, tuple[int, int]] = {
    "standard": (0, 2),
    "new_background": (0, 2),
    "more_distractors": (3, 6),
}


class SceneError(ValueError):
    """The requested scene cannot be built (unknown object, no room on the table, bad setting)."""


@dataclass(frozen=True, slots=True)
class Placement:
    """Where one object starts: footprint centre (x, y) on the table top."""

    spec: ObjectSpec
    x: float
    y: float
    required: bool

    @property
    def name(self) -> str:
        return self.spec.name


@dataclass(frozen=True, slots=True)
class SceneLayout:
    """The drawn scene: placements (required first, then the user, then distractors) and look."""

    placements: tuple[Placement, ...]
    background: str  # the backgrounds entry: "train-0" .. "train-2", or "new" (packaged file)
    look: Look

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.placements]

    @property
    def distractors(self) -> list[str]:
        return [p.name for p in self.placements if not p.required and p.name != USER_NAME]


def plan_scene(
    spec: SceneSpec, catalog: Catalog | None = None, backgrounds: Backgrounds | None = None
) -> SceneLayout:
    """Draw distractors, non-overlapping placements and the look; deterministic per seed.

    The background entry is drawn last from the placement stream (training entries, or held-out
    ones for `new_background`); the look's randomisation has a stream of its own, so turning it
    on changes no placement.
    """
    catalog = catalog or load_catalog(spec.catalog)
    backgrounds = backgrounds or load_backgrounds(spec.backgrounds)
    rng = np.random.default_rng(spec.seed)
    required = list(dict.fromkeys(spec.objects or []))
    required_specs = [catalog.get(name) for name in required if name != USER_NAME]
    include_user = spec.include_user or USER_NAME in required

    placed: list[Placement] = []
    for obj in required_specs:
        if not _place(obj, True, placed, rng):
            raise SceneError(f"no room on the table for required object {obj.name!r}")
    if include_user and not _place(USER, True, placed, rng):
        raise SceneError("no room on the table for the user figure")

    low, high = DISTRACTORS[spec.setting]
    wanted = int(rng.integers(low, high + 1))
    taken = {p.name for p in placed}
    pool = [o for o in catalog.split(spec.split) if o.name not in taken]
    # Big place-only things crowd the table: allow at most one of them among the distractors.
    order = rng.permutation(len(pool))
    big_used = False
    added = 0
    for i in order:
        if added == wanted:
            break
        obj = pool[int(i)]
        big = not obj.pickable
        if big and big_used:
            continue
        if _place(obj, False, placed, rng):
            added += 1
            big_used = big_used or big
    if added < low:
        raise SceneError(
            f"could place only {added} of at least {low} distractors (seed {spec.seed})"
        )

    choices = backgrounds.choices(spec.setting)
    background = choices[int(rng.integers(len(choices)))]
    look = draw_look(
        backgrounds, background, spec.seed, spec.randomise, [p.name for p in placed], CAMERAS
    )
    return SceneLayout(placements=tuple(placed), background=background, look=look)


def _place(
    obj: ObjectSpec,
    required: bool,
    placed: list[Placement],
    rng: np.random.Generator,
    tries: int = 300,
) -> bool:
    radius = obj.footprint_radius
    for _ in range(tries):
        x = float(rng.uniform(*PLACE_X))
        y = float(rng.uniform(*PLACE_Y))
        new = Placement(spec=obj, x=x, y=y, required=required)
        if all(
            math.hypot(x - p.x, y - p.y) >= radius + p.spec.footprint_radius + PLACE_CLEARANCE
            and not _blocks_hand(p, new)
            and not _blocks_hand(new, p)
            for p in placed
        ):
            placed.append(new)
            return True
    return False


def _blocks_hand(target: Placement, other: Placement) -> bool:
    """`other` stands where the hand comes down over the required `target` and is taller.

    The gripper keeps one orientation (fingers along y), so the ~21 cm long hand cannot turn
    away from a tall neighbour: a juice box with the user figure 7 cm beside it along y could
    not be grasped at all, by the expert or any policy.
    """
    if not target.required or other.spec.height <= target.spec.height:
        return False
    ex, ey, _ = other.spec.extents
    return abs(other.x - target.x) < HAND_HALF_X + ex / 2 and (
        abs(other.y - target.y) < HAND_HALF_Y + ey / 2
    )
