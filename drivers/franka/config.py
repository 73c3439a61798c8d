"""Settings of the Franka drivers (franky-control and panda-python share them), defined once.

These models are the `[franka]` section of the runtime's profiles as they stand: `agent.config`
composes them into its tree, `--set franka.<key>=...` reaches them, and the drivers take the
validated object as it is. So adding a setting here is the whole change: the profile file, the
command line and the driver all see it. Defaults are conservative values for a table-top FR3 /
Panda with the Franka Hand, so a lab usually sets only `host` and the workspace box.
"""

from __future__ import annotations

import ipaddress
from typing import Literal

from pydantic import Field, field_validator, model_validator

from drivers.base import Settings

Vec3 = tuple[float, float, float]
Quaternion = tuple[float, float, float, float]
RealtimeMode = Literal["ignore", "enforce"]


def is_host(host: str) -> bool:
    """An IPv4/IPv6 address or a DNS-style host name (catches a pasted command or a typo)."""
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        labels = host.split(".")
        return (
            bool(host)
            and len(host) <= 253
            and all(
                label
                and len(label) <= 63
                and label.replace("-", "").isalnum()
                and not label.startswith("-")
                for label in labels
            )
        )


def _positive(**values: float) -> None:
    for name, value in values.items():
        if not value > 0:
            raise ValueError(f"{name} must be positive, got {value}")


class GripperConfig(Settings):
    """The Franka Hand.

    A grasp commands `grasp_width` with wide tolerances instead of the object's width: the real
    hand stops on contact anywhere inside [grasp_width - epsilon_inner, grasp_width + epsilon_outer]
    and reports success, while franky-sim's hand drives its fingers to the commanded width, so
    commanding the object's width there would squeeze with ~1 N and not lift (FINDINGS).
    """

    enabled: bool = True
    speed: float = Field(0.1, description="m/s, finger speed for open and grasp.")
    force: float = Field(20.0, description="N, grasp force.")
    grasp_width: float = Field(0.0, description="m, commanded width of a grasp.")
    epsilon_inner: float = Field(0.005, description="m, tolerated width below grasp_width.")
    epsilon_outer: float = Field(0.08, description="m, tolerated width above grasp_width.")
    open_width: float | None = Field(None, description="m; None: the hand's maximum width.")
    home_on_open: bool = Field(True, description="Calibrate the fingers when the driver opens.")

    @model_validator(mode="after")
    def _safe(self) -> GripperConfig:
        _positive(speed=self.speed, force=self.force)
        if self.grasp_width < 0 or self.epsilon_inner < 0 or self.epsilon_outer < 0:
            raise ValueError("gripper widths and tolerances must be >= 0")
        if self.open_width is not None and self.open_width <= self.grasp_width:
            raise ValueError("gripper open_width must exceed grasp_width")
        return self


class FrankaConfig(Settings):
    """Connection, safety limits and dynamics of one Franka arm.

    Every `move(delta)` is clipped in three places before it reaches the arm: the step to
    `max_step` (direction kept), the target to at most `max_lead` ahead of the measured hand (a
    blocked arm does not build up a queue of moves it would execute at once when freed), and the
    target into the `workspace_low` / `workspace_high` box in the base frame. `max_velocity` caps
    the hand's translation speed in m/s; `dynamics_factor` scales the arm's velocity,
    acceleration and jerk limits (0 < f <= 1), so the effective speed limit is
    min(max_velocity, dynamics_factor x the arm's maximum).
    """

    host: str = Field("172.16.0.2", description="The arm's FCI address (Desk's network).")
    workspace_low: Vec3 = (0.25, -0.40, 0.02)
    workspace_high: Vec3 = (0.80, 0.40, 0.70)
    max_step: float = Field(0.02, description="m per command; longer steps are shortened.")
    max_lead: float = Field(0.05, description="m the target may run ahead of the hand.")
    max_velocity: float = Field(0.25, description="m/s cap on the hand's translation speed.")
    dynamics_factor: float = Field(0.2, description="Scales velocity/acceleration/jerk limits.")
    # "enforce" makes a missing PREEMPT_RT kernel fail loudly instead of jittering on the lab PC;
    # simulators and development PCs set "ignore" (the franka-sim profile does).
    realtime: RealtimeMode = Field(
        "enforce", description="enforce on the lab PC (PREEMPT_RT kernel); ignore elsewhere."
    )
    torque_threshold: float = Field(20.0, description="Nm external torque before a reflex.")
    force_threshold: float = Field(30.0, description="N external force before a reflex.")
    orientation: Quaternion | None = Field(
        None, description="Fixed hand orientation (x, y, z, w); None keeps the one at start."
    )
    home_joints: tuple[float, float, float, float, float, float, float] = Field(
        (0.0, -0.785, 0.0, -2.356, 0.0, 1.571, 0.785),
        description="rad, the pose home() moves to: the usual ready pose, hand pointing down.",
    )
    # A Franka serves one control client: a second one (Desk's, another driver's) makes libfranka
    # wait without end, so the driver gives up after this many seconds with a clear error.
    connect_timeout_s: float = Field(10.0, description="Give up connecting after this long.")
    # A controller that goes silent while libfranka starts a motion (a pulled cable, a frozen
    # controller) leaves libfranka waiting without end; stop and close give up after this long.
    stop_timeout_s: float = Field(
        3.0, description="Give up on a stop (or on releasing the connection) after this long."
    )
    stale_state_s: float = Field(
        2.0, description="The link is lost when the arm's state stands still this long (franky)."
    )
    gripper: GripperConfig = GripperConfig()

    @field_validator("host")
    @classmethod
    def _host(cls, host: str) -> str:
        if not is_host(host):
            raise ValueError(f"{host!r} is not an IP address or host name")
        return host

    @model_validator(mode="after")
    def _safe(self) -> FrankaConfig:
        _positive(
            connect_timeout_s=self.connect_timeout_s,
            stop_timeout_s=self.stop_timeout_s,
            stale_state_s=self.stale_state_s,
            max_step=self.max_step,
            max_lead=self.max_lead,
            max_velocity=self.max_velocity,
            torque_threshold=self.torque_threshold,
            force_threshold=self.force_threshold,
        )
        if not 0 < self.dynamics_factor <= 1:
            raise ValueError(f"dynamics_factor must be in (0, 1], got {self.dynamics_factor}")
        if self.max_lead < self.max_step:
            raise ValueError("max_lead must be at least max_step")
        if any(lo >= hi for lo, hi in zip(self.workspace_low, self.workspace_high, strict=True)):
            raise ValueError(
                f"empty workspace box: low {self.workspace_low} must be below "
                f"high {self.workspace_high} on every axis"
            )
        return self
