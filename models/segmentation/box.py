"""The paper's "replace mask with bbox" ablation: the mask is the filled box.

Table II of the paper drops from 75.6% to 36.3% success with it; keeping the ablation as a backend
lets that comparison be rerun by changing one config name.
"""

from __future__ import annotations

import numpy as np

from models._boxes import box_mask
from models.segmentation.base import Labels, Segmenter, Truth
from models.types import Box


class BoxSegmenter(Segmenter):
    """One filled-box mask per box; ignores labels and truth. No weights, ~free."""

    name = "box"
    reads_pixels = False  # only the image size

    def masks(self, image: np.ndarray, boxes: list[Box], labels: Labels, truth: Truth) -> list:
        return [box_mask(box, image.shape) for box in boxes]
