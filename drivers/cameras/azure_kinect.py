"""`AzureKinectCamera`: an Azure Kinect DK colour stream (pyk4a), optionally with aligned depth.

pyk4a needs Microsoft's Azure Kinect SDK (libk4a) installed system-wide; neither PyPI nor Debian
ships it, so the `kinect` extra is separate from `real`. pyk4a is imported in `open()`.
The SDK has no USB reset call: a stalled camera is reset by closing and reopening the device.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import numpy as np
from pydantic import Field, ValidationInfo, field_validator

from drivers.base import CameraError, require_sdk
from drivers.cameras.capture import CameraSettings, Intrinsics, RawFrame, StreamingCamera

log = logging.getLogger(__name__)

_INSTALL = (
    "the Azure Kinect driver needs pyk4a and Microsoft's Azure Kinect SDK (libk4a): "
    "install the SDK, then pip install 'tpm-agent[kinect]'"
)
# Colour image height -> pyk4a ColorResolution member.
_RESOLUTIONS = {
    720: "RES_720P",
    1080: "RES_1080P",
    1440: "RES_1440P",
    1536: "RES_1536P",
    2160: "RES_2160P",
    3072: "RES_3072P",
}
_FPS = {5: "FPS_5", 15: "FPS_15", 30: "FPS_30"}


def import_sdk() -> Any:
    """pyk4a, or CameraError naming what to install (also when libk4a itself is missing)."""
    return require_sdk("pyk4a", error=CameraError, hint=_INSTALL)


class AzureKinectConfig(CameraSettings):
    """One Azure Kinect (`[cameras.devices.<view>]` with driver "azure_kinect"); `serial` None
    takes device 0. The colour mode is named by its height; the width follows from it."""

    driver: Literal["azure_kinect"] = "azure_kinect"
    height: int = Field(720, description="Colour height: 720, 1080, 1440, 1536, 2160 or 3072.")

    @field_validator("height", "fps")
    @classmethod
    def _mode(cls, value: int, info: ValidationInfo) -> int:
        """Field checks run before the intrinsics check, which needs a valid mode."""
        modes = _RESOLUTIONS if info.field_name == "height" else _FPS
        if value not in modes:
            raise ValueError(f"azure_kinect {info.field_name} must be one of {sorted(modes)}")
        return value

    @property
    def image_size(self) -> tuple[int, int]:
        h = self.height
        return (h * 4 // 3 if h in (1536, 3072) else h * 16 // 9), h


def list_devices(sdk: Any | None = None) -> list[dict[str, str]]:
    """Connected Azure Kinects (index, serial) for `doctor`."""
    k4a = sdk or import_sdk()
    found = []
    for index in range(k4a.connected_device_count()):
        device = k4a.PyK4A(device_id=index)
        try:
            device.open()
            found.append({"name": "Azure Kinect", "serial": device.serial, "index": str(index)})
        except Exception as exc:  # busy in another process: list it anyway
            found.append(
                {"name": "Azure Kinect", "serial": f"unavailable ({exc})", "index": str(index)}
            )
        finally:
            device.close()
    return found


class _KinectSource:
    """The pyk4a device behind `FrameSource`; the only code that touches the SDK."""

    def __init__(self, k4a: Any, config: AzureKinectConfig, name: str) -> None:
        self._k4a = k4a
        self._config = config
        self._name = name
        self._device: Any = None
        self.intrinsics: Intrinsics | None = None

    def _device_id(self) -> int:
        serial = self._config.serial
        if serial is None:
            return 0
        for entry in list_devices(self._k4a):
            if entry["serial"] == serial:
                return int(entry["index"])
        raise CameraError(
            f"camera {self._name}: no Azure Kinect with serial {serial} "
            f"(found: {[d['serial'] for d in list_devices(self._k4a)]})"
        )

    def start(self) -> None:
        k4a, cfg = self._k4a, self._config
        settings = k4a.Config(
            color_resolution=getattr(k4a.ColorResolution, _RESOLUTIONS[cfg.height]),
            color_format=k4a.ImageFormat.COLOR_BGRA32,
            depth_mode=k4a.DepthMode.NFOV_UNBINNED if cfg.depth else k4a.DepthMode.OFF,
            camera_fps=getattr(k4a.FPS, _FPS[cfg.fps]),
            synchronized_images_only=cfg.depth,
        )
        device = k4a.PyK4A(config=settings, device_id=self._device_id())
        try:
            device.start()
        except Exception as exc:
            raise CameraError(
                f"camera {self._name}: cannot start the Azure Kinect "
                f"({cfg.height}p @ {cfg.fps} fps): {exc}"
            ) from exc
        self._device = device
        calib = device.calibration
        m = np.asarray(calib.get_camera_matrix(k4a.CalibrationType.COLOR), dtype=float)
        dist = np.asarray(calib.get_distortion_coefficients(k4a.CalibrationType.COLOR)).ravel()
        width, height = cfg.image_size
        self.intrinsics = Intrinsics(
            width=width,
            height=height,
            fx=m[0, 0],
            fy=m[1, 1],
            cx=m[0, 2],
            cy=m[1, 2],
            distortion=tuple(float(c) for c in dist),
        )

    def grab(self, timeout: float) -> RawFrame | None:
        try:
            capture = self._device.get_capture(timeout=max(1, int(timeout * 1000)))
        except self._k4a.K4ATimeoutException:
            return None
        color = capture.color
        if color is None:
            return None
        rgb = np.ascontiguousarray(color[:, :, 2::-1])  # BGRA -> RGB (a copy)
        depth = None
        if self._config.depth and capture.transformed_depth is not None:
            depth = capture.transformed_depth.astype(np.float32) / 1000.0  # mm -> m
        return RawFrame(rgb=rgb, t_device=capture.color_timestamp_usec / 1e6, depth=depth)

    def reset(self) -> None:
        self.stop()
        self.start()

    def stop(self) -> None:
        device, self._device = self._device, None
        if device is not None:
            try:
                device.stop()
            finally:
                device.close()


class AzureKinectCamera(StreamingCamera):
    """`drivers.base.Camera` for one Azure Kinect; one capture thread keeps the newest frame."""

    def __init__(
        self, config: AzureKinectConfig | None = None, *, name: str = "side", sdk: Any | None = None
    ) -> None:
        """`name` is the view; `sdk` replaces pyk4a (tests pass a fake of its device object)."""
        self.config = config or AzureKinectConfig()
        super().__init__(name, self.config)
        self._sdk = sdk

    def _make_source(self) -> _KinectSource:
        return _KinectSource(self._sdk or import_sdk(), self.config, self.name)
