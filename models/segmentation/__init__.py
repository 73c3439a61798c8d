"""Segmentation backends: `Segmenter` protocol, ground truth, box-prompted GrabCut, filled box."""

from models.segmentation.base import Segmenter
from models.segmentation.box import BoxSegmenter
from models.segmentation.grabcut import GrabCutSegmenter
from models.segmentation.ground_truth import GroundTruthSegmenter

__all__ = ["BoxSegmenter", "GrabCutSegmenter", "GroundTruthSegmenter", "Segmenter"]
