"""SimCamera: threaded rendering with segmentation ground truth, newest-frame semantics."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from drivers.base import Camera, CameraError
from drivers.sim.camera import SimCamera
from drivers.sim.render import ViewRenderer
from drivers.sim.scene import SceneSpec
from drivers.sim.world import World


@pytest.fixture(scope="module")
def world() -> World:
    spec = SceneSpec(
        seed=2, objects=["sponge", "bowl"], image_width=96, image_height=80, camera_fps=20.0
    )
    world = World.build(spec)
    yield world
    world.close()


@pytest.mark.parametrize("name", ["front", "side"])
def test_frames_have_size_labels_and_increasing_times(world: World, name: str) -> None:
    camera = SimCamera(world, name)
    assert isinstance(camera, Camera)
    with camera:
        frames = [camera.read(timeout=5.0) for _ in range(3)]
    first = frames[0]
    assert first.camera == name
    assert first.rgb.shape == (80, 96, 3) and first.rgb.dtype == np.uint8
    assert first.depth is not None and first.depth.shape == (80, 96)
    assert first.depth.dtype == np.float32 and 0.2 < float(np.median(first.depth)) < 5.0
    assert first.segmentation is not None and first.segmentation.dtype == np.int32
    assert first.labels is not None
    assert first.labels == world.object_ids()  # every scene object, with stable ids
    for label in ("sponge", "bowl", "user"):
        assert (first.segmentation == first.labels[label]).any(), f"{label} is in view"
    assert (first.segmentation == -1).any()  # table and robot are background
    seqs = [f.seq for f in frames]
    times = [f.t_capture for f in frames]
    assert seqs == sorted(set(seqs))
    assert times == sorted(set(times))


def test_read_times_out_and_closed_camera_raises(world: World) -> None:
    camera = SimCamera(world, "front", fps=2.0)
    with pytest.raises(CameraError):
        camera.read(timeout=0.1)  # not open
    camera.open()
    try:
        camera.read(timeout=5.0)
        with pytest.raises(CameraError, match="no new frame"):
            camera.read(timeout=0.05)  # next frame is ~0.5 s away
    finally:
        camera.close()
    camera.close()  # idempotent


def test_unknown_camera_fails_on_open(world: World) -> None:
    with pytest.raises(CameraError, match="no camera"):
        SimCamera(world, "top").open()


def test_cameras_of_one_rate_capture_together(world: World) -> None:
    """Both views snapshot the world on the same ticks (multiples of the period on the
    monotonic clock), as hardware-synchronised cameras do, so a set shows one moment.
    Free-running threads would start at arbitrary phases; the bound leaves 30 ms for a thread
    woken late on a loaded machine (the period is 200 ms)."""
    period = 0.2
    cameras = [SimCamera(world, name, fps=1 / period) for name in ("front", "side")]
    for camera in cameras:
        camera.open()
    try:
        phases = [
            camera.read(timeout=5.0).t_capture % period for camera in cameras for _ in range(4)
        ]
    finally:
        for camera in cameras:
            camera.close()
    assert float(np.median(phases)) < 0.03, phases


def test_renderers_on_two_threads_never_draw_at_once(world: World) -> None:
    """Two GL contexts drawing at once in one process crash Mesa's llvmpipe now and then (the
    trigger is in drivers/sim/render.py's docstring; too rare to reproduce in a test). Each
    camera draws on its own thread, so every draw and read-back must take the process's GL
    lock: this counts overlapping draws of two renderers on two threads. Each draw is held
    2 ms longer so that, unserialised, they would overlap on any machine."""
    guard = threading.Lock()
    active, most = [0], [0]

    def counted(draw: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with guard:
                active[0] += 1
                most[0] = max(most[0], active[0])
            try:
                time.sleep(0.002)
                return draw(*args, **kwargs)
            finally:
                with guard:
                    active[0] -= 1

        return wrapper

    frames: list[int] = []

    def run(name: str) -> None:
        view = ViewRenderer(world, name, 32, 32)
        try:
            view._renderer.render = counted(view._renderer.render)  # type: ignore[method-assign]
            frames.extend(view.render().seq for _ in range(15))
        finally:
            view.close()

    threads = [threading.Thread(target=run, args=(name,)) for name in ("front", "side")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60.0)
    assert len(frames) == 30, "both renderers drew every frame"
    assert most[0] == 1, f"{most[0]} draws overlapped"
