"""Franka arms: `FrankaRobot` (franky-control; FR3 and libfranka >= 0.10, franky-sim) and
`PandaPyRobot` (panda-python; Panda arms before libfranka 0.10).

Importing this package needs neither library: each driver imports its library in `open()` and
names the extra to install when it is missing.
"""

from drivers.franka._common import limit_target
from drivers.franka.config import FrankaConfig, GripperConfig
from drivers.franka.franky_robot import FrankaRobot
from drivers.franka.panda_py_robot import PandaPyGripper, PandaPyRobot

__all__ = [
    "FrankaConfig",
    "FrankaRobot",
    "GripperConfig",
    "PandaPyGripper",
    "PandaPyRobot",
    "limit_target",
]
