"""Offscreen rendering of one fixed camera into a `drivers.base.Frame` (RGB, depth, segmentation).

A `ViewRenderer` owns one `mujoco.Renderer` (an OpenGL context, ~340 ms to create), so it must be
created, used and closed on one thread: `SimCamera` does that inside its capture thread, and
lockstep data collection can use it directly from the collecting thread. The world's lock is held
only while copying the state into the renderer's scene (`update_scene`), never while pixels are
drawn, so physics keeps stepping during the expensive part.
"""

from __future__ import annotations

import time

import mujoco
import numpy as np

from drivers.base import Frame
from drivers.sim.state import SceneState


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
        self._renderer = mujoco.Renderer(world.model, height=height, width=width)
        self._names = world.object_names()
        self._labels = {name: i for i, name in enumerate(self._names)}
        self._geom_object = world.geom_object
        self._seq = 0

    def render(self) -> Frame:
        """Snapshot the state under the lock, then draw RGB (+ depth, + segmentation) without it."""
        r = self._renderer
        with self.world.lock:
            r.update_scene(self.world.data, camera=self.camera)
            t_capture = time.monotonic()
            sim_time = float(self.world.data.time)
        rgb = r.render().copy()
        depth = seg = labels = None
        if self.depth:
            r.enable_depth_rendering()
            depth = r.render().astype(np.float32, copy=True)
            r.disable_depth_rendering()
        if self.segmentation:
            r.enable_segmentation_rendering()
            raw = r.render()
            r.disable_segmentation_rendering()
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
        self._renderer.close()
