"""Offscreen rendering of one fixed camera into a `drivers.base.Frame` (RGB, depth, segmentation).

A `ViewRenderer` owns one `mujoco.Renderer` (an OpenGL context, ~340 ms to create), so it must be
created, used and closed on one thread: `SimCamera` does that inside its capture thread, and
lockstep data collection can use it directly from the collecting thread. The world's lock is held
only while copying the state into the renderer's scene (`update_scene`), never while pixels are
drawn, so physics keeps stepping during the expensive part.

All GL work of every renderer in the process (creating, drawing, reading back, freeing) takes
`GL_LOCK`, so two contexts never draw at once. The trigger this guards against, found from the
faulting address of a general protection fault in `swrast_dri.so` (offset 0x6e00dc of Debian
bookworm's Mesa 22.3.6): llvmpipe answers "is this resource still in use?" (on every read-back
and texture upload) by walking the pending scenes of *every* context in the process under a
screen-wide mutex (`llvmpipe_flush_resource` -> `lp_setup_is_resource_referenced` ->
`lp_scene_is_resource_referenced`), while the thread that owns another context resets that
scene's reference list without taking it. Cameras drawing on their own threads, as `SimCamera`
does, crashed the process now and then: about one eval trial in 70-300 here, and
`scripts/gl_race.py` (6 threads drawing flat out) within ~7 minutes. llvmpipe rasterises on the
calling thread (`LP_NUM_THREADS=0`, set before the first context): its own rasteriser threads
only added hand-offs beside camera threads that are ours already (~5 ms of CPU a step in
`bench loop`).
"""

from __future__ import annotations

import os
import threading
import time

import mujoco
import numpy as np

from drivers.base import Frame
from drivers.sim.state import SceneState

#: held for every GL call of every renderer in this process (see the module's docstring)
GL_LOCK = threading.Lock()


class ViewRenderer:
    """Renders one named camera of `world` at a fixed size; not thread-safe, reuse it.

    `world` is any `SceneState`: our `World` or franky-sim's physics seen through the bridge.
    """

    def __init__(
        self,
        world: SceneState,
        camera: str,
        width: int,
        height: int,
        *,
        depth: bool = True,
        segmentation: bool = True,
    ) -> None:
        if mujoco.mj_name2id(world.model, mujoco.mjtObj.mjOBJ_CAMERA, camera) < 0:
            raise ValueError(f"no camera {camera!r} in the scene")
        self.world = world
        self.camera = camera
        self.width, self.height = width, height
        self.depth, self.segmentation = depth, segmentation
        with GL_LOCK:
            os.environ.setdefault("LP_NUM_THREADS", "0")  # read when the first context is made
            self._renderer = mujoco.Renderer(world.model, height=height, width=width)
        self._names = world.object_names()
        self._labels = {name: i for i, name in enumerate(self._names)}
        self._geom_object = world.geom_object
        self._seq = 0

    def render(self) -> Frame:
        """Snapshot the state under the world's lock, then draw RGB (+ depth, + segmentation)
        under `GL_LOCK` only."""
        r = self._renderer
        with self.world.lock:
            r.update_scene(self.world.data, camera=self.camera)
            t_capture = time.monotonic()
            sim_time = float(self.world.data.time)
        depth = raw = seg = labels = None
        with GL_LOCK:
            rgb = r.render()
            if self.depth:
                r.enable_depth_rendering()
                depth = r.render()
                r.disable_depth_rendering()
            if self.segmentation:
                r.enable_segmentation_rendering()
                raw = r.render()
                r.disable_segmentation_rendering()
        if raw is not None:
            is_geom = raw[..., 1] == int(mujoco.mjtObj.mjOBJ_GEOM)
            ids = np.where(is_geom, raw[..., 0], 0)
            seg = np.where(is_geom, self._geom_object[ids], -1).astype(np.int32)
            # every scene object, visible or not: ids are stable for the episode, and "is it
            # visible" is answered by its pixels in `seg` (an occluded object keeps its label)
            labels = self._labels
        self._seq += 1
        return Frame(
            camera=self.camera,
            rgb=rgb,
            t_capture=t_capture,
            seq=self._seq,
            t_device=sim_time,
            depth=depth,
            segmentation=seg,
            labels=labels,
        )

    def close(self) -> None:
        with GL_LOCK:
            self._renderer.close()
