"""Pairing two cameras' frames by capture time, with the skew reported.

The policy was trained on two views taken at the same instant; while the arm moves, a pair taken
50 ms apart shows the gripper in two different places. Cameras run free (no hardware sync between
a RealSense and an Azure Kinect), so pairs are formed on the host's monotonic clock (`t_capture`),
the only clock both frames share: device timestamps are per camera and not comparable.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from drivers.base import Camera, CameraError, Frame


@dataclass(frozen=True, slots=True)
class FramePair:
    """Two views and how far apart they were taken (`skew` = second - first, seconds)."""

    first: Frame
    second: Frame

    @property
    def skew(self) -> float:
        return self.second.t_capture - self.first.t_capture

    @property
    def t_capture(self) -> float:
        """The older frame's capture time: the age of a pair is the age of its older view."""
        return min(self.first.t_capture, self.second.t_capture)


def pair_newest(first: Camera, second: Camera, *, max_skew: float, timeout: float) -> FramePair:
    """The next pair of fresh frames taken at most `max_skew` seconds apart.

    Reads one new frame from each camera; while they are too far apart, replaces the older one
    with that camera's next frame (which can only come closer). Raises CameraError with the best
    skew seen when no close enough pair arrives within `timeout`.
    """
    if max_skew < 0:
        raise ValueError("max_skew must be >= 0")
    deadline = time.monotonic() + timeout

    def remaining() -> float:
        left = deadline - time.monotonic()
        if left <= 0:
            raise CameraError(
                f"cannot pair cameras {first.name} and {second.name} within "
                f"{timeout:g} s: best skew {best * 1e3:.1f} ms "
                f"(max {max_skew * 1e3:.1f} ms)"
            )
        return left

    best = float("inf")
    a = first.read(timeout)
    b = second.read(max(deadline - time.monotonic(), 1e-3))
    while True:
        pair = FramePair(a, b)
        best = min(best, abs(pair.skew))
        if abs(pair.skew) <= max_skew:
            return pair
        if a.t_capture < b.t_capture:
            a = first.read(remaining())
        else:
            b = second.read(remaining())
