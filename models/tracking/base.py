"""The tracker role: follow one box from frame to frame after the first detection."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from models.types import Box


@dataclass(frozen=True, slots=True)
class TrackResult:
    """`ok` is False when the tracker lost the target; `score` is its confidence in [0, 1]."""

    box: Box
    score: float
    ok: bool


class Tracker(Protocol):
    """One instance follows one object; create one per tracked box."""

    def init(self, image: np.ndarray, box: Box) -> None: ...

    def update(self, image: np.ndarray) -> TrackResult: ...


class TrackerFactory(Protocol):
    name: str

    def __call__(self) -> Tracker: ...
