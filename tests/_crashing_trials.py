"""Trial functions for the pool-crash test (their own module: spawned workers import it cheaply).

They stand in for `run_trial` only to make a worker process die, which a real renderer does
unpredictably (Mesa llvmpipe faults); everything else in the pool is the real one.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class FakeTrial:
    seed: int

    def info(self) -> dict[str, Any]:
        return {"seed": self.seed, "request": f"trial {self.seed}"}


def dies_once(marker: str, trial: FakeTrial) -> dict[str, Any]:
    """Kill this worker the first time `marker` is seen missing, then succeed."""
    path = Path(marker)
    if not path.exists():
        path.touch()
        os.kill(os.getpid(), signal.SIGKILL)
    return {**trial.info(), "success": True, "status": "success", "reason": "ok", "steps": 1}


def always_dies(marker: str, trial: FakeTrial) -> dict[str, Any]:
    os.kill(os.getpid(), signal.SIGKILL)
    raise AssertionError("unreachable")
