"""Tracking backends: `Tracker` / `TrackerFactory` protocols and OpenCV's trackers."""

from models.tracking.base import Tracker, TrackerFactory, TrackResult
from models.tracking.opencv_tracker import (
    TRACKER_KINDS,
    OpenCVTracker,
    OpenCVTrackerFactory,
    box_health,
)

__all__ = [
    "TRACKER_KINDS",
    "OpenCVTracker",
    "OpenCVTrackerFactory",
    "TrackResult",
    "Tracker",
    "TrackerFactory",
    "box_health",
]
