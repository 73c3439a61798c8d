"""`AzureKinectCamera` against a fake of pyk4a's device object (`PyK4A`).

pyk4a cannot even be installed here (it needs Microsoft's libk4a, which no registry ships), so the
SDK module handed to the driver (`sdk=`) is a fake whose devices deliver BGRA captures at a set
rate, time out like `get_capture` does, and come back (or not) when reopened. The capture thread,
colour conversion, depth scaling, serial lookup and bounded resets above it are the real code.
The capture thread's stale-frame and timeout rules are the RealSense driver's too (both stand on
drivers.cameras.capture), so they are tested once, in test_realsense.py.
"""

from __future__ import annotations

import sys
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from drivers.base import Camera, CameraError
from drivers.cameras.azure_kinect import (
    AzureKinectCamera,
    AzureKinectConfig,
    import_sdk,
    list_devices,
)
from tests.drivers.test_realsense import FAST, Feed, read_until_failed, stall_after_a_frame


class K4ATimeoutException(Exception):
    pass


class FakeK4A:
    """The parts of the pyk4a module the driver uses; devices with the given serials."""

    ColorResolution = SimpleNamespace(RES_720P="720p", RES_1080P="1080p")
    ImageFormat = SimpleNamespace(COLOR_BGRA32="bgra")
    DepthMode = SimpleNamespace(NFOV_UNBINNED="nfov", OFF="off")
    FPS = SimpleNamespace(FPS_5=5, FPS_15=15, FPS_30=30)
    CalibrationType = SimpleNamespace(COLOR="color")
    K4ATimeoutException = K4ATimeoutException

    def __init__(self, feed: Feed, serials: tuple[str, ...] = ("000123",)) -> None:
        self.feed, self.serials = feed, serials
        self.opened: list[int] = []  # device ids started, in order
        fake = self

        class PyK4A:
            def __init__(self, config: Any = None, device_id: int = 0) -> None:
                self.config, self.device_id = config, device_id

            @property
            def serial(self) -> str:
                return fake.serials[self.device_id]

            def open(self) -> None:
                pass

            def start(self) -> None:
                fake.opened.append(self.device_id)
                if len(fake.opened) > 1:  # a reopen is the driver's reset
                    fake.feed.reset()

            def stop(self) -> None:
                pass

            def close(self) -> None:
                pass

            @property
            def calibration(self) -> Any:
                matrix = np.array([[600.0, 0, 640], [0, 601.0, 360], [0, 0, 1]])
                return SimpleNamespace(
                    get_camera_matrix=lambda kind: matrix,
                    get_distortion_coefficients=lambda kind: np.zeros(8),
                )

            def get_capture(self, timeout: int) -> Any:
                index = fake.feed.next(timeout / 1000)
                if index is None:
                    raise K4ATimeoutException()
                bgra = np.zeros((36, 64, 4), np.uint8)
                bgra[..., 0], bgra[..., 2] = 200, 10  # blue-ish in BGRA
                depth = (
                    np.full((36, 64), 750, np.uint16) if self.config.depth_mode == "nfov" else None
                )
                return SimpleNamespace(
                    color=bgra, transformed_depth=depth, color_timestamp_usec=index * 33_333
                )

        self.PyK4A = PyK4A

    def Config(self, **settings: Any) -> Any:
        return SimpleNamespace(**settings)

    def connected_device_count(self) -> int:
        return len(self.serials)


def _camera(feed: Feed, **config: Any) -> tuple[AzureKinectCamera, FakeK4A]:
    sdk = FakeK4A(feed, serials=("000111", "000222"))
    settings = {"serial": "000222", **FAST, **config}
    return AzureKinectCamera(AzureKinectConfig(**settings), sdk=sdk), sdk


def test_colour_depth_and_calibration_from_the_device_picked_by_serial() -> None:
    camera, sdk = _camera(Feed(), depth=True)
    assert isinstance(camera, Camera)
    with camera:
        frame = camera.read(1.0)
        assert sdk.opened == [1]  # the device whose serial matched
        assert frame.rgb.shape == (36, 64, 3)
        assert tuple(frame.rgb[0, 0]) == (10, 0, 200)  # BGRA -> RGB
        assert frame.depth is not None and frame.depth[0, 0] == pytest.approx(0.75)
        assert frame.t_device is not None and frame.t_device > 0  # device clock, seconds
        intr = camera.intrinsics
        assert intr is not None and (intr.width, intr.height, intr.fx) == (1280, 720, 600.0)


def test_an_unknown_serial_is_a_clear_error() -> None:
    camera, _ = _camera(Feed(), serial="999999")
    with pytest.raises(CameraError, match=r"no Azure Kinect with serial 999999.*000111"):
        camera.open()


def test_a_stalled_kinect_is_reopened_then_reported_when_it_stays_dead() -> None:
    feed = Feed()
    camera, sdk = _camera(feed)
    with camera:
        stall_after_a_frame(camera, feed)
        camera.read(2.0)  # frames again after one reopen
        assert sdk.opened == [1, 1]
        feed.revive_on_reset = False
        feed.stall()
        assert "gave up after 2 reset(s)" in read_until_failed(camera, within=3.0)


def test_list_devices_and_missing_sdk(monkeypatch: pytest.MonkeyPatch) -> None:
    assert [d["serial"] for d in list_devices(FakeK4A(Feed(), ("a", "b")))] == ["a", "b"]
    monkeypatch.setitem(sys.modules, "pyk4a", None)
    with pytest.raises(CameraError, match=r"libk4a.*tpm-agent\[kinect\]"):
        import_sdk()


def test_config_rejects_unsupported_modes() -> None:
    with pytest.raises(ValueError, match="height"):
        AzureKinectConfig(height=480)
    with pytest.raises(ValueError, match="fps"):
        AzureKinectConfig(fps=60)
