"""`RealSenseCamera` against a fake of pyrealsense2's pipeline / context objects.

No RealSense is attached on the machines that run these tests, so the narrowest boundary is
faked: the SDK module handed to the driver (`sdk=`) supplies a pipeline whose
`try_wait_for_frames` delivers frames at a set rate, pauses, or stops until a hardware reset.
Everything above it (capture thread, newest-frame slot, staleness, bounded resets) is real.
"""

from __future__ import annotations

import sys
import threading
import time
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from drivers.base import Camera, CameraError
from drivers.cameras.realsense import RealSenseCamera, RealSenseConfig, import_sdk, list_devices

#: capture timings short enough for tests (keys of drivers.cameras.capture.CaptureConfig)
FAST: dict[str, Any] = {
    "max_age_s": 0.1,
    "stall_timeout_s": 0.2,
    "max_resets": 2,
    "open_timeout_s": 2.0,
    "poll_s": 0.02,
}


class Feed:
    """When a fake camera has frames: every 1/fps while `alive`; a reset may revive it."""

    def __init__(self, fps: float = 100.0, revive_on_reset: bool = True) -> None:
        self.period = 1.0 / fps
        self.alive = True
        self.revive_on_reset = revive_on_reset
        self.count = 0
        self.resets = 0
        self._next = time.monotonic()
        self._lock = threading.Lock()

    def next(self, timeout: float) -> int | None:
        """Block like an SDK call: the next frame's index, or None after `timeout`."""
        deadline = time.monotonic() + timeout
        with self._lock:
            due = self._next if self.alive else float("inf")
        if due > deadline:
            time.sleep(max(0.0, deadline - time.monotonic()))
            return None
        time.sleep(max(0.0, due - time.monotonic()))
        with self._lock:
            self._next = max(self._next + self.period, time.monotonic() - self.period)
            self.count += 1
            return self.count

    def stall(self) -> None:
        self.alive = False

    def resume(self) -> None:
        with self._lock:
            self.alive, self._next = True, time.monotonic()

    def reset(self) -> None:
        self.resets += 1
        if self.revive_on_reset:
            self.resume()


class _Frame:
    def __init__(self, data: np.ndarray, timestamp_ms: float) -> None:
        self._data, self._ts = data, timestamp_ms

    def get_data(self) -> np.ndarray:
        return self._data

    def get_timestamp(self) -> float:
        return self._ts

    def __bool__(self) -> bool:
        return True


class FakeRealSense:
    """The parts of the pyrealsense2 module the driver uses; one camera with `serial`."""

    stream = SimpleNamespace(color="color", depth="depth")
    format = SimpleNamespace(rgb8="rgb8", z16="z16")
    camera_info = SimpleNamespace(
        name="name", serial_number="serial_number", firmware_version="firmware_version"
    )

    def __init__(
        self,
        feed: Feed,
        serial: str = "123456",
        width: int = 64,
        height: int = 48,
        start_error: str | None = None,
    ) -> None:
        self.feed, self.serial, self.width, self.height = feed, serial, width, height
        self.start_error = start_error
        self.enabled: list[tuple[Any, ...]] = []
        self.started = 0
        fake = self

        class Config:
            def enable_device(self, serial: str) -> None:
                fake.enabled.append(("device", serial))

            def enable_stream(self, *args: Any) -> None:
                fake.enabled.append(args)

        class Pipeline:
            def start(self, config: Config) -> Any:
                if fake.start_error:
                    raise RuntimeError(fake.start_error)
                fake.started += 1
                return fake._profile()

            def try_wait_for_frames(self, timeout_ms: int) -> tuple[bool, Any]:
                index = fake.feed.next(timeout_ms / 1000)
                if index is None:
                    return False, None
                rgb = np.full((fake.height, fake.width, 3), index % 256, np.uint8)
                depth = np.full((fake.height, fake.width), 1000 + index, np.uint16)
                return True, SimpleNamespace(
                    get_color_frame=lambda: _Frame(rgb, 1000.0 * index),
                    get_depth_frame=lambda: _Frame(depth, 1000.0 * index),
                )

            def stop(self) -> None:
                pass

        class Align:
            def __init__(self, to: str) -> None:
                assert to == "color"

            def process(self, frames: Any) -> Any:
                return frames

        self.config, self.pipeline, self.align = Config, Pipeline, Align

    def _profile(self) -> Any:
        intr = SimpleNamespace(
            width=self.width,
            height=self.height,
            fx=60.0,
            fy=61.0,
            ppx=32.0,
            ppy=24.0,
            coeffs=[0.0] * 5,
        )
        video = SimpleNamespace(get_intrinsics=lambda: intr)
        sensor = SimpleNamespace(get_depth_scale=lambda: 0.001)
        device = SimpleNamespace(first_depth_sensor=lambda: sensor)
        return SimpleNamespace(
            get_stream=lambda s: SimpleNamespace(as_video_stream_profile=lambda: video),
            get_device=lambda: device,
        )

    def context(self) -> Any:
        info = {
            "name": "Intel RealSense D435",
            "serial_number": self.serial,
            "firmware_version": "5.16",
        }
        device = SimpleNamespace(
            get_info=info.__getitem__, supports=lambda key: True, hardware_reset=self.feed.reset
        )
        return SimpleNamespace(query_devices=lambda: [device])


def read_until_failed(camera: Camera, within: float) -> str:
    """Keep reading through timeouts until the camera reports itself failed; its message."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            camera.read(0.05)
        except CameraError as exc:
            if "stopped delivering" in str(exc):
                return str(exc)
    raise AssertionError(f"camera {camera.name} was not reported failed within {within} s")


def stall_after_a_frame(camera: Camera, feed: Feed) -> None:
    """One frame read, then the feed stalls; the frame that came before the stall is still fresh
    and read too: the next read meets the stall."""
    camera.read(1.0)
    feed.stall()
    time.sleep(0.03)
    camera.read(0.5)


def _camera(feed: Feed, **config: Any) -> tuple[RealSenseCamera, FakeRealSense]:
    sdk = FakeRealSense(feed)
    settings = {
        "serial": "123456",
        "width": 64,
        "height": 48,
        "reset_wait_s": 0.05,
        **FAST,
        **config,
    }
    return RealSenseCamera(RealSenseConfig(**settings), sdk=sdk), sdk


def test_streams_newest_frames_with_depth_and_intrinsics() -> None:
    camera, sdk = _camera(Feed(), depth=True)
    assert isinstance(camera, Camera)
    with camera:
        first = camera.read(1.0)
        second = camera.read(1.0)
        assert second.seq > first.seq and second.t_capture > first.t_capture
        assert second.rgb.shape == (48, 64, 3) and second.rgb.dtype == np.uint8
        assert second.depth is not None and second.depth.dtype == np.float32
        assert second.depth[0, 0] == pytest.approx(1.0 + int(second.t_device or 0) * 0.001)
        assert camera.intrinsics is not None and camera.intrinsics.fx == 60.0
    assert ("device", "123456") in sdk.enabled
    assert ("color", 64, 48, "rgb8", 30) in sdk.enabled


def test_a_slow_reader_gets_the_newest_frame_and_drops_are_counted() -> None:
    feed = Feed(fps=200)
    camera, _ = _camera(feed)
    with camera:
        camera.read(1.0)
        time.sleep(0.08)
        frame = camera.read(1.0)
        assert feed.count - frame.t_device / 1.0 <= 2  # t_device is the frame index here
        assert camera.capture is not None and camera.capture.dropped >= 5


def test_read_times_out_and_refuses_stale_frames() -> None:
    feed = Feed()
    camera, _ = _camera(feed)
    with camera:
        stall_after_a_frame(camera, feed)
        with pytest.raises(CameraError, match=r"no new frame within 0\.05 s"):
            camera.read(0.05)
        feed.resume()
        camera.read(1.0)
        feed.stall()
        time.sleep(0.15)  # > max_age 0.1, < stall_timeout 0.2: one unread, aging frame
        with pytest.raises(CameraError, match=r"old \(max age 0.1 s\)"):
            camera.read(0.01)


def test_a_stalled_camera_is_hardware_reset_and_recovers() -> None:
    feed = Feed()
    camera, sdk = _camera(feed)
    with camera:
        stall_after_a_frame(camera, feed)
        frame = camera.read(2.0)  # waits through the stall and the reset
        assert feed.resets == 1 and sdk.started == 2
        assert camera.capture is not None and camera.capture.resets == 1
        assert frame.seq > 0


def test_a_camera_that_stays_dead_is_reported_after_bounded_resets() -> None:
    feed = Feed(revive_on_reset=False)
    camera, _ = _camera(feed)
    with camera:
        camera.read(1.0)
        feed.stall()
        assert "gave up after 2 reset(s)" in read_until_failed(camera, within=3.0)
        assert feed.resets == 2
        with pytest.raises(CameraError, match="stopped delivering"):
            camera.read(0.1)  # stays failed


def test_start_failure_names_the_camera() -> None:
    sdk = FakeRealSense(Feed(), start_error="No device connected")
    camera = RealSenseCamera(RealSenseConfig(serial="999999", **FAST), sdk=sdk)
    with pytest.raises(CameraError, match=r"serial 999999.*No device connected"):
        camera.open()


def test_list_devices_reports_serials() -> None:
    assert list_devices(FakeRealSense(Feed(), serial="42")) == [
        {"name": "Intel RealSense D435", "serial": "42", "firmware": "5.16"}
    ]


def test_missing_sdk_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyrealsense2", None)
    with pytest.raises(CameraError, match=r"tpm-agent\[real\].*libusb"):
        import_sdk()
