"""capture: one reader thread per camera, feeding the newest frame into that camera's slot.

A camera's SDK call blocks until its next frame, so it runs on a thread of its own that reads
frames back to back and feeds each into the camera's `ThreadFed` slot (agent.channels): the
perception thread takes them from there directly, and the event loop is woken only while one of
its tasks waits for a frame (the episode's start). Failed reads go to the loop, one
`call_soon_threadsafe` each (on asyncio; other anyio backends get one blocking-portal call),
where they are counted. The loop's task only watches: it sleeps until a read is overdue.

History, measured with `bench loop` (two cameras at 10 fps): until 2026-12 each frame was one
worker call (a future, a queue put, a deadline timer and the capture task's resumption on the
loop's thread); then one `call_soon_threadsafe` a frame (the loop's Python fell from about 0.24 to
0.08 ms a control step); since 2026-12-03 frames do not pass through the loop at all.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import anyio
import structlog

from agent.channels import ChannelClosed, ThreadFed
from agent.errors import describe
from agent.workers import loop_caller
from drivers.base import Camera, Frame

log = structlog.get_logger("agent.capture")

READ_GRACE_S = 1.0  # a read is abandoned this long after its own timeout (a hung SDK call)


def give_up_s(timeout: float, max_failures: int) -> float:
    """The longest `capture_loop` takes to close a camera's slot after its last frame.

    A consumer waiting for frames must wait longer than this, or a hung camera reaches it as a
    bare timeout instead of the capture loop's reason.
    """
    return max_failures * (timeout + READ_GRACE_S)


class _Reader:
    """The camera's thread and what the loop knows of it; every count changes on the loop."""

    def __init__(
        self,
        camera: Camera,
        out: ThreadFed[Frame],
        timeout: float,
        max_failures: int,
        to_loop: Callable[..., object],
    ) -> None:
        self.camera = camera
        self.out = out
        self.timeout = timeout
        self.max_failures = max_failures
        self.to_loop = to_loop  # runs a callback on the event loop's thread, from another
        self.generation = 0  # a thread whose generation is behind was abandoned: it stays silent
        self.failures = 0
        self.frames = 0  # fed by the reader threads; a failure after a frame starts a new run
        self.frames_at_failure = 0
        self.last_report = time.monotonic()  # a frame or a failed read (a float: set by either)
        self.done = threading.Event()  # the task ended or the slot was closed: threads leave

    def start(self) -> None:
        """A new thread reads from now on; a hung one (if any) is abandoned to finish alone."""
        self.generation += 1
        threading.Thread(
            target=self._read_frames,
            args=(self.generation,),
            name=f"camera-{self.camera.name}-reader",
            daemon=True,
        ).start()

    def _read_frames(self, generation: int) -> None:
        while not self.done.is_set() and generation == self.generation:
            try:
                frame = self.camera.read(self.timeout)
            except Exception as exc:  # any error, the SDK's own too: counted on the loop
                self._report(self._failed, generation, describe(exc))
                continue
            if generation != self.generation or self.done.is_set():
                return
            self.frames += 1
            self.last_report = time.monotonic()
            try:
                self.out.feed(frame)
            except ChannelClosed:  # the slot gave up on this camera: nobody reads it any more
                return

    def _report(self, callback: Callable[[int, Any], None], generation: int, what: Any) -> None:
        if generation != self.generation or self.done.is_set():
            return
        try:
            self.to_loop(callback, generation, what)
        except RuntimeError:  # the loop is closed: nobody reads this camera any more
            self.done.set()

    # on the loop's thread ------------------------------------------------------------------
    def _failed(self, generation: int, error: str) -> None:
        if generation == self.generation:
            self.last_report = time.monotonic()
            self.count_failure(error)

    def count_failure(self, error: str) -> None:
        """One failed read; after `max_failures` in a row the slot closes with the reason."""
        if self.frames != self.frames_at_failure:  # a frame came since the last failure
            self.frames_at_failure = self.frames
            self.failures = 0
        self.failures += 1
        log.warning(
            "camera read failed", camera=self.camera.name, error=error, failures=self.failures
        )
        if self.failures >= self.max_failures and not self.out.closed:
            self.done.set()
            self.out.close(
                f"camera {self.camera.name!r} failed {self.failures} times in a row: {error}"
            )


async def capture_loop(
    camera: Camera,
    out: ThreadFed[Frame],
    *,
    timeout: float,
    max_failures: int,
) -> None:
    """Publish frames until cancelled; after `max_failures` failed reads in a row, close `out`.

    A read that fails (its own `timeout` included) counts, and so does one that has not returned
    `READ_GRACE_S` after its timeout (a hung SDK call: a fresh thread takes over and the hung one
    is abandoned). Closing the slot is how a dead camera reaches the episode: the perceive
    loop's next read raises ChannelClosed with the reason, which becomes a fault.
    """
    to_loop = loop_caller()
    out.attach(to_loop)
    reader = _Reader(camera, out, timeout, max_failures, to_loop)
    overdue = timeout + READ_GRACE_S
    reader.start()
    try:
        while not out.closed:
            await anyio.sleep(max(0.0, reader.last_report + overdue - time.monotonic()))
            if not out.closed and time.monotonic() - reader.last_report >= overdue:
                reader.last_report = time.monotonic()
                reader.count_failure(f"camera read did not finish within {overdue:g} s")
                if not out.closed:
                    reader.start()
    finally:
        reader.done.set()
