"""A trial function for the pool-crash tests (its own module: spawned workers import it cheaply).

It stands in for `run_trial` only to make a worker process die, which a real renderer does
unpredictably (Mesa llvmpipe faults); everything else in the pool is the real one.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class FakeTrial:
    seed: int

    def info(self) -> dict[str, Any]:
        return {"seed": self.seed, "request": f"trial {self.seed}"}


def scripted(plan: str, trial: FakeTrial) -> dict[str, Any]:
    """What `plan` says: "dies" (SIGKILL of this worker, every try), "dies-once:PATH" (the first
    try, the one that finds no file at PATH, dies) or "ok" (a short successful trial)."""
    if plan == "dies":
        _die()
    if plan.startswith("dies-once:"):
        marker = Path(plan.removeprefix("dies-once:"))
        if not marker.exists():
            marker.write_text(str(os.getpid()))
            time.sleep(0.3)  # the trial beside it is running when this one dies
            _die()
    time.sleep(0.5)
    return {**trial.info(), "success": True, "status": "success", "reason": "", "steps": 1,
            "pid": os.getpid()}  # fmt: skip


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)
    raise AssertionError("unreachable")
