"""Scene builder: a `SceneSpec` (seed, required objects, split, setting) -> a compiled MuJoCo model.

Building happens in two steps so each can be checked on its own:

1. `plan_scene` (pure Python, milliseconds): draws distractors, places every object on the table
   without overlap and within the arm's reach, picks the background from the backgrounds file
   (`drivers/sim/data/backgrounds.toml` or `SceneSpec.backgrounds`) and draws the scene's `Look`
   (randomised when `SceneSpec.randomise` is enabled: `drivers.sim.backgrounds`). Tests of counts
   and determinism run on this plan without compiling anything.
2. `build_scene` (~0.7 s, mostly the arm's meshes): the FR3 with its hand from the franky-sim wheel
   loaded through `mujoco.MjSpec`, plus table, walls, lights, the two cameras ("front", "side"), the
   objects as free bodies and the static user figure.

Geometry conventions: the robot base is at the origin on the table top (z = 0), x points away
from the robot, the gripper keeps one orientation and closes along y. Every object body is called
`obj/<name>` and its geoms `obj/<name>` (or `obj/<name>/<part>` for shells), so segmentation ids
map back to names through `model.geom_bodyid`.

Rendering settings come from FINDINGS: no shadows and no multisampling (10x cheaper per frame).
Contact settings make grasps hold and round things come to rest: elliptic friction cones, impratio
10, condim 6 on objects, friction (1, 0.02, 2e-3), a stiffer contact time constant on objects, and a
stiffer hand servo.
"""

from __future__ import annotations

import hashlib
import math
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import mujoco
import numpy as np

from drivers.sim.backgrounds import (
    BUILTIN_PATTERNS,
    TEXTURE_SIZE,
    WALL_TEXTURE_SIZE,
    Backgrounds,
    Look,
    Surface,
    draw_look,
    encode_png,
    load_backgrounds,
    surface_pixels,
)
from drivers.sim.catalog import USER, USER_NAME, Catalog, ObjectSpec, load_catalog
from drivers.sim.config import SceneSpec

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
# Sliding, torsional, rolling (m). The rolling term acts with condim 6 only: without it a released
# pear, kiwi or eggplant (ellipsoids) kept rolling at 2-7 cm/s a second after a 3 cm drop, and the
# judge, which waits for A at rest, failed 1 expert episode in 10 on it; 2 mm (soft fruit on a
# table) stops them within a second.
OBJECT_FRICTION = (1.0, 0.02, 2e-3)
OBJECT_CONDIM = 6
# Stiffer than MuJoCo's default 0.02 s: with soft contacts, round objects pinched by the flat
# fingertip pads creep sideways out of the grip (tall cans: 13/18 -> 18/18 expert successes).
OBJECT_SOLREF = (0.01, 1.0)
SHELL_THICKNESS = 0.008
EE_SITE = "ee"
# Fingertip pad centre in the hand frame: where the object sits when pinched.
EE_SITE_OFFSET = 0.1034
HAND_STIFFNESS = 500.0  # N per m of tendon travel (stock: 100)
HAND_DAMPING = 25.0
ARM_JOINTS: tuple[str, ...] = tuple(f"fr3_joint{i}" for i in range(1, 8))
# The franky-sim `home` keyframe with joint 7 turned by +90 deg, so the fingers close along y.
HOME_JOINTS: tuple[float, ...] = (0.0, 0.0, 0.0, -1.57079, 0.0, 1.57079, 0.7854)


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


@dataclass(frozen=True)
class BuiltScene:
    """A compiled model plus what the world needs to interpret it."""

    model: mujoco.MjModel
    layout: SceneLayout
    spec: SceneSpec
    catalog: Catalog
    object_specs: dict[str, ObjectSpec] = field(default_factory=dict)


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


def build_scene(spec: SceneSpec, catalog: Catalog | None = None) -> BuiltScene:
    """Plan the scene and compile it into a MuJoCo model."""
    catalog = catalog or load_catalog(spec.catalog)
    layout = plan_scene(spec, catalog, load_backgrounds(spec.backgrounds))
    mj = _robot_spec()
    _configure(mj)
    add_props(mj, layout)
    if spec.robot_meshes == "collision":
        _show_collision_meshes(mj)
    try:
        model = mj.compile()
    except ValueError as exc:  # MuJoCo reports compile problems as ValueError
        raise SceneError(f"scene failed to compile: {exc}") from exc
    specs = {p.name: p.spec for p in layout.placements}
    return BuiltScene(model=model, layout=layout, spec=spec, catalog=catalog, object_specs=specs)


def add_props(mj: mujoco.MjSpec, layout: SceneLayout, *, texture_files: bool = False) -> None:
    """Everything but the arm: table, walls, lights, the two cameras and the layout's objects.

    `texture_files`: pixel textures (stripes, noise) as PNG files in a cache folder instead of
    in-memory data, for MJCF text (MuJoCo cannot write in-memory textures to XML).
    """
    look = layout.look
    _add_environment(mj, look, texture_files)
    _add_cameras(mj, look)
    for placement in layout.placements:
        _add_object(mj, placement, look.object_rgb(placement.name))


def props_xml(layout: SceneLayout) -> str:
    """The scene without the arm as MJCF text, for simulators that build their own model.

    franky-sim compiles its scene from an XML tree it owns (the arm under its own names); the
    world's table, objects, user figure and cameras join it as this text, so both simulators show
    the same scene from one builder.
    """
    mj = mujoco.MjSpec()
    _configure(mj)
    add_props(mj, layout, texture_files=True)
    try:
        mj.compile()
    except ValueError as exc:  # MuJoCo reports compile problems as ValueError
        raise SceneError(f"scene failed to compile: {exc}") from exc
    return mj.to_xml()


# ---------------------------------------------------------------------------- robot and options


def _robot_spec() -> mujoco.MjSpec:
    try:
        import franky_sim
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        raise SceneError(
            "the simulated world needs franky-sim: pip install 'tpm-agent[sim]'"
        ) from exc
    assets = Path(franky_sim.__file__).parent / "assets"
    mj = mujoco.MjSpec.from_file(str(assets / "fr3.xml"))
    mj.meshdir = str(assets / "meshes")
    # The stock hand servo pushes with 100 N/m of tendon travel (~3 N on a 6 cm can), which lets
    # tall objects slip while carried; the real Franka hand grasps with up to 70 N.
    actuator = mj.actuator("hand")
    actuator.gainprm[0] = HAND_STIFFNESS * 0.04 / 255.0
    actuator.biasprm[1] = -HAND_STIFFNESS
    actuator.biasprm[2] = -HAND_DAMPING
    hand = mj.body("hand")
    hand.add_site(name=EE_SITE, pos=[0.0, 0.0, EE_SITE_OFFSET], size=[0.004, 0, 0], group=4)
    # Gravity compensation: position servos then track without sag, which keeps IK errors small.
    for body in mj.bodies:
        if body.name.startswith("fr3_link") or body.name in ("hand", "left_finger", "right_finger"):
            body.gravcomp = 1.0
    return mj


def _configure(mj: mujoco.MjSpec) -> None:
    mj.modelname = "tpm_sim"
    mj.option.timestep = 0.002
    mj.option.cone = mujoco.mjtCone.mjCONE_ELLIPTIC
    mj.option.impratio = 10.0
    mj.visual.quality.offsamples = 0
    mj.visual.global_.offwidth = 1280
    mj.visual.global_.offheight = 1024
    mj.visual.headlight.ambient = [0.25, 0.25, 0.25]
    mj.visual.headlight.diffuse = [0.45, 0.45, 0.45]
    mj.visual.headlight.specular = [0.05, 0.05, 0.05]
    mj.stat.center = [0.45, 0.0, 0.15]
    mj.stat.extent = 1.2


def _show_collision_meshes(mj: mujoco.MjSpec) -> None:
    """Move the arm's collision meshes into the visible group and its visual meshes out."""
    for geom in mj.geoms:
        if geom.classname.name == "visual":
            geom.group = 5
        elif geom.classname.name.startswith(("collision", "fingertip")):
            geom.group = 1
            geom.rgba = [0.92, 0.92, 0.92, 1.0]


# ---------------------------------------------------------------------------- environment


def _add_environment(mj: mujoco.MjSpec, look: Look, texture_files: bool = False) -> None:
    _add_surface(mj, "table", look.table, TEXTURE_SIZE, texture_files)
    _add_surface(mj, "wall", look.wall, WALL_TEXTURE_SIZE, texture_files)
    mj.add_material(name="floor_mat", rgba=[0.35, 0.33, 0.3, 1.0])
    mj.add_material(name="leg_mat", rgba=[0.25, 0.22, 0.2, 1.0])

    world = mj.worldbody
    table = world.add_body(name="table", pos=[0.4, 0.0, -0.02])
    table.add_geom(
        name="table",
        type=mujoco.mjtGeom.mjGEOM_BOX,
        size=[0.6, 0.75, 0.02],
        material="table_mat",
        friction=list(OBJECT_FRICTION),
    )
    for i, (lx, ly) in enumerate([(-0.55, -0.7), (-0.55, 0.7), (0.55, -0.7), (0.55, 0.7)]):
        table.add_geom(
            name=f"table_leg{i}",
            type=mujoco.mjtGeom.mjGEOM_BOX,
            size=[0.03, 0.03, 0.36],
            pos=[lx, ly, -0.38],
            material="leg_mat",
            contype=0,
            conaffinity=0,
        )
    world.add_geom(
        name="floor",
        type=mujoco.mjtGeom.mjGEOM_PLANE,
        size=[3.0, 3.0, 0.1],
        pos=[0.0, 0.0, -0.76],
        material="floor_mat",
    )
    for name, pos, size in (
        ("wall_back", [-0.7, 0.0, 0.3], [0.02, 2.0, 1.1]),
        ("wall_side", [0.4, 1.2, 0.3], [2.0, 0.02, 1.1]),
        ("wall_front", [2.0, 0.0, 0.3], [0.02, 2.0, 1.1]),
    ):
        world.add_geom(
            name=name,
            type=mujoco.mjtGeom.mjGEOM_BOX,
            size=size,
            pos=pos,
            material="wall_mat",
            contype=0,
            conaffinity=0,
        )
    for i, light in enumerate(look.lights):
        world.add_light(
            name="key" if i == 0 else ("fill" if i == 1 else f"fill{i}"),
            pos=list(light.position),
            dir=list(light.direction),
            diffuse=list(light.diffuse),
            specular=[light.specular] * 3,
            castshadow=False,
            type=mujoco.mjtLightType.mjLIGHT_DIRECTIONAL
            if light.kind == "directional"
            else mujoco.mjtLightType.mjLIGHT_SPOT,
        )


_BUILTINS = {
    "flat": mujoco.mjtBuiltin.mjBUILTIN_FLAT,
    "checker": mujoco.mjtBuiltin.mjBUILTIN_CHECKER,
    "gradient": mujoco.mjtBuiltin.mjBUILTIN_GRADIENT,
}
TEXTURE_CACHE = Path(tempfile.gettempdir()) / "tpm-agent-textures"


def _add_surface(mj: mujoco.MjSpec, name: str, surface: Surface, size: int, as_file: bool) -> None:
    """Texture `<name>_tex` and material `<name>_mat` of one surface (MuJoCo's own patterns,
    pixels made here, or a PNG file)."""
    texture = mj.add_texture(name=f"{name}_tex", type=mujoco.mjtTexture.mjTEXTURE_2D)
    if surface.pattern in BUILTIN_PATTERNS:
        texture.builtin = _BUILTINS[surface.pattern]
        texture.rgb1 = list(surface.rgb1)
        texture.rgb2 = list(surface.rgb2)
        texture.width = texture.height = size
        if surface.speckle is not None:
            texture.mark = mujoco.mjtMark.mjMARK_RANDOM
            texture.random = surface.speckle.density
            texture.markrgb = list(surface.speckle.colour)
    elif surface.pattern == "image":
        texture.file = str(surface.image)
    else:
        pixels = surface_pixels(surface, size)
        if as_file:
            texture.file = str(_cached_png(pixels))
        else:
            texture.width = texture.height = size
            texture.nchannel = 3
            texture.data = pixels.tobytes()
    _material(mj, f"{name}_mat", f"{name}_tex", surface.scale)


def _cached_png(pixels: np.ndarray) -> Path:
    """`pixels` as a PNG in the texture cache, named by content (written once, atomically)."""
    data = encode_png(pixels)
    path = TEXTURE_CACHE / f"{hashlib.sha1(data).hexdigest()[:20]}.png"
    if not path.is_file():
        TEXTURE_CACHE.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.part")
        partial.write_bytes(data)
        os.replace(partial, path)
    return path


def _material(mj: mujoco.MjSpec, name: str, texture: str, repeat: float) -> None:
    material = mj.add_material(name=name, texrepeat=[repeat, repeat])
    material.textures[mujoco.mjtTextureRole.mjTEXROLE_RGB] = texture


#: nominal camera poses: (position, target). Frontal: facing the robot across the table.
#: Lateral: from the robot's right-hand side.
CAMERA_POSES: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "front": ((1.05, 0.0, 0.55), (0.47, 0.0, 0.08)),
    "side": ((0.5, -0.8, 0.5), (0.5, 0.0, 0.1)),
}


def _add_cameras(mj: mujoco.MjSpec, look: Look | None = None) -> None:
    for name, (pos, target) in CAMERA_POSES.items():
        quat = look_at(pos, target)
        offset = look.camera(name) if look is not None else None
        if offset is not None:
            dx, dy, dz = offset.shift_m
            pos = (pos[0] + dx, pos[1] + dy, pos[2] + dz)
            turn = np.radians(offset.turn_deg)
            angle = float(np.linalg.norm(turn))
            if angle > 0:
                q_turn = np.zeros(4)
                mujoco.mju_axisAngle2Quat(q_turn, turn / angle, angle)
                turned = np.zeros(4)
                mujoco.mju_mulQuat(turned, q_turn, np.asarray(quat))
                quat = turned.tolist()
        mj.worldbody.add_camera(name=name, pos=list(pos), quat=quat, fovy=50.0)


def look_at(pos: Sequence[float], target: Sequence[float]) -> list[float]:
    """Quaternion of a MuJoCo camera at `pos` looking at `target` with world z up."""
    forward = np.asarray(target, float) - np.asarray(pos, float)
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    mat = np.column_stack([right, up, -forward])  # camera looks along its -z, y up
    quat = np.zeros(4)
    mujoco.mju_mat2Quat(quat, mat.flatten())
    return quat.tolist()


# ---------------------------------------------------------------------------- objects


def _add_object(
    mj: mujoco.MjSpec, placement: Placement, offset: Sequence[float] | None = None
) -> None:
    obj = placement.spec
    if obj.family == "figure":
        _add_user(mj, placement)
        return
    ex, ey, ez = obj.extents
    body = mj.worldbody.add_body(name=f"obj/{obj.name}", pos=[placement.x, placement.y, ez / 2])
    body.add_freejoint(name=f"obj/{obj.name}")
    rgb = obj.rgb if offset is None else np.clip(np.add(obj.rgb, offset), 0.0, 1.0).tolist()
    common = {
        "rgba": [*rgb, 1.0],
        "condim": OBJECT_CONDIM,
        "friction": list(OBJECT_FRICTION),
        "solref": list(OBJECT_SOLREF),
    }
    if obj.container:
        parts = _shell_parts(obj)
        for i, (gtype, size, pos, quat) in enumerate(parts):
            body.add_geom(
                name=f"obj/{obj.name}/{i}",
                type=gtype,
                size=size,
                pos=pos,
                quat=quat,
                mass=obj.mass / len(parts),
                **common,
            )
        return
    family = "disc" if obj.family == "flat" and obj.is_disc else obj.family
    shapes = {
        "box": (mujoco.mjtGeom.mjGEOM_BOX, [ex / 2, ey / 2, ez / 2]),
        "flat": (mujoco.mjtGeom.mjGEOM_BOX, [ex / 2, ey / 2, ez / 2]),
        "ellipsoid": (mujoco.mjtGeom.mjGEOM_ELLIPSOID, [ex / 2, ey / 2, ez / 2]),
        "cylinder": (mujoco.mjtGeom.mjGEOM_CYLINDER, [ex / 2, ez / 2, 0.0]),
        "disc": (mujoco.mjtGeom.mjGEOM_CYLINDER, [ex / 2, ez / 2, 0.0]),
        "sphere": (mujoco.mjtGeom.mjGEOM_SPHERE, [ex / 2, 0.0, 0.0]),
    }
    gtype, size = shapes[family]
    body.add_geom(name=f"obj/{obj.name}", type=gtype, size=size, mass=obj.mass, **common)


def _shell_parts(
    obj: ObjectSpec,
) -> list[tuple[mujoco.mjtGeom, list[float], list[float], list[float]]]:
    """An open container as a floor plus walls (4 for a box, 16 staves for a round one)."""
    ex, ey, ez = obj.extents
    t = SHELL_THICKNESS
    box = mujoco.mjtGeom.mjGEOM_BOX
    upright = [1.0, 0.0, 0.0, 0.0]
    parts = []
    if obj.family == "box":
        parts.append((box, [ex / 2, ey / 2, t / 2], [0.0, 0.0, -ez / 2 + t / 2], upright))
        for sx in (-1, 1):
            parts.append((box, [t / 2, ey / 2, ez / 2], [sx * (ex / 2 - t / 2), 0.0, 0.0], upright))
        for sy in (-1, 1):
            parts.append(
                (box, [ex / 2 - t, t / 2, ez / 2], [0.0, sy * (ey / 2 - t / 2), 0.0], upright)
            )
        return parts
    radius = ex / 2
    parts.append(
        (mujoco.mjtGeom.mjGEOM_CYLINDER, [radius, t / 2, 0.0], [0.0, 0.0, -ez / 2 + t / 2], upright)
    )
    staves = 16
    half_width = (radius - t / 2) * math.tan(math.pi / staves) + t / 2
    for k in range(staves):
        angle = 2 * math.pi * k / staves
        pos = [(radius - t / 2) * math.cos(angle), (radius - t / 2) * math.sin(angle), 0.0]
        quat = [math.cos(angle / 2), 0.0, 0.0, math.sin(angle / 2)]
        parts.append((box, [t / 2, half_width, ez / 2], pos, quat))
    return parts


def _add_user(mj: mujoco.MjSpec, placement: Placement) -> None:
    """A small static figure (feet disc, capsule body, sphere head): the place target "user"."""
    body = mj.worldbody.add_body(name=f"obj/{USER_NAME}", pos=[placement.x, placement.y, 0.0])
    base_r, body_r, half_len, head_r = 0.03, 0.022, 0.035, 0.022
    skin, shirt, shoes = [0.95, 0.78, 0.62, 1.0], [*USER.rgb, 1.0], [0.15, 0.15, 0.15, 1.0]
    body.add_geom(
        name=f"obj/{USER_NAME}/feet",
        type=mujoco.mjtGeom.mjGEOM_CYLINDER,
        size=[base_r, 0.005, 0.0],
        pos=[0.0, 0.0, 0.005],
        rgba=shoes,
    )
    body_z = 0.01 + body_r + half_len
    body.add_geom(
        name=f"obj/{USER_NAME}/body",
        type=mujoco.mjtGeom.mjGEOM_CAPSULE,
        size=[body_r, half_len, 0.0],
        pos=[0.0, 0.0, body_z],
        rgba=shirt,
    )
    body.add_geom(
        name=f"obj/{USER_NAME}/head",
        type=mujoco.mjtGeom.mjGEOM_SPHERE,
        size=[head_r, 0.0, 0.0],
        pos=[0.0, 0.0, body_z + half_len + body_r + head_r * 0.8],
        rgba=skin,
    )
