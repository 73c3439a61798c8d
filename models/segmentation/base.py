"""The segmenter role: boxes -> masks in one image (image features computed once per image)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from models.types import Box, GroundTruth


class Segmenter(Protocol):
    name: str

    def segment(
        self,
        image: np.ndarray,
        boxes: Sequence[Box],
        labels: Sequence[str] | None = None,
        truth: GroundTruth | None = None,
    ) -> list[np.ndarray]:
        """Return one (H, W) bool mask per box, in the same order."""
        ...
