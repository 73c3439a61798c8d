"""The simulated world: MuJoCo scene, cameras, robot, scripted expert and success checks.

Threading model
---------------
- One `World` owns the `MjModel` / `MjData` and a `threading.Lock`. Every access to `MjData`
  goes through that lock.
- Physics runs either in lockstep (`world.step(n)` in the caller's thread: tests, fast data
  collection) or in one background *physics thread* (`world.start_realtime()`, also started by
  `SimRobot.open()`), which steps 10 ms chunks under the lock (controller at 100 Hz inside) and
  sleeps to wall-clock deadlines with the lock released. The two modes exclude each other.
- Each `SimCamera` has its own *capture thread* with its own `mujoco.Renderer` (OpenGL contexts
  belong to one thread). It holds the lock only for `update_scene` (copying the state), then draws
  pixels unlocked, so rendering never stalls physics; it keeps only the newest frame.
- `SimRobot` calls are cheap and non-blocking: they set the controller's target under the lock.
- `ScriptedExpert` and `SimJudge` read privileged state through the same locked accessors.

Set `MUJOCO_GL=egl` (or `osmesa`) before importing mujoco on a machine without a display.
"""

from drivers.sim.camera import SimCamera
from drivers.sim.catalog import (
    USER_NAME,
    Catalog,
    CatalogError,
    ObjectSpec,
    load_catalog,
)
from drivers.sim.expert import ExpertAction, ScriptedExpert
from drivers.sim.render import ViewRenderer
from drivers.sim.robot import SimRobot
from drivers.sim.scene import (
    CAMERAS,
    SceneError,
    SceneLayout,
    SceneSpec,
    build_scene,
    plan_scene,
)
from drivers.sim.state import SceneState
from drivers.sim.success import SimJudge, Verdict
from drivers.sim.world import RealtimeStats, World, WorldClosedError

__all__ = [
    "CAMERAS",
    "USER_NAME",
    "Catalog",
    "CatalogError",
    "ExpertAction",
    "ObjectSpec",
    "RealtimeStats",
    "SceneError",
    "SceneLayout",
    "SceneSpec",
    "SceneState",
    "ScriptedExpert",
    "SimCamera",
    "SimJudge",
    "SimRobot",
    "Verdict",
    "ViewRenderer",
    "World",
    "WorldClosedError",
    "build_scene",
    "load_catalog",
    "plan_scene",
]
