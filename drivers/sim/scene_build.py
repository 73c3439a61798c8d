"""Scene building: a planned `SceneLayout` -> a compiled MuJoCo model (`build_scene`), or the
scene without the arm as MJCF text (`props_xml`) for franky-sim, which compiles its own.

The model is the FR3 with its hand from the franky-sim wheel, loaded through `mujoco.MjSpec` (most
of the ~0.7 s a build takes: the arm's meshes), plus the props (table, walls, lights, the two
cameras, the objects and the user figure: `drivers.sim.scene_props`). The arm gets the `ee` site
at its fingertip pads, gravity compensation and a stiffer hand servo, so grasps hold.

Rendering settings come from FINDINGS: no shadows and no multisampling (10x cheaper per frame).
Contact options: elliptic friction cones and impratio 10 (the objects' own contact settings are
`scene_props`').
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import mujoco

from drivers.sim.backgrounds import load_backgrounds
from drivers.sim.catalog import Catalog, ObjectSpec, load_catalog
from drivers.sim.config import SceneSpec
from drivers.sim.scene import SceneError, SceneLayout, plan_scene
from drivers.sim.scene_props import add_props

EE_SITE = "ee"
# Fingertip pad centre in the hand frame: where the object sits when pinched.
EE_SITE_OFFSET = 0.1034
HAND_STIFFNESS = 500.0  # N per m of tendon travel (stock: 100)
HAND_DAMPING = 25.0
ARM_JOINTS: tuple[str, ...] = tuple(f"fr3_joint{i}" for i in range(1, 8))
# The franky-sim `home` keyframe with joint 7 turned by +90 deg, so the fingers close along y.
HOME_JOINTS: tuple[float, ...] = (0.0, 0.0, 0.0, -1.57079, 0.0, 1.57079, 0.7854)


@dataclass(frozen=True)
class BuiltScene:
    """A compiled model plus what the world needs to interpret it."""

    model: mujoco.MjModel
    layout: SceneLayout
    spec: SceneSpec
    catalog: Catalog
    object_specs: dict[str, ObjectSpec] = field(default_factory=dict)


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
