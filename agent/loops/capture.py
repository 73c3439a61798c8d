"""capture: one task per camera, moving the newest frame into that camera's latest-wins slot."""

from __future__ import annotations

import anyio
import structlog

from agent.channels import Latest
from agent.workers import StageTimeout, run_blocking
from drivers.base import Camera, DriverError, Frame

log = structlog.get_logger("agent.capture")


async def capture_loop(
    camera: Camera,
    out: Latest[Frame],
    *,
    limiter: anyio.CapacityLimiter,
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
            frame = await run_blocking(
                camera.read, timeout, limiter=limiter, timeout=timeout + 1.0, what="camera read"
            )
        except (DriverError, StageTimeout) as exc:
            failures += 1
            log.warning("camera read failed", camera=camera.name, error=str(exc), failures=failures)
            if failures >= max_failures:
                out.close(f"camera {camera.name!r} failed {failures} times in a row: {exc}")
                return
            continue
        failures = 0
        out.publish(frame)
