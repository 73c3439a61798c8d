"""The capture thread both real camera drivers share: newest frame only, bounded resets.

A vendor SDK delivers frames at its own rate; the runtime reads when it is ready. Queueing the
difference hands the policy ever older images (a failure LeRobot and dora-rs users report), so
the thread overwrites one slot and `read()` waits for a frame newer than the last one returned.
A camera that stops delivering (USB hiccup, power glitch) is reset a bounded number of times in a
row; after that the capture ends and every `read()` raises the reason as `CameraError`.
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, Self

import numpy as np
from pydantic import Field, model_validator

from drivers.base import CameraError, Frame, Settings

log = logging.getLogger(__name__)


class Intrinsics(Settings):
    """Pinhole intrinsics of the colour image (pixels), from the device or the config."""

    width: int = Field(gt=0)
    height: int = Field(gt=0)
    fx: float = Field(gt=0)
    fy: float = Field(gt=0)
    cx: float = Field(gt=0)
    cy: float = Field(gt=0)
    distortion: tuple[float, ...] = Field((), max_length=14)

    def matrix(self) -> np.ndarray:
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])


class Pose(Settings):
    """Where a camera stands in the robot base frame: the policy is trained for fixed viewpoints."""

    position: tuple[float, float, float] = Field(description="metres, robot base frame")
    quaternion: tuple[float, float, float, float] = Field(
        description="x, y, z, w; camera looks along its +z (OpenCV)"
    )

    @model_validator(mode="after")
    def _unit(self) -> Pose:
        norm = sum(v * v for v in self.quaternion) ** 0.5
        if abs(norm - 1.0) > 1e-3:
            raise ValueError(f"quaternion must have unit length, got norm {norm:.4f}")
        return self


@dataclass(frozen=True, slots=True)
class RawFrame:
    """What a source hands the capture thread: images plus the device's own timestamp (s)."""

    rgb: np.ndarray
    t_device: float | None = None
    depth: np.ndarray | None = None


class FrameSource(Protocol):
    """One camera's SDK calls, blocking; the capture thread is their only caller after start."""

    def start(self) -> None: ...

    def grab(self, timeout: float) -> RawFrame | None:
        """The next frame, or None when none came within `timeout` seconds."""
        ...

    def reset(self) -> None:
        """Make a stalled camera deliver again (restart the stream, reset the hardware)."""
        ...

    def stop(self) -> None: ...


class CaptureConfig(Settings):
    """Timing of the capture thread (seconds)."""

    max_age_s: float = Field(0.2, gt=0, description="read() refuses a newest frame this old.")
    stall_timeout_s: float = Field(2.0, gt=0, description="No frame this long: reset the camera.")
    max_resets: int = Field(3, ge=0, description="Resets without a frame before it is a fault.")
    open_timeout_s: float = Field(10.0, gt=0, description="Wait for the first frame.")
    poll_s: float = Field(
        0.1, gt=0, description="Grab timeout per call, so that close() is noticed quickly."
    )


# RealSense serials are 12 digits, Azure Kinect serials 12 digits too ("000123456789"); allow
# letters and a little slack so that other models fit, but catch a pasted host or a typo.
SERIAL_PATTERN = r"^[0-9A-Za-z]{6,20}$"


class CameraSettings(CaptureConfig):
    """What every real camera's settings share; each driver adds its `driver` tag and modes.

    One instance is one `[cameras.devices.<view>]` entry of a profile, handed to the driver as
    it is (the view's name is the camera's name).
    """

    serial: str | None = Field(
        None, pattern=SERIAL_PATTERN, description="None: the only connected camera of its kind."
    )
    fps: int = Field(30, gt=0, le=90)
    depth: bool = Field(False, description="Also stream depth aligned to the colour image.")
    intrinsics: Intrinsics | None = Field(None, description="None: read them from the device.")
    pose: Pose | None = Field(None, description="Required on hardware (fixed viewpoints).")

    @property
    def image_size(self) -> tuple[int, int]:
        """(width, height) of the colour stream."""
        raise NotImplementedError

    @model_validator(mode="after")
    def _intrinsics_fit(self) -> CameraSettings:
        if self.intrinsics is not None and (
            (self.intrinsics.width, self.intrinsics.height) != self.image_size
        ):
            raise ValueError(
                f"intrinsics are for {self.intrinsics.width}x{self.intrinsics.height}, the stream "
                f"is {self.image_size[0]}x{self.image_size[1]}"
            )
        return self


class NewestFrameCapture:
    """Runs `source` in a thread and keeps only its newest frame.

    `t_capture` is the host's monotonic clock when the frame reached the host (the SDKs' device
    clocks are per camera and cannot be compared); `t_device` keeps the camera's own timestamp.
    """

    def __init__(
        self,
        name: str,
        source: FrameSource,
        config: CaptureConfig,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self._source = source
        self._config = config
        self._clock = clock
        self._cond = threading.Condition()
        self._newest: Frame | None = None
        self._returned_seq = -1
        self._error: CameraError | None = None
        self._running = False
        self._thread: threading.Thread | None = None
        self.frames = 0  # frames captured
        self.dropped = 0  # frames overwritten before anyone read them
        self.resets = 0  # resets done in total

    def start(self) -> None:
        """Start the source and the thread; wait for the first frame so that errors show here."""
        try:
            self._source.start()
        except CameraError:
            raise
        except Exception as exc:
            raise CameraError(f"camera {self.name}: cannot start: {exc}") from exc
        self._running = True
        self._thread = threading.Thread(target=self._run, name=f"capture-{self.name}", daemon=True)
        self._thread.start()
        deadline = self._clock() + self._config.open_timeout_s
        with self._cond:
            while self._newest is None and self._error is None:
                remaining = deadline - self._clock()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            error, first = self._error, self._newest
        if first is None:
            self.stop()
            raise error or CameraError(
                f"camera {self.name}: no frame within {self._config.open_timeout_s:g} s of opening"
            )

    def read(self, timeout: float) -> Frame:
        """The newest frame if it is newer than the last one returned and not older than max_age."""
        deadline = self._clock() + timeout
        with self._cond:
            while True:
                if self._error is not None:
                    raise self._error
                newest = self._newest
                if newest is not None and newest.seq > self._returned_seq:
                    break
                remaining = deadline - self._clock()
                if remaining <= 0:
                    last = (
                        "never"
                        if newest is None
                        else f"{self._clock() - newest.t_capture:.3f} s ago"
                    )
                    raise CameraError(
                        f"camera {self.name}: no new frame within {timeout:g} s (last frame {last})"
                    )
                self._cond.wait(remaining)
            self._returned_seq = newest.seq  # a refused stale frame is not offered again
            age = self._clock() - newest.t_capture
            if age > self._config.max_age_s:
                raise CameraError(
                    f"camera {self.name}: newest frame is {age:.3f} s old "
                    f"(max age {self._config.max_age_s:g} s)"
                )
            return newest

    def stop(self) -> None:
        with self._cond:
            self._running = False
            self._cond.notify_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(self._config.poll_s * 5 + 1.0)
        try:
            self._source.stop()
        except Exception as exc:  # closing must not mask why we are closing
            log.warning("camera %s: stop failed: %s", self.name, exc)

    def _publish(self, raw: RawFrame) -> None:
        with self._cond:
            seq = self._newest.seq + 1 if self._newest is not None else 0
            if self._newest is not None and self._newest.seq > self._returned_seq:
                self.dropped += 1
            self._newest = Frame(
                camera=self.name,
                rgb=raw.rgb,
                t_capture=self._clock(),
                seq=seq,
                t_device=raw.t_device,
                depth=raw.depth,
            )
            self.frames += 1
            self._cond.notify_all()

    def _fail(self, message: str) -> None:
        log.error("camera %s: %s", self.name, message)
        with self._cond:
            self._error = CameraError(f"camera {self.name}: {message}")
            self._cond.notify_all()

    def _run(self) -> None:
        cfg = self._config
        last_frame = self._clock()
        resets_in_row = 0
        reason = "no frames"
        while self._running:
            try:
                raw = self._source.grab(cfg.poll_s)
            except Exception as exc:  # a vendor error is a stall with a reason
                raw, reason = None, f"{type(exc).__name__}: {exc}"
                time.sleep(min(cfg.poll_s, 0.05))
            if raw is not None:
                self._publish(raw)
                last_frame, resets_in_row = self._clock(), 0
                continue
            if self._clock() - last_frame < cfg.stall_timeout_s or not self._running:
                continue
            if resets_in_row >= cfg.max_resets:
                self._fail(
                    f"stopped delivering frames ({reason}); gave up after {resets_in_row} reset(s)"
                )
                return
            resets_in_row += 1
            self.resets += 1
            log.warning(
                "camera %s: no frame for %.1f s (%s); reset %d of %d",
                self.name,
                self._clock() - last_frame,
                reason,
                resets_in_row,
                cfg.max_resets,
            )
            try:
                self._source.reset()
            except Exception as exc:
                reason = f"reset failed: {type(exc).__name__}: {exc}"
            last_frame = self._clock()


class StreamingCamera(ABC):
    """`drivers.base.Camera` over a `FrameSource`: what every real camera driver shares.

    A subclass only builds its SDK's source; opening, reading, closing and the intrinsics rule
    (a calibrated value from the config wins over the device's) live here once.
    """

    def __init__(self, name: str, settings: CameraSettings) -> None:
        self.name = name
        self._capture_config: CaptureConfig = settings
        self._configured_intrinsics = settings.intrinsics
        self._source: FrameSource | None = None
        self._capture: NewestFrameCapture | None = None

    @abstractmethod
    def _make_source(self) -> FrameSource:
        """Import the SDK and build the source (not started yet)."""

    @property
    def intrinsics(self) -> Intrinsics | None:
        if self._configured_intrinsics is not None:
            return self._configured_intrinsics
        return getattr(self._source, "intrinsics", None)

    @property
    def capture(self) -> NewestFrameCapture | None:
        """The running capture thread (its counters: frames, dropped, resets), None when closed."""
        return self._capture

    def open(self) -> None:
        if self._capture is not None:
            return
        self._source = self._make_source()
        capture = NewestFrameCapture(self.name, self._source, self._capture_config)
        capture.start()
        self._capture = capture

    def read(self, timeout: float) -> Frame:
        if self._capture is None:
            raise CameraError(f"camera {self.name} is not open")
        return self._capture.read(timeout)

    def close(self) -> None:
        capture, self._capture = self._capture, None
        if capture is not None:
            capture.stop()

    def __enter__(self) -> Self:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
