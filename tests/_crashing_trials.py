"""A trial function for the pool-crash test (its own module: spawned workers import it cheaply).

It stands in for `run_trial` only to make a worker process die, which a real renderer does
unpredictably (Mesa llvmpipe faults); everything else in the pool is the real one.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class FakeTrial:
    seed: int

    def info(self) -> dict[str, Any]:
        return {"seed": self.seed, "request": f"trial {self.seed}"}


def always_dies(marker: str, trial: FakeTrial) -> dict[str, Any]:
    os.kill(os.getpid(), signal.SIGKILL)
    raise AssertionError("unreachable")
