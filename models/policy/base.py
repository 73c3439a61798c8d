"""The policy role: an Observation -> the next Action (TPM, or the simulator's scripted expert)."""

from __future__ import annotations

from typing import Protocol

from models.types import Action, Observation, TaskSpec


class Policy(Protocol):
    name: str

    def reset(self, task: TaskSpec) -> None:
        """Start a new episode for `task`."""
        ...

    def act(self, observation: Observation) -> Action: ...
