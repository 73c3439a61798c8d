"""capture: one task per camera, moving the newest frame into that camera's latest-wins slot."""

from __future__ import annotations

import structlog

from agent.channels import Latest
from agent.errors import describe
from agent.workers import Workers
from drivers.base import Camera, Frame

log = structlog.get_logger("agent.capture")

READ_GRACE_S = 1.0  # a read is abandoned this long after its own timeout (a hung SDK call)


def give_up_s(timeout: float, max_failures: int) -> float:
    """The longest `capture_loop` takes to close a camera's slot after its last frame.

    A consumer waiting for frames must wait longer than this, or a hung camera reaches it as a
    bare timeout instead of the capture loop's reason.
    """
    return max_failures * (timeout + READ_GRACE_S)


async def capture_loop(
    camera: Camera,
    out: Latest[Frame],
    *,
    workers: Workers,
    timeout: float,
    max_failures: int,
) -> None:
    """Publish frames until cancelled; after `max_failures` failed reads in a row, close `out`.

    Closing the slot is how a dead camera reaches the episode: the perceive loop's next read
    raises ChannelClosed with the reason, which becomes a fault.
    """
    failures = 0
    while True:
        try:
            frame = await workers.run(
                camera.read, timeout, timeout=timeout + READ_GRACE_S, what="camera read"
            )
        except Exception as exc:  # any error, the SDK's own too: never into the runtime's group
            # one line, no traceback: rendering one (with locals) holds the event loop for seconds
            failures += 1
            error = describe(exc)
            log.warning("camera read failed", camera=camera.name, error=error, failures=failures)
            if failures >= max_failures:
                out.close(f"camera {camera.name!r} failed {failures} times in a row: {error}")
                return
            continue
        failures = 0
        out.publish(frame)
