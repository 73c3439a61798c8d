"""Frames of several cameras taken as one set, by capture time, with the skew reported.

The policy was trained on views taken at the same instant; while the arm moves, a pair taken
50 ms apart shows the gripper in two different places. Cameras run free (no hardware sync between
a RealSense and an Azure Kinect), so sets are formed on the host's monotonic clock (`t_capture`),
the only clock all frames share: device timestamps are per camera and not comparable.

`frameset` is what the runtime pairs with (its perceive loop takes the first view's new frame and
the others' newest, and reports the skew; a stale view shows in the set's age). `pair_newest`
waits for two free-running cameras to deliver frames close enough together.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

from drivers.base import Camera, CameraError, Frame


@dataclass(frozen=True, slots=True)
class FrameSet:
    """One frame per view; `t_capture` is the oldest frame's (a set is as old as its oldest view)
    and `skew_ms` the capture-time spread between the views."""

    frames: dict[str, Frame]
    t_capture: float
    skew_ms: float


def frameset(frames: Mapping[str, Frame]) -> FrameSet:
    """`frames` (view -> frame) as one set, with its age and skew."""
    times = [f.t_capture for f in frames.values()]
    return FrameSet(
        frames=dict(frames), t_capture=min(times), skew_ms=(max(times) - min(times)) * 1e3
    )


def pair_newest(first: Camera, second: Camera, *, max_skew: float, timeout: float) -> FrameSet:
    """The next pair of fresh frames taken at most `max_skew` seconds apart (keyed by camera name).

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
        skew = abs(b.t_capture - a.t_capture)
        best = min(best, skew)
        if skew <= max_skew:
            return frameset({first.name: a, second.name: b})
        if a.t_capture < b.t_capture:
            a = first.read(remaining())
        else:
            b = second.read(remaining())
