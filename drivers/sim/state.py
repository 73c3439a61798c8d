"""`SceneState`: privileged read access to a scene's objects and the arm's hand in any MuJoCo data.

The success check, the scripted expert and the cameras need the same questions answered (where is
an object, what are its bounds, is it pinched by both fingers, was it grasped) whether the physics
runs in our own `World` or inside franky-sim's simulator, where the arm's names carry a prefix
(`robot0_left_finger`) and the stepping belongs to franky-sim's server. So those questions live
here, over a model, its data, the lock that guards the data and a name prefix for the arm; `World`
adds its own controller on top, `drivers.sim.franky_bridge.FrankySimWorld` adds franky-sim's server.

Every method that reads `data` takes the lock; methods ending in `_locked` expect it held.
"""

from __future__ import annotations

import threading

import mujoco
import numpy as np

from drivers.sim.catalog import ObjectSpec
from drivers.sim.config import SceneSpec
from drivers.sim.scene import SceneLayout
from drivers.sim.scene_build import EE_SITE, BuiltScene

LIFT_FOR_GRASP = 0.02  # an object counts as grasped once held this far above its resting height


class SceneState:
    """Objects and hand of `built`'s layout inside `data`; see the module docstring."""

    def __init__(
        self, built: BuiltScene, data: mujoco.MjData, lock: threading.Lock, *, prefix: str = ""
    ) -> None:
        self.built = built
        self.model: mujoco.MjModel = built.model
        self.data = data
        self.lock = lock
        m = self.model
        self._objects: list[str] = list(built.layout.names)
        self._object_ids = {name: i for i, name in enumerate(self._objects)}
        self._body = {n: m.body(f"obj/{n}").id for n in self._objects}
        self._qadr: dict[str, tuple[int, int]] = {}
        for name in self._objects:
            jnt = m.body_jntadr[self._body[name]]
            if jnt >= 0:
                self._qadr[name] = (int(m.jnt_qposadr[jnt]), int(m.jnt_dofadr[jnt]))
        body_object = np.full(m.nbody, -1, dtype=np.int32)
        for name, body in self._body.items():
            body_object[body] = self._object_ids[name]
        self.geom_object: np.ndarray = body_object[m.geom_bodyid]
        fingers = {m.body(f"{prefix}left_finger").id: 0, m.body(f"{prefix}right_finger").id: 1}
        self._geom_finger = np.array([fingers.get(int(b), -1) for b in m.geom_bodyid], np.int32)
        self._finger_q = np.array(
            [m.jnt_qposadr[m.joint(f"{prefix}{j}").id] for j in ("finger_joint1", "finger_joint2")]
        )
        self._site = m.site(f"{prefix}{EE_SITE}").id
        self._grasped: set[str] = set()

    # ------------------------------------------------------------------ description

    @property
    def spec(self) -> SceneSpec:
        return self.built.spec

    @property
    def layout(self) -> SceneLayout:
        return self.built.layout

    def object_names(self) -> list[str]:
        """Objects in the scene, "user" included, in segmentation-id order."""
        return list(self._objects)

    def object_ids(self) -> dict[str, int]:
        """Object name -> id used in segmentation images."""
        return dict(self._object_ids)

    def object_spec(self, name: str) -> ObjectSpec:
        self._check_name(name)
        return self.built.object_specs[name]

    # ------------------------------------------------------------------ state (all under the lock)

    def object_position(self, name: str) -> np.ndarray:
        """Body origin of `name`: the footprint centre for objects, the feet for the user."""
        self._check_name(name)
        with self.lock:
            return self.data.xpos[self._body[name]].copy()

    def object_velocity(self, name: str) -> np.ndarray:
        """Linear velocity (m/s) of a free object; zeros for static ones (the user)."""
        self._check_name(name)
        if name not in self._qadr:
            return np.zeros(3)
        with self.lock:
            dof = self._qadr[name][1]
            return self.data.qvel[dof : dof + 3].copy()

    def object_bounds(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """World-axis-aligned bounding box (low, high corners) of the object's geoms."""
        self._check_name(name)
        with self.lock:
            return self._bounds(self._body[name])

    def ee_position(self) -> np.ndarray:
        """The point between the fingertip pads (site `ee`), world frame."""
        with self.lock:
            return self.data.site_xpos[self._site].copy()

    def gripper_width(self) -> float:
        """Distance between the fingers (m): the sum of both finger joints."""
        with self.lock:
            return float(self.data.qpos[self._finger_q].sum())

    @property
    def sim_time(self) -> float:
        return float(self.data.time)

    def held_objects(self) -> set[str]:
        """Objects touched by both fingers right now."""
        with self.lock:
            return {self._objects[i] for i in self._pinched()}

    def was_grasped(self, name: str) -> bool:
        """True once `name` was pinched by both fingers and lifted >= 2 cm (latched).

        Latched since the world was built or last reset, or since `clear_grasps` (which the
        worlds' `begin_task` calls, so that a judge reads only the current task).
        """
        self._check_name(name)
        return name in self._grasped

    def clear_grasps(self) -> None:
        """Forget every latched grasp: from now on `was_grasped` tells what happened since."""
        with self.lock:
            self._grasped = set()

    def describe_scene(self) -> str:
        """This scene in a few words, for events and run folders."""
        spec = self.spec
        return f"MuJoCo scene, seed {spec.seed} ({spec.setting}, {spec.split} objects)"

    def mark_grasped(self, name: str, grasped: bool = True) -> None:
        """Set the latched grasp flag by hand (tests that teleport objects instead of picking)."""
        self._check_name(name)
        (self._grasped.add if grasped else self._grasped.discard)(name)

    def in_contact(self, a: str, b: str) -> bool:
        """Whether any geom of object `a` touches any geom of object `b`."""
        self._check_name(a)
        self._check_name(b)
        ia, ib = self._object_ids[a], self._object_ids[b]
        with self.lock:
            pairs = self._contact_objects()
        return bool(
            np.any(
                ((pairs[:, 0] == ia) & (pairs[:, 1] == ib))
                | ((pairs[:, 0] == ib) & (pairs[:, 1] == ia))
            )
        )

    # ------------------------------------------------------------------ internals (lock held)

    def _latch_grasps(self) -> None:
        """Latch every free object pinched by both fingers and lifted >= 2 cm. Lock held."""
        for obj in self._pinched():
            name = self._objects[obj]
            if name in self._grasped or name not in self._qadr:
                continue
            low, _ = self._bounds(self._body[name])
            if low[2] >= LIFT_FOR_GRASP:
                self._grasped.add(name)

    def _contact_objects(self) -> np.ndarray:
        """(ncon, 2) object ids of both sides of every contact (-1 for non-objects). Lock held."""
        geoms = self.data.contact.geom[: self.data.ncon]
        return self.geom_object[geoms] if len(geoms) else np.zeros((0, 2), np.int32)

    def _pinched(self) -> set[int]:
        """Object ids in contact with both fingers. Lock held."""
        geoms = self.data.contact.geom[: self.data.ncon]
        if not len(geoms):
            return set()
        obj = self.geom_object[geoms]
        finger = self._geom_finger[geoms]
        touched: dict[int, set[int]] = {}
        for side in (0, 1):
            other = 1 - side
            hits = (finger[:, side] >= 0) & (obj[:, other] >= 0)
            for o, f in zip(obj[hits, other], finger[hits, side], strict=True):
                touched.setdefault(int(o), set()).add(int(f))
        return {o for o, f in touched.items() if len(f) == 2}

    def _bounds(self, body: int) -> tuple[np.ndarray, np.ndarray]:
        m, d = self.model, self.data
        geoms = np.flatnonzero(m.geom_bodyid == body)
        lows, highs = [], []
        for g in geoms:
            rot = d.geom_xmat[g].reshape(3, 3)
            c, h = _geom_extent(int(m.geom_type[g]), m.geom_size[g], rot, m.geom_aabb[g])
            c = d.geom_xpos[g] + c
            lows.append(c - h)
            highs.append(c + h)
        return np.min(lows, axis=0), np.max(highs, axis=0)

    def _check_name(self, name: str) -> None:
        if name not in self._object_ids:
            raise KeyError(f"no object {name!r} in this scene; present: {', '.join(self._objects)}")


def _geom_extent(
    gtype: int, size: np.ndarray, rot: np.ndarray, aabb: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(centre offset, half extents) of a geom's tight world-axis box, turned by `rot`.

    Exact for the rounded primitives: turning the local box (`geom_aabb`) of a sphere, an
    ellipsoid or a cylinder overstates its reach, by up to 73% of a tilted sphere's radius, which
    put a plum resting on a book "below its top" and told the expert to grasp too low. Boxes and
    meshes keep the turned local box (exact for boxes).
    """
    geom = mujoco.mjtGeom
    if gtype == geom.mjGEOM_SPHERE:
        return np.zeros(3), np.full(3, size[0])
    if gtype == geom.mjGEOM_ELLIPSOID:
        return np.zeros(3), np.sqrt(((rot * size[:3]) ** 2).sum(axis=1))
    if gtype in (geom.mjGEOM_CYLINDER, geom.mjGEOM_CAPSULE):
        axis = np.abs(rot[:, 2])  # the local z axis in world coordinates
        radial = size[0] * np.sqrt(np.clip(1.0 - axis**2, 0.0, 1.0))
        if gtype == geom.mjGEOM_CAPSULE:
            radial = np.full(3, size[0])
        return np.zeros(3), size[1] * axis + radial
    return rot @ aabb[:3], np.abs(rot) @ aabb[3:]
