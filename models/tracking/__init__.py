"""Tracking backends: `Tracker` / `TrackerFactory` protocols, OpenCV's trackers, the ONNX tracker.

Every backend's proposals pass the same `TrackHealth` check (models.tracking.health).
"""

from models.tracking.base import Tracker, TrackerFactory, TrackResult
from models.tracking.health import TrackHealth, box_health
from models.tracking.opencv_tracker import TRACKER_KINDS, OpenCVTracker, OpenCVTrackerFactory

__all__ = [
    "TRACKER_KINDS",
    "OpenCVTracker",
    "OpenCVTrackerFactory",
    "TrackHealth",
    "TrackResult",
    "Tracker",
    "TrackerFactory",
    "box_health",
]
