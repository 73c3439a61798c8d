"""Detection backends: `Detector` protocol and the simulator's ground-truth detector."""

from models.detection.base import Detector
from models.detection.ground_truth import GroundTruthDetector

__all__ = ["Detector", "GroundTruthDetector"]
