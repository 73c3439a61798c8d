"""The reasoner role: a spoken-style request plus the objects in view -> a TaskSpec."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from models.types import TaskSpec


class Reasoner(Protocol):
    name: str

    def reason(self, request: str, objects: Sequence[str]) -> TaskSpec:
        """Choose what to pick and where to place it, only among `objects` when it is non-empty.

        Returns a TaskSpec with `pick=None` when nothing in view satisfies the request. Blocking:
        the runtime calls it from a worker thread.
        """
        ...
