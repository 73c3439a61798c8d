"""Typed settings for the Franka drivers (franky-control and panda-python share them).

The runtime's config maps onto these dataclasses; defaults are conservative values for a table-top
FR3 / Panda with the Franka Hand, so a lab usually sets only `host` and the workspace box.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Vec3 = tuple[float, float, float]
RealtimeMode = Literal["ignore", "enforce"]


@dataclass(frozen=True, slots=True)
class GripperConfig:
    """Franka Hand settings.

    A grasp commands `grasp_width` with wide tolerances instead of the object's width: the real
    hand stops on contact anywhere inside [grasp_width - epsilon_inner, grasp_width + epsilon_outer]
    and reports success, while franky-sim's hand drives its fingers to the commanded width, so
    commanding the object's width there would squeeze with ~1 N and not lift (FINDINGS).
    """

    enabled: bool = True
    speed: float = 0.1  # m/s, finger speed for open and grasp
    force: float = 20.0  # N, grasp force
    grasp_width: float = 0.0  # m, commanded width of a grasp
    epsilon_inner: float = 0.005  # m, tolerated width below grasp_width
    epsilon_outer: float = 0.08  # m, tolerated width above grasp_width
    open_width: float | None = None  # m, None = the hand's maximum width
    home_on_open: bool = True  # calibrate the fingers when the driver opens

    def __post_init__(self) -> None:
        _positive(speed=self.speed, force=self.force)
        if self.grasp_width < 0 or self.epsilon_inner < 0 or self.epsilon_outer < 0:
            raise ValueError("gripper widths and tolerances must be >= 0")
        if self.open_width is not None and self.open_width <= self.grasp_width:
            raise ValueError("gripper open_width must exceed grasp_width")


@dataclass(frozen=True, slots=True)
class FrankaConfig:
    """Connection, safety limits and dynamics of one Franka arm.

    Every `move(delta)` is clipped in three places before it reaches the arm: the step to
    `max_step` (direction kept), the target to at most `max_lead` ahead of the measured hand (a
    blocked arm does not build up a queue of moves it would execute at once when freed), and the
    target into the `workspace_low` / `workspace_high` box in the base frame. `max_velocity` caps
    the hand's translation speed in m/s; `dynamics_factor` scales the arm's velocity,
    acceleration and jerk limits (0 < f <= 1), so the effective speed limit is
    min(max_velocity, dynamics_factor x the arm's maximum).
    """

    host: str = "172.16.0.2"
    workspace_low: Vec3 = (0.25, -0.40, 0.02)
    workspace_high: Vec3 = (0.80, 0.40, 0.70)
    max_step: float = 0.02  # m per move() call
    max_lead: float = 0.05  # m between the measured hand and the commanded target
    max_velocity: float = 0.25  # m/s
    dynamics_factor: float = 0.2
    # "ignore" works without a PREEMPT_RT kernel (simulators, development PCs); use "enforce" on
    # the lab PC with an RT kernel so that a missing one fails loudly instead of jittering.
    realtime: RealtimeMode = "ignore"
    # Collision thresholds: above these external torques (Nm) / forces (N) the arm stops (reflex).
    torque_threshold: float = 20.0
    force_threshold: float = 30.0
    # Fixed hand orientation as a quaternion (x, y, z, w) in the base frame; None keeps the
    # orientation the hand has when the driver opens. The policy only commands translations.
    orientation: tuple[float, float, float, float] | None = None
    # Joint positions (rad) that `home()` moves to: the usual ready pose, hand pointing down.
    home_joints: tuple[float, ...] = (0.0, -0.785, 0.0, -2.356, 0.0, 1.571, 0.785)
    # A Franka serves one control client: a second one (Desk's, another driver's) makes libfranka
    # wait without end, so the driver gives up after this many seconds with a clear error.
    connect_timeout: float = 10.0
    gripper: GripperConfig = field(default_factory=GripperConfig)

    def __post_init__(self) -> None:
        _positive(
            connect_timeout=self.connect_timeout,
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
        if len(self.workspace_low) != 3 or len(self.workspace_high) != 3:
            raise ValueError("workspace_low / workspace_high need three values (x, y, z)")
        if any(lo >= hi for lo, hi in zip(self.workspace_low, self.workspace_high, strict=True)):
            raise ValueError(
                f"empty workspace box: low {self.workspace_low} must be below "
                f"high {self.workspace_high} on every axis"
            )
        if self.realtime not in ("ignore", "enforce"):
            raise ValueError(f"realtime must be 'ignore' or 'enforce', got {self.realtime!r}")
        if len(self.home_joints) != 7:
            raise ValueError("home_joints needs seven joint positions")
        if self.orientation is not None and len(self.orientation) != 4:
            raise ValueError("orientation must be a quaternion (x, y, z, w)")


def _positive(**values: float) -> None:
    for name, value in values.items():
        if not value > 0:
            raise ValueError(f"{name} must be positive, got {value}")
