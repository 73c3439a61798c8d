"""Input devices an operator drives the arm with while demonstrations are recorded (`record`).

One small protocol, `InputDevice`, as `drivers.base` has for cameras and arms: a device runs its
own reader thread and `poll()` hands out what the operator asked for since the last poll (a move in
metres, the gripper's commanded state, whether the episode should end) with the time the device
was last heard from, so that the caller can stop the arm when it goes silent (the deadman rule).
Three devices: the terminal's keyboard (`keyboard`, for tests and labs without a 3D mouse), a
3Dconnexion SpaceMouse (`spacemouse`, through pyspacemouse), and the terminal's gripper and end
keys alone while the operator moves a Franka by hand (`guiding`, `GuidingKeys`; the moves are
read from the arm, `agent.guiding`). Importing this package needs none of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

import numpy as np
from pydantic import Field

from drivers.base import DriverError, Settings


class InputError(DriverError):
    """The input device is missing, cannot be opened, or stopped delivering; one line."""


class SpaceMouseSettings(Settings):
    """How the 3D mouse's deflection becomes a move (`[teleop.spacemouse]`)."""

    device: str | None = Field(
        None, description="pyspacemouse's device name (e.g. 'SpaceMouseCompact'); None: first found"
    )
    deadband: float = Field(
        0.1, ge=0, lt=1, description="Deflections below this share of full scale count as zero."
    )
    scale: float = Field(
        1.0, gt=0, description="Full deflection moves this many max steps (teleop.max_step_m)."
    )
    gripper_button: int = Field(0, ge=0, description="Button index that toggles the gripper.")
    end_button: int = Field(1, ge=0, description="Button index that ends the episode.")
    poll_s: float = Field(0.002, gt=0, description="Reader thread's sleep when no report came.")


class GuidingSettings(Settings):
    """`[teleop.guiding]`: hand-guiding a Franka (`teleop.device = "guiding"`)."""

    mode: Literal["buttons", "impedance"] = Field(
        "buttons",
        description="buttons: libfranka's guiding mode, moved while the guiding buttons at the "
        "flange are pressed (a real arm); impedance: franky's compliant controller, free in "
        "x/y/z without buttons (franky-sim, or a real arm with care).",
    )
    damping: float = Field(
        30.0, gt=0, description="impedance: Ns/m that slow the floating hand (10 N: ~0.3 m/s)."
    )
    still_m: float = Field(
        0.002,
        gt=0,
        description="The hand moving less than this counts as no input (the deadman rule).",
    )


class TeleopSettings(Settings):
    """`[teleop]`: the operator's input device and the recording's own safety rule."""

    device: Literal["keyboard", "spacemouse", "guiding"] = Field(
        "keyboard",
        description="keyboard: the terminal (keys below); spacemouse: a 3D mouse; guiding: the "
        "Franka moved by hand (the gripper and the end on the terminal's keys).",
    )
    deadman_s: float = Field(
        10.0,
        gt=0,
        description="No input at all for this long ends the episode (the arm holds): the "
        "device died, or the operator let go.",
    )
    key_step_m: float = Field(
        0.01, gt=0, description="Keyboard: one key press moves the hand this far (m)."
    )
    max_step_m: float = Field(
        0.02,
        gt=0,
        description="Largest move per control step the operator may ask for (the driver's own "
        "max step and workspace box still apply on top).",
    )
    spacemouse: SpaceMouseSettings = SpaceMouseSettings()
    guiding: GuidingSettings = GuidingSettings()


@dataclass(frozen=True, slots=True)
class InputCommand:
    """What the operator asked for since the last poll.

    `move` (3,) metres in the robot base frame, before any limit; `toggle_gripper` the operator
    asked to open a closed gripper or close an open one (an odd number of presses); `end` the
    operator ended the episode; `t_heard` the `time.monotonic()` of the device's newest input
    (0.0: nothing yet).
    """

    move: np.ndarray
    toggle_gripper: bool
    end: bool
    t_heard: float


@runtime_checkable
class InputDevice(Protocol):
    """An operator's input device, read in its own thread."""

    name: str

    def open(self) -> None:
        """Start reading; InputError (one line) when the device is missing or cannot be opened."""
        ...

    def poll(self) -> InputCommand:
        """What came since the last poll (never blocks); InputError once the device died."""
        ...

    def close(self) -> None:
        """Stop reading and give the device back (idempotent)."""
        ...


__all__ = [
    "GuidingSettings",
    "InputCommand",
    "InputDevice",
    "InputError",
    "SpaceMouseSettings",
    "TeleopSettings",
]
