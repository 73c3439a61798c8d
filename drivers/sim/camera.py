"""`SimCamera`: a `drivers.base.Camera` that renders a world's fixed camera in its own thread.

The capture thread creates its own `ViewRenderer` (the OpenGL context belongs to that thread),
renders at `fps` against wall-clock deadlines, and keeps only the newest frame: a slow reader gets
the latest image, never a backlog. If rendering falls behind, deadlines slip instead of bursting.

The deadlines lie on one grid of the monotonic clock (multiples of the period), so cameras of the
same rate snapshot the world at the same instants, as hardware-synchronised cameras expose
together: the views of a set show one moment, and a set is complete as soon as the slowest view
is drawn. Free-running cameras at arbitrary phases made the runtime pair each frame with the other
view's previous one, up to a period older (measured in `bench loop`: 28 ms median added between
capture and command, on top of render + perceive + act).
"""

from __future__ import annotations

import math
import threading
import time

from drivers.base import CameraError, Frame
from drivers.sim.render import ViewRenderer
from drivers.sim.state import SceneState

_OPEN_TIMEOUT = 30.0


class SimCamera:
    """Streams one camera ("front" or "side") of `world`; size and rate default to its spec."""

    def __init__(
        self,
        world: SceneState,
        name: str,
        *,
        width: int | None = None,
        height: int | None = None,
        fps: float | None = None,
        depth: bool = True,
        segmentation: bool = True,
    ) -> None:
        self.name = name
        self.world = world
        self.width = width or world.spec.image_width
        self.height = height or world.spec.image_height
        self.fps = fps or world.spec.camera_fps
        self._depth, self._segmentation = depth, segmentation
        self._cond = threading.Condition()
        self._latest: Frame | None = None
        self._last_read = 0
        self._error: BaseException | None = None
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.render_seconds = 0.0  # duration of the last render, for benchmarks

    def open(self) -> None:
        """Start the capture thread and wait until its renderer exists (idempotent)."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, name=f"sim-camera-{self.name}", daemon=True
        )
        self._thread.start()
        if not self._ready.wait(_OPEN_TIMEOUT):
            raise CameraError(f"camera {self.name!r}: renderer did not start in {_OPEN_TIMEOUT} s")
        if self._error is not None:
            raise CameraError(f"camera {self.name!r}: {self._error}") from self._error

    def read(self, timeout: float) -> Frame:
        """Newest frame newer than the last one returned; CameraError after `timeout` seconds."""
        if self._thread is None:
            raise CameraError(f"camera {self.name!r} is not open")
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._latest is None or self._latest.seq <= self._last_read:
                if self._error is not None:
                    raise CameraError(f"camera {self.name!r} failed: {self._error}")
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._stop.is_set():
                    raise CameraError(f"camera {self.name!r}: no new frame within {timeout:.3f} s")
                self._cond.wait(remaining)
            self._last_read = self._latest.seq
            return self._latest

    def close(self) -> None:
        """Stop the thread; the renderer is freed on it (idempotent)."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=10.0)
            self._thread = None
        self._ready.clear()

    def __enter__(self) -> SimCamera:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self) -> None:
        try:
            renderer = ViewRenderer(
                self.world,
                self.name,
                self.width,
                self.height,
                depth=self._depth,
                segmentation=self._segmentation,
            )
        except BaseException as exc:  # reported to open() and read()
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        period = 1.0 / self.fps
        deadline = _next_tick(time.monotonic(), period)
        self._stop.wait(max(0.0, deadline - time.monotonic()))
        try:
            while not self._stop.is_set():
                start = time.monotonic()
                frame = renderer.render()
                self.render_seconds = time.monotonic() - start
                with self._cond:
                    self._latest = frame
                    self._cond.notify_all()
                deadline += period
                now = time.monotonic()
                if deadline < now:
                    deadline = _next_tick(now, period)  # behind: skip ticks, never burst
                self._stop.wait(deadline - now)
        except BaseException as exc:
            with self._cond:
                self._error = exc
                self._cond.notify_all()
        finally:
            renderer.close()


def _next_tick(now: float, period: float) -> float:
    """The first multiple of `period` on the monotonic clock at or after `now`."""
    return math.ceil(now / period) * period
