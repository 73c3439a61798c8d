"""Real cameras: `RealSenseCamera` (pyrealsense2) and `AzureKinectCamera` (pyk4a), each with its
settings class, on the capture thread they share (`capture`: newest frame only, bounded resets),
and frame sets by capture time (`pairing`), as `drivers.franka` holds the arms.

Importing this package needs neither SDK: each driver imports its SDK in `open()` and names the
extra to install when it is missing.
"""

from drivers.cameras.azure_kinect import AzureKinectCamera, AzureKinectConfig
from drivers.cameras.capture import CameraSettings, StreamingCamera
from drivers.cameras.pairing import FrameSet, frameset, pair_newest
from drivers.cameras.realsense import RealSenseCamera, RealSenseConfig

__all__ = [
    "AzureKinectCamera",
    "AzureKinectConfig",
    "CameraSettings",
    "FrameSet",
    "RealSenseCamera",
    "RealSenseConfig",
    "StreamingCamera",
    "frameset",
    "pair_newest",
]
