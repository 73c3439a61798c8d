"""The paper's "replace mask with bbox" ablation: the mask is the filled box.

Table II of the paper drops from 75.6% to 36.3% success with it; keeping the ablation as a backend
lets that comparison be rerun by changing one config name.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from models._boxes import box_mask
from models.types import Box, GroundTruth


class BoxSegmenter:
    """One filled-box mask per box; ignores labels and truth. No weights, ~free."""

    name = "box"

    def segment(
        self,
        image: np.ndarray,
        boxes: Sequence[Box],
        labels: Sequence[str] | None = None,
        truth: GroundTruth | None = None,
    ) -> list[np.ndarray]:
        return [box_mask(box, image.shape) for box in boxes]
