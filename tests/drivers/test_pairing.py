"""Frame sets by host capture time: the runtime's `frameset` and `pair_newest`.

The pairing logic only sees `drivers.base.Camera`, so most tests use scripted in-memory cameras;
the last pairs the two real drivers running on fakes of their vendor SDK objects (no camera is
attached here), at different frame rates, as the lab's RealSense + Azure Kinect would run.
"""

from __future__ import annotations

import numpy as np
import pytest

from drivers.base import CameraError, Frame
from drivers.cameras.azure_kinect import AzureKinectCamera, AzureKinectConfig
from drivers.cameras.pairing import FrameSet, frameset, pair_newest
from drivers.cameras.realsense import RealSenseCamera, RealSenseConfig
from tests.drivers.test_kinect import FakeK4A
from tests.drivers.test_realsense import FAST, FakeRealSense, Feed


class Scripted:
    """A camera whose successive reads return frames captured at the given times."""

    def __init__(self, name: str, times: list[float]) -> None:
        self.name = name
        self._times = list(times)
        self.reads = 0

    def open(self) -> None: ...

    def close(self) -> None: ...

    def read(self, timeout: float) -> Frame:
        if not self._times:
            raise CameraError(f"camera {self.name}: no new frame within {timeout} s")
        self.reads += 1
        t = self._times.pop(0)
        return Frame(
            camera=self.name, rgb=np.zeros((2, 2, 3), np.uint8), t_capture=t, seq=self.reads
        )


def test_close_frames_pair_at_once_with_their_skew() -> None:
    pair = pair_newest(Scripted("a", [10.000]), Scripted("b", [10.004]), max_skew=0.01, timeout=1.0)
    assert isinstance(pair, FrameSet)
    assert pair.skew_ms == pytest.approx(4.0) and pair.t_capture == 10.0


def test_the_older_view_is_replaced_until_they_match() -> None:
    a = Scripted("a", [10.000, 10.033, 10.066])
    b = Scripted("b", [10.060])
    pair = pair_newest(a, b, max_skew=0.01, timeout=1.0)
    assert (pair.frames["a"].t_capture, pair.frames["b"].t_capture) == (10.066, 10.060)
    assert pair.skew_ms == pytest.approx(6.0) and a.reads == 3 and b.reads == 1


def test_no_matching_pair_reports_the_best_skew() -> None:
    with pytest.raises(CameraError, match=r"cannot pair cameras a and b .* best skew 30\.0 ms"):
        pair_newest(
            Scripted("a", [10.0] * 100_000), Scripted("b", [10.03]), max_skew=0.001, timeout=0.05
        )


def test_two_real_drivers_on_fake_sdks_pair_within_a_frame_period() -> None:
    front = RealSenseCamera(RealSenseConfig(**FAST), name="front", sdk=FakeRealSense(Feed(fps=30)))
    side = AzureKinectCamera(AzureKinectConfig(**FAST), name="side", sdk=FakeK4A(Feed(fps=15)))
    with front, side:
        for _ in range(3):
            pair = pair_newest(front, side, max_skew=0.02, timeout=1.0)
            assert pair.skew_ms <= 20.0
            assert [f.camera for f in pair.frames.values()] == ["front", "side"]


def test_the_runtimes_set_is_as_old_as_its_oldest_view_and_reports_the_spread() -> None:
    """`frameset` is what the perceive loop pairs with: a held (older) view ages the whole set."""
    frames = {
        name: Frame(camera=name, rgb=np.zeros((2, 2, 3), np.uint8), t_capture=t, seq=1)
        for name, t in (("front", 5.030), ("side", 5.000), ("top", 5.010))
    }
    views = frameset(frames)
    assert views.frames == frames and list(views.frames) == ["front", "side", "top"]
    assert views.t_capture == 5.000 and views.skew_ms == pytest.approx(30.0)
