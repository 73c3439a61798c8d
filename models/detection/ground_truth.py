"""Oracle detection from simulator truth: exact boxes, so policy experiments isolate the policy.

The paper's detector (Grounding DINO) costs ~32 s per image on this CPU; in simulation the
segmentation render already knows where every object is, and a perfect detector is also the
upper bound that a learned detector is compared against.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from models._boxes import box_of_mask
from models._truth import find_label, require_truth
from models.types import Detection, GroundTruth


class GroundTruthDetector:
    """Boxes from the segmentation ids of the named objects (score 1.0).

    `min_pixels`: an object with fewer visible pixels is treated as not found, as a real detector
    would miss an almost fully occluded object; the pipeline then keeps the view's box empty.
    """

    name = "ground_truth"

    def __init__(self, min_pixels: int = 20) -> None:
        if min_pixels < 1:
            raise ValueError(f"min_pixels must be >= 1, got {min_pixels}")
        self.min_pixels = min_pixels

    def detect(
        self, image: np.ndarray, phrases: Sequence[str], truth: GroundTruth | None = None
    ) -> list[Detection]:
        """Return one detection per phrase that names a visible object; others are left out."""
        segmentation, labels = require_truth(truth, "ground_truth detection")
        detections = []
        for phrase in phrases:
            object_id = find_label(labels, phrase)
            if object_id is None:
                continue
            pixels = segmentation == object_id
            if np.count_nonzero(pixels) < self.min_pixels:
                continue
            box = box_of_mask(pixels)
            if box is not None:
                detections.append(Detection(label=phrase, box=box, score=1.0))
        return detections
