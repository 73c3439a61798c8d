"""Oracle segmentation from simulator truth: the labelled object's pixels inside its box.

Cutting to the box (rather than returning every pixel of the object) keeps the oracle faithful to
the box-prompted pipeline: a wrong or stale tracker box gives a wrong mask here as it would with
SAM, so experiments with the oracle still exercise tracking errors.
"""

from __future__ import annotations

import numpy as np

from models._boxes import pixel_bounds
from models._truth import find_label, require_truth
from models.segmentation.base import Labels, Segmenter, Truth
from models.types import Box, ModelError


class GroundTruthSegmenter(Segmenter):
    """Masks from segmentation ids; needs `labels` (object names, one per box) and `truth`."""

    name = "ground_truth"
    reads_pixels = False  # the simulator's segmentation

    def masks(self, image: np.ndarray, boxes: list[Box], labels: Labels, truth: Truth) -> list:
        """Return one (H, W) bool mask per box: the named object's pixels within that box."""
        if labels is None or len(labels) != len(boxes):
            raise ModelError(
                "ground_truth segmentation needs one object name per box "
                f"(got {0 if labels is None else len(labels)} names for {len(boxes)} boxes)"
            )
        segmentation, names = require_truth(truth, "ground_truth segmentation")
        if segmentation.shape != image.shape[:2]:
            raise ModelError(
                f"segmentation shape {segmentation.shape} does not match image {image.shape[:2]}"
            )
        masks = []
        for box, label in zip(boxes, labels, strict=True):
            object_id = find_label(names, label)
            if object_id is None:
                raise ModelError(f"ground_truth segmentation: no object labelled {label!r}")
            mask = np.zeros(segmentation.shape, dtype=bool)
            x0, y0, x1, y1 = pixel_bounds(box, segmentation.shape)
            mask[y0:y1, x0:x1] = segmentation[y0:y1, x0:x1] == object_id
            masks.append(mask)
        return masks
