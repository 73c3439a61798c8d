"""The safe stop: the one call that must reach the arm however an episode or the runtime ends.

It is shielded (a cancellation cannot skip it) and bounded (a hung driver cannot hang the
runtime), and it reports how it went rather than raising, so that the ending it is part of (an
episode's `Finished`, closing the drivers) always completes.
"""

from __future__ import annotations

import anyio
import structlog

from agent.errors import describe
from agent.workers import StageTimeout, Workers
from drivers.base import Robot

log = structlog.get_logger("agent.runtime")  # the runtime's log: the runtime calls it


async def safe_stop(robot: Robot, workers: Workers, timeout: float) -> str:
    """Stop the arm; shielded so that cancellation cannot skip it, bounded so it cannot hang.

    Returns how it went: "ok", "failed: <reason>" or "timed out after <n> s" (a hung driver
    call is abandoned in its thread). A driver that reports its link lost (`link_error`, the
    Franka drivers) returns from `stop` without reaching the arm: that is a failure too.
    """
    with anyio.CancelScope(shield=True):
        try:
            await workers.run(robot.stop, timeout=timeout, what="safe stop")
        except StageTimeout:
            log.error("safe stop timed out", timeout_s=timeout)
            return f"timed out after {timeout:g} s"
        except Exception as exc:
            log.error("safe stop failed", error=str(exc))
            return f"failed: {describe(exc)}"
    link_error = getattr(robot, "link_error", None)
    if link_error:
        log.error("safe stop did not reach the arm", error=link_error)
        return f"failed: the link to the arm is lost ({link_error})"
    log.info("robot stopped")
    return "ok"
