"""The segmenter role: boxes -> masks in one image (image features computed once per image).

Every backend derives from `Segmenter`: `segment` is the role's one entry point and checks the
image once for all backends that read pixels; a backend implements `masks`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np

from models.types import Box, GroundTruth, ModelError

#: object names, one per box (the oracle needs them; image backends ignore them)
Labels = Sequence[str] | None
#: simulator truth (the oracle needs it; image backends ignore it)
Truth = GroundTruth | None


class Segmenter(ABC):
    name: str
    #: backends that read the pixels need an (H, W, 3) uint8 image (checked by `segment`)
    reads_pixels: bool = True

    def segment(
        self, image: np.ndarray, boxes: Sequence[Box], labels: Labels = None, truth: Truth = None
    ) -> list[np.ndarray]:
        """Return one (H, W) bool mask per box, in the same order."""
        rgb8 = image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
        if self.reads_pixels and not rgb8:
            raise ModelError(
                f"{self.name} needs an (H, W, 3) uint8 image, got {image.shape} {image.dtype}"
            )
        return self.masks(image, list(boxes), labels, truth)

    @abstractmethod
    def masks(self, image: np.ndarray, boxes: list[Box], labels: Labels, truth: Truth) -> list:
        """The masks of `segment`, its input checked."""
