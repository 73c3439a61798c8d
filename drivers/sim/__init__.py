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

mujoco reads `MUJOCO_GL` once, when it is imported: call `offscreen_gl()` first on a machine
without a display (every command that renders does).
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Any

#: MuJoCo's rendering backend unless the user chose one: offscreen EGL (no display needed).
DEFAULT_GL = "egl"


def offscreen_gl() -> str:
    """Default `MUJOCO_GL` to offscreen EGL (a user's own choice wins); the backend in effect.

    The one place that default is written: commands call it before anything imports mujoco, and
    child processes inherit it through the environment.
    """
    return os.environ.setdefault("MUJOCO_GL", DEFAULT_GL)


#: public name -> defining module. Loaded on first use, so that the data modules (`catalog`,
#: `backgrounds`, `look`: plain Python, no mujoco) can be imported by the config without MuJoCo.
_EXPORTS: dict[str, str] = {
    "CAMERAS": "scene",
    "USER_NAME": "catalog",
    "BackgroundsError": "backgrounds",
    "Catalog": "catalog",
    "CatalogError": "catalog",
    "ExpertAction": "expert",
    "Look": "look",
    "ObjectSpec": "catalog",
    "Randomisation": "backgrounds",
    "RealtimeStats": "world",
    "SceneError": "scene",
    "SceneLayout": "scene",
    "SceneSpec": "config",
    "SceneState": "state",
    "ScriptedExpert": "expert",
    "SimCamera": "camera",
    "SimJudge": "success",
    "SimRobot": "robot",
    "SimSettings": "config",
    "Verdict": "success",
    "ViewRenderer": "render",
    "World": "world",
    "WorldClosedError": "world",
    "build_scene": "scene_build",
    "load_backgrounds": "backgrounds",
    "load_catalog": "catalog",
    "plan_scene": "scene",
}
__all__ = [
    "CAMERAS",
    "USER_NAME",
    "BackgroundsError",
    "Catalog",
    "CatalogError",
    "ExpertAction",
    "Look",
    "ObjectSpec",
    "Randomisation",
    "RealtimeStats",
    "SceneError",
    "SceneLayout",
    "SceneSpec",
    "SceneState",
    "ScriptedExpert",
    "SimCamera",
    "SimJudge",
    "SimRobot",
    "SimSettings",
    "Verdict",
    "ViewRenderer",
    "World",
    "WorldClosedError",
    "build_scene",
    "load_backgrounds",
    "load_catalog",
    "plan_scene",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


if TYPE_CHECKING:
    from drivers.sim.backgrounds import BackgroundsError, Randomisation, load_backgrounds
    from drivers.sim.camera import SimCamera
    from drivers.sim.catalog import USER_NAME, Catalog, CatalogError, ObjectSpec, load_catalog
    from drivers.sim.config import SceneSpec, SimSettings
    from drivers.sim.expert import ExpertAction, ScriptedExpert
    from drivers.sim.look import Look
    from drivers.sim.render import ViewRenderer
    from drivers.sim.robot import SimRobot
    from drivers.sim.scene import CAMERAS, SceneError, SceneLayout, plan_scene
    from drivers.sim.scene_build import build_scene
    from drivers.sim.state import SceneState
    from drivers.sim.success import SimJudge, Verdict
    from drivers.sim.world import RealtimeStats, World, WorldClosedError
