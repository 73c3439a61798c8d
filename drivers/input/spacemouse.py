"""A 3Dconnexion SpaceMouse as an input device, read through pyspacemouse (raw HID via easyhid and
the system's hidapi: `apt install libhidapi-hidraw0`, and a udev rule giving the operator's user
access to /dev/hidraw*, see docs/recording.md).

Translation only: the deflection (pyspacemouse's `HID_Z_UP` convention, each axis in [-1, 1],
x right, y away from the operator, z up) goes through a deadband (small deflections are noise and
drift, not intent), is rescaled so that the deadband's edge is zero, and a full deflection moves
`scale` max steps per control step. Rotations are ignored: the TPM policy acts in position only.
The device reports at its own rate (only while touched); a reader thread keeps the newest
deflection and the buttons' edges, and `poll()` hands them out. One button toggles the gripper,
another ends the episode.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from drivers.base import require_sdk
from drivers.input import InputCommand, InputError, SpaceMouseSettings
from drivers.input.reader import ReaderDevice


def shaped(value: float, deadband: float) -> float:
    """One axis in [-1, 1] after the deadband: 0 inside it, rising linearly to +-1 at full scale."""
    magnitude = abs(value)
    if magnitude <= deadband:
        return 0.0
    return float(np.sign(value)) * min(1.0, (magnitude - deadband) / (1.0 - deadband))


def _open_first(settings: SpaceMouseSettings) -> Any:
    """pyspacemouse's own discovery and open (the first supported device, or the named one)."""
    pyspacemouse = require_sdk(
        "pyspacemouse",
        error=InputError,
        hint="the spacemouse device needs pyspacemouse: pip install 'tpm-agent[teleop]'",
    )
    try:
        return pyspacemouse.open(
            device=settings.device,
            nonblocking=True,
            axis_convention=pyspacemouse.AxisConvention.HID_Z_UP,
        )
    except RuntimeError as exc:  # "HID API is probably not installed", "No connected ... found"
        text = str(exc)
        if "HID API" in text:
            raise InputError(
                "no hidapi library for the 3D mouse: apt install libhidapi-hidraw0"
            ) from None
        raise InputError(
            f"no 3D mouse found ({text.rstrip('.')}); is it plugged in, and may this user read "
            "/dev/hidraw* (docs/recording.md: udev rule)?"
        ) from None
    except (ValueError, OSError) as exc:
        raise InputError(f"cannot open the 3D mouse: {exc}") from None


class SpaceMouse(ReaderDevice):
    """The 3D mouse, read in a thread. `open_device` returns an opened pyspacemouse device (the
    default discovers one; tests pass one over a fake HID device)."""

    name = "spacemouse"

    def __init__(
        self,
        settings: SpaceMouseSettings,
        max_step_m: float,
        open_device: Callable[[SpaceMouseSettings], Any] = _open_first,
    ) -> None:
        super().__init__()
        self.settings = settings
        self.max_step_m = max_step_m
        self._open_device = open_device
        self._device: Any = None
        self._axes = np.zeros(3)
        self._buttons: list[int] = []

    def open(self) -> None:
        self._device = self._open_device(self.settings)
        self._start(self._read)

    def poll(self) -> InputCommand:
        with self._lock:
            band, scale = self.settings.deadband, self.settings.scale
            unit = np.array([shaped(float(v), band) for v in self._axes])
            return self._take(unit * scale * self.max_step_m)

    def close(self) -> None:
        self._join()
        device, self._device = self._device, None
        if device is not None:
            with contextlib.suppress(Exception):  # closing must not hide why we close
                device.close()

    def _read(self) -> None:
        """Read reports until closed; a report is new when pyspacemouse's stamp `t` moved."""
        last_t: float | None = None
        while not self._stop.is_set():
            try:
                state = self._device.read()
            except Exception as exc:  # easyhid's HIDException, OSError: unplugged
                with self._lock:
                    self._error = f"spacemouse: the 3D mouse stopped delivering ({exc})"
                return
            if state.t == last_t:
                time.sleep(self.settings.poll_s)
                continue
            last_t = state.t
            self._report([state.x, state.y, state.z], list(state.buttons))

    def _report(self, axes: list[float], buttons: list[int]) -> None:
        s = self.settings
        with self._lock:
            self._t_heard = time.monotonic()
            self._axes = np.array(axes, dtype=float)
            previous = self._buttons or [0] * len(buttons)
            pressed = [b and not p for b, p in zip(buttons, previous, strict=False)]
            if s.gripper_button < len(pressed) and pressed[s.gripper_button]:
                self._toggles += 1
            if s.end_button < len(pressed) and pressed[s.end_button]:
                self._end = True
            self._buttons = buttons
