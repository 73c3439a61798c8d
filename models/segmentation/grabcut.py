"""Box-prompted GrabCut: a weight-free stand-in for SAM that runs on any CPU.

SAM ViT-B costs ~13-21 s per image encoding on this machine and no checkpoint is installable here;
GrabCut gives object-shaped masks from the same box prompt in tens of milliseconds. It models
colour only, so it is weaker on objects that look like their surroundings: it falls back to the box
when it finds no foreground at all, so the policy always receives a mask for a tracked object.
"""

from __future__ import annotations

import cv2
import numpy as np

from models._boxes import box_mask, pixel_bounds
from models.segmentation.base import Labels, Segmenter, Truth
from models.types import Box


class GrabCutSegmenter(Segmenter):
    """`cv2.grabCut` initialised with each box, run on a crop around it.

    `iterations`: GrabCut EM iterations (cost grows linearly; 3 is enough for the box prompt).
    `context`: the margin kept around the box, as a fraction of the box size (at least 4 px). The
    background colour model only needs the surroundings, and cropping makes the cost follow the
    object size instead of the image size.
    """

    name = "grabcut"

    def __init__(self, iterations: int = 3, context: float = 0.5) -> None:
        if iterations < 1:
            raise ValueError(f"iterations must be >= 1, got {iterations}")
        if context < 0:
            raise ValueError(f"context must be >= 0, got {context}")
        self.iterations = iterations
        self.context = context

    def masks(self, image: np.ndarray, boxes: list[Box], labels: Labels, truth: Truth) -> list:
        """Return one (H, W) bool mask per box, in order; labels and truth are not used."""
        return [self._segment_one(image, box) for box in boxes]

    def _segment_one(self, image: np.ndarray, box: Box) -> np.ndarray:
        x0, y0, x1, y1 = pixel_bounds(box, image.shape)
        width, height = x1 - x0, y1 - y0
        if width < 2 or height < 2:
            return box_mask(box, image.shape)
        margin_x = max(4, round(self.context * width))
        margin_y = max(4, round(self.context * height))
        cx0, cy0 = max(0, x0 - margin_x), max(0, y0 - margin_y)
        cx1, cy1 = min(image.shape[1], x1 + margin_x), min(image.shape[0], y1 + margin_y)
        if (cx0, cy0, cx1, cy1) == (x0, y0, x1, y1):
            # The box fills the whole image: no background samples, GrabCut cannot start.
            return box_mask(box, image.shape)
        crop = np.ascontiguousarray(image[cy0:cy1, cx0:cx1])
        labels = np.zeros(crop.shape[:2], dtype=np.uint8)
        background_model = np.zeros((1, 65), dtype=np.float64)
        foreground_model = np.zeros((1, 65), dtype=np.float64)
        try:
            cv2.grabCut(
                crop,
                labels,
                (x0 - cx0, y0 - cy0, width, height),
                background_model,
                foreground_model,
                self.iterations,
                cv2.GC_INIT_WITH_RECT,
            )
        except cv2.error:
            # Degenerate colour statistics (e.g. a flat crop); the box is the honest fallback.
            return box_mask(box, image.shape)
        foreground = (labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD)
        if not foreground.any():
            return box_mask(box, image.shape)
        mask = np.zeros(image.shape[:2], dtype=bool)
        mask[cy0:cy1, cx0:cx1] = foreground
        return mask
