"""`RealSenseCamera`: an Intel RealSense (D4xx) colour stream, optionally with aligned depth.

pyrealsense2 is imported in `open()` (and `list_devices()`), so `import drivers` needs no SDK.
On Linux the PyPI wheel needs the system's libusb (Debian: `libusb-1.0-0`).
"""

from __future__ import annotations

import logging
import time
from typing import Any, Literal

import numpy as np
from pydantic import Field

from drivers.base import CameraError, require_sdk
from drivers.cameras.capture import CameraSettings, Intrinsics, RawFrame, StreamingCamera

log = logging.getLogger(__name__)

_INSTALL = (
    "the RealSense driver needs pyrealsense2: pip install 'tpm-agent[real]' "
    "(and on Debian/Ubuntu: apt-get install libusb-1.0-0)"
)


def import_sdk() -> Any:
    """pyrealsense2, or CameraError naming the extra to install."""
    return require_sdk("pyrealsense2", error=CameraError, hint=_INSTALL)


class RealSenseConfig(CameraSettings):
    """One RealSense (`[cameras.devices.<view>]` with driver "realsense"); `serial` None takes
    the only connected camera."""

    driver: Literal["realsense"] = "realsense"
    width: int = Field(640, ge=32, le=4096)
    height: int = Field(480, ge=32, le=3072)
    reset_wait_s: float = Field(
        5.0, gt=0, description="Wait for the camera to come back after a hardware reset."
    )

    @property
    def image_size(self) -> tuple[int, int]:
        return self.width, self.height


def list_devices(sdk: Any | None = None) -> list[dict[str, str]]:
    """Connected RealSense cameras (name, serial, firmware) for `doctor`."""
    rs = sdk or import_sdk()
    found = []
    for dev in rs.context().query_devices():
        info = {
            key: dev.get_info(getattr(rs.camera_info, key))
            if dev.supports(getattr(rs.camera_info, key))
            else ""
            for key in ("name", "serial_number", "firmware_version")
        }
        found.append(
            {
                "name": info["name"],
                "serial": info["serial_number"],
                "firmware": info["firmware_version"],
            }
        )
    return found


class _RealSenseSource:
    """The pyrealsense2 pipeline behind `FrameSource`; the only code that touches the SDK."""

    def __init__(self, rs: Any, config: RealSenseConfig, name: str) -> None:
        self._rs = rs
        self._config = config
        self._name = name
        self._pipeline: Any = None
        self._align: Any = None
        self._depth_scale = 0.001
        self.intrinsics: Intrinsics | None = None

    def start(self) -> None:
        rs, cfg = self._rs, self._config
        stream_config = rs.config()
        if cfg.serial:
            stream_config.enable_device(cfg.serial)
        stream_config.enable_stream(rs.stream.color, cfg.width, cfg.height, rs.format.rgb8, cfg.fps)
        if cfg.depth:
            stream_config.enable_stream(
                rs.stream.depth, cfg.width, cfg.height, rs.format.z16, cfg.fps
            )
        pipeline = rs.pipeline()
        try:
            profile = pipeline.start(stream_config)
        except RuntimeError as exc:
            which = f"serial {cfg.serial}" if cfg.serial else "any serial"
            raise CameraError(
                f"camera {self._name}: cannot start RealSense ({which}, "
                f"{cfg.width}x{cfg.height} @ {cfg.fps} fps): {exc}"
            ) from exc
        self._pipeline = pipeline
        if cfg.depth:
            self._depth_scale = float(profile.get_device().first_depth_sensor().get_depth_scale())
            self._align = rs.align(rs.stream.color)
        stream = profile.get_stream(rs.stream.color).as_video_stream_profile()
        i = stream.get_intrinsics()
        self.intrinsics = Intrinsics(
            width=i.width,
            height=i.height,
            fx=i.fx,
            fy=i.fy,
            cx=i.ppx,
            cy=i.ppy,
            distortion=tuple(float(c) for c in i.coeffs),
        )

    def grab(self, timeout: float) -> RawFrame | None:
        ok, frames = self._pipeline.try_wait_for_frames(max(1, int(timeout * 1000)))
        if not ok:
            return None
        if self._align is not None:
            frames = self._align.process(frames)
        color = frames.get_color_frame()
        if not color:
            return None
        rgb = np.asanyarray(color.get_data()).copy()  # the SDK reuses its buffer
        depth = None
        if self._config.depth:
            depth_frame = frames.get_depth_frame()
            if depth_frame:
                depth = np.asanyarray(depth_frame.get_data()).astype(np.float32) * self._depth_scale
        return RawFrame(rgb=rgb, t_device=float(color.get_timestamp()) / 1000.0, depth=depth)

    def reset(self) -> None:
        """Stop the stream, power-cycle the camera over USB, wait for it, start again."""
        self.stop()
        serial = self._config.serial
        for dev in self._rs.context().query_devices():
            if serial is None or dev.get_info(self._rs.camera_info.serial_number) == serial:
                dev.hardware_reset()
                break
        deadline = time.monotonic() + self._config.reset_wait_s
        time.sleep(min(1.0, self._config.reset_wait_s))  # the camera drops off the bus first
        while time.monotonic() < deadline:
            serials = [s["serial"] for s in list_devices(self._rs)]
            if serials and (serial is None or serial in serials):
                break
            time.sleep(0.2)
        self.start()

    def stop(self) -> None:
        pipeline, self._pipeline = self._pipeline, None
        if pipeline is not None:
            pipeline.stop()


class RealSenseCamera(StreamingCamera):
    """`drivers.base.Camera` for one RealSense; one capture thread keeps the newest frame."""

    def __init__(
        self, config: RealSenseConfig | None = None, *, name: str = "front", sdk: Any | None = None
    ) -> None:
        """`name` is the view; `sdk` replaces pyrealsense2 (tests pass a fake of its pipeline)."""
        self.config = config or RealSenseConfig()
        super().__init__(name, self.config)
        self._sdk = sdk

    def _make_source(self) -> _RealSenseSource:
        return _RealSenseSource(self._sdk or import_sdk(), self.config, self.name)
