"""The detector role: open-vocabulary boxes for requested phrases in one image (first frame)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from models.types import Detection, GroundTruth


class Detector(Protocol):
    name: str

    def detect(
        self, image: np.ndarray, phrases: Sequence[str], truth: GroundTruth | None = None
    ) -> list[Detection]:
        """Return the best box for each phrase that is found; phrases not found are left out."""
        ...
