"""Typed, validated configuration: TOML profiles shipped with the package, a user file, overrides.

`load_config("sim")` reads `agent/profiles/sim.toml`; `load_config("my.toml")` reads a user file,
which may name a base profile with `profile = "sim"` and override only what differs;
`overrides=["runtime.control_hz=20", "models.tracker=kcf"]` apply last (values parsed as TOML).
Every error is a ConfigError whose message names the bad key and the allowed values.

Each setting is defined once. A driver or model backend owns its settings class beside its code
(`drivers.franka.config.FrankaConfig` is `[franka]`, `drivers.sim.config.SimSettings` is `[sim]`,
`drivers.cameras.realsense.RealSenseConfig` / `drivers.cameras.azure_kinect.AzureKinectConfig` are
`[cameras.devices.<view>]`, `models.tpm.onnx_policy.PolicyConfig` is `[policy]`,
`models.reasoning.config.ReasoningConfig` is `[reasoning]`, and so on for `[grounding_dino]`,
`[sam]`, `[mobile_sam]`, `[onnx_tracker]` and `[teleop]`). This module composes them into
the profile tree, keeps the runtime's own sections and the checks that span sections, and
validates; reading profiles, files and overrides into one dict is `agent.config_sources`.
`agent.backends` hands the validated objects to the drivers and models as they are, so a field
added to a driver's class is at once a profile key, a `--set` key and the driver's setting.
"""

from __future__ import annotations

import difflib
import ipaddress
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, ValidationError, model_validator

from agent.config_sources import (
    ConfigError,
    deep_merge,
    is_profile_name,
    parse_overrides,
    profiles,
    read_profile,
    read_source,
    set_dotted,
)
from agent.endings import EMPTY_GAP_M
from agent.event_loop import EventLoop
from drivers.base import Settings

__all__ = ["CAMERA_DRIVERS", "Config", "ConfigError", "load_config", "profiles", "with_overrides"]
from drivers.cameras.azure_kinect import AzureKinectConfig
from drivers.cameras.capture import CameraSettings
from drivers.cameras.realsense import RealSenseConfig
from drivers.franka.config import FrankaConfig
from drivers.input import TeleopSettings
from drivers.sim.config import SimSettings
from models.detection.grounding_dino import GroundingDinoConfig
from models.reasoning.config import ReasoningConfig
from models.segmentation.sam import MobileSamConfig, SamConfig
from models.tpm.onnx_policy import PolicyConfig
from models.tracking.onnx_tracker import OnnxTrackerConfig

#: The runtime's own sections share the drivers' base: frozen, unknown keys refused by name.
_Section = Settings

#: cameras.devices.<view>: each driver's own settings class, picked by its `driver` key.
CAMERA_DRIVERS: dict[str, type[CameraSettings]] = {
    "realsense": RealSenseConfig,
    "azure_kinect": AzureKinectConfig,
}
CameraDevice = Annotated[RealSenseConfig | AzureKinectConfig, Field(discriminator="driver")]


class RuntimeSection(_Section):
    control_hz: float = Field(
        10.0,
        gt=0,
        le=1000,
        description="fixed_rate: the command clock. Both modes: the least rate of state reads.",
    )
    command_mode: Literal["on_arrival", "fixed_rate"] = Field(
        "fixed_rate",
        description="Send each action on a fixed-rate clock, or as it arrives (rate-limited; the "
        "sim profile's default, not yet validated with franky's preempting motions).",
    )
    min_command_interval_s: float = Field(
        0.02, ge=0, le=1, description="on_arrival: the least time between two commands."
    )
    action_deadline_s: float = Field(
        0.6, gt=0, description="Actions from frames older than this are refused; the arm holds."
    )
    max_steps: int = Field(600, gt=0, description="Executed steps before the episode fails.")
    max_duration_s: float = Field(180.0, gt=0, description="Wall time before the episode fails.")
    target_lost_s: float = Field(
        5.0,
        gt=0,
        description="A target missing from every view this long ends the episode as a failure "
        '("target lost: ..."); the arm holds from 1 s missing on (agent.loops.target).',
    )
    camera_timeout_s: float = Field(2.0, gt=0, description="Deadline for one camera frame.")
    view_sync_s: float = Field(
        0.05,
        ge=0,
        description="Views taken at most this far apart are one set; an older view's next frame "
        "is awaited this long (half the camera period: 0.05 at 10 fps).",
    )
    camera_failures: int = Field(3, ge=1, description="Consecutive camera timeouts that are fatal.")
    perceive_on_demand: bool = Field(
        True,
        description="Start a percept only once the policy took the last one (no CPU spent on "
        "percepts a slower policy would drop); false: perceive every frame.",
    )
    stage_timeout_s: float = Field(30.0, gt=0, description="Deadline for one model call.")
    reason_timeout_s: float = Field(60.0, gt=0, description="Deadline for the reasoner.")
    model_threads: int = Field(
        2,
        ge=1,
        description="Worker threads shared by model calls (the policy, the reasoner and the "
        "first detection; perception has a thread of its own).",
    )
    event_loop: EventLoop = Field(
        "uvloop",
        description="The event loop of the processes the CLI starts: uvloop (asyncio's API on "
        "libuv; falls back to asyncio where it is not installed) or asyncio's own.",
    )
    grasp_retries: int = Field(
        0,
        ge=0,
        description="Times an episode a learned policy's hand that closed on nothing is opened "
        "and lifted for it to try again (agent.grasp_retry); 0 (the default: it measured no "
        "gain with the shipped policy): never.",
    )
    empty_grip_m: float = Field(
        EMPTY_GAP_M,
        gt=0,
        le=0.05,
        description="A closed hand whose fingers' gap is below this holds nothing (m).",
    )
    retry_lift_m: float = Field(
        0.04, ge=0, le=0.2, description="How far a grasp retry lifts the opened hand (m)."
    )
    supervise_hz: float = Field(5.0, gt=0, description="Rate of success and budget checks.")
    settle_s: float = Field(1.5, ge=0, description="Wait after the policy says done, then judge.")
    torch_threads: int = Field(
        1,
        ge=1,
        description="Threads per torch / ONNX Runtime session, and for OpenCV, OpenMP and BLAS "
        "(process-wide).",
    )
    when_busy: Literal["reject", "queue"] = Field(
        "reject",
        description="A second execute() while one runs: refuse it (RuntimeBusy) or wait its turn.",
    )


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


class CamerasSection(_Section):
    backend: Literal["sim", "franka_sim", "hardware"] = Field(
        "sim",
        description="sim: our MuJoCo world; franka_sim: the same scene inside franky-sim; "
        "hardware: one camera per view from [cameras.devices.<view>].",
    )
    views: list[str] = Field(default_factory=lambda: ["front", "side"], min_length=1)
    devices: dict[str, CameraDevice] = Field(
        default_factory=dict, description="hardware: view name -> camera."
    )


class RobotSection(_Section):
    """Which driver runs the arm; the driver's own settings are `[franka]` (or `[sim]`)."""

    backend: Literal["sim", "franka", "panda_py"] = Field(
        "sim",
        description="sim: our MuJoCo controller; franka: franky-control (FR3, libfranka >= 0.10, "
        "franky-sim); panda_py: panda-python (Panda arms before libfranka 0.10).",
    )


class TableSection(_Section):
    """What stands on a real table: the reasoner chooses among these (no simulator to ask)."""

    objects: list[str] = Field(default_factory=list, description='Names, e.g. "sponge", "user".')
    descriptions: dict[str, str] = Field(
        default_factory=dict, description="Shape and colour words per object, for the detector."
    )


class ModelsSection(_Section):
    """Which backend runs each model, and how perception re-detects; a backend's own settings
    are its section (`[reasoning]`, `[grounding_dino]`, `[sam]`, `[onnx_tracker]`, `[policy]`)."""

    reasoner: Literal["rules", "offline", "openai"] = Field(
        "rules",
        description="rules: tables only (no extra); offline: tables + a small local language "
        "model (extra reasoning-lm); openai: an OpenAI-compatible server (extra llm), see "
        "[reasoning].",
    )
    detector: Literal["ground_truth", "grounding_dino"] = Field(
        "ground_truth",
        description="ground_truth: simulator boxes; grounding_dino: see [grounding_dino] "
        "(extra vision).",
    )
    tracker: Literal["csrt", "kcf", "mil", "onnx"] = Field(
        "csrt", description="OpenCV trackers (no weights), or onnx: see [onnx_tracker]."
    )
    segmenter: Literal["ground_truth", "grabcut", "box", "sam", "mobile_sam"] = Field(
        "ground_truth",
        description="box: the filled box (ablation); sam / mobile_sam: see [sam] / [mobile_sam] "
        "(extra vision).",
    )
    policy: Literal["expert", "tpm", "none"] = Field(
        "expert",
        description="expert: the simulator's scripted expert (needs simulator truth); tpm: the "
        "learned two-stream policy in ONNX Runtime, see [policy] (extra tpm); none: no policy: "
        "the config validates, building refuses.",
    )
    detect_every_frame: bool = False
    redetect_after_lost: int = Field(
        1, ge=1, description="Lost frames before a lost object is re-detected (1: at once)."
    )
    redetect_max_interval: int = Field(
        8,
        ge=1,
        description="Back-off cap: after each re-detection that finds nothing, wait 1, 2, 4 ... "
        "lost frames (at most this many) before the next (1: every lost frame).",
    )
    redetect_in_background: bool = Field(
        True,
        description="Re-detect on a worker thread beside the loop, tracking the other objects "
        "meanwhile; false: inside the perception step (`collect` always does, in lockstep).",
    )


class OutputSection(_Section):
    runs_dir: Path = Path("runs")
    video: bool = True
    video_format: Literal["mp4", "gif"] = "mp4"
    video_fps: float = Field(10.0, gt=0)
    rrd: bool = Field(
        False, description="`run` also writes recording.rrd (rerun); needs the view extra."
    )
    keep_runs: int | None = Field(
        None, ge=1, description="After a run, delete the oldest run folders beyond this many."
    )
    keep_bytes: int | None = Field(
        None, ge=1, description="After a run, delete the oldest run folders until the rest fit."
    )


class ServiceSection(_Section):
    """`python -m agent serve`: how much the HTTP service takes on at once, and from whom."""

    max_requests: int = Field(
        128, ge=1, description="Requests served at once (a stream is one); cancel is exempt."
    )
    max_listeners: int = Field(64, ge=1, description="Event streams open at once; more get 503.")
    auth_max_failures: int = Field(
        10, ge=0, description="Bad tokens from one address in auth_window_s before 429 (0: off)."
    )
    auth_window_s: float = Field(
        60.0, gt=0, description="Window for auth_max_failures, and how long the 429 lasts."
    )
    throttle_loopback: bool = Field(
        False, description="Throttle clients on this machine too (a local proxy shares one)."
    )


class Config(_Section):
    profile: str = "sim"
    runtime: RuntimeSection = RuntimeSection()
    sim: SimSettings = SimSettings()
    cameras: CamerasSection = CamerasSection()
    robot: RobotSection = RobotSection()
    franka: FrankaConfig = FrankaConfig()
    table: TableSection = TableSection()
    models: ModelsSection = ModelsSection()
    reasoning: ReasoningConfig = ReasoningConfig()
    grounding_dino: GroundingDinoConfig = GroundingDinoConfig()
    sam: SamConfig = SamConfig()
    mobile_sam: MobileSamConfig = MobileSamConfig()
    onnx_tracker: OnnxTrackerConfig = OnnxTrackerConfig()
    policy: PolicyConfig = PolicyConfig()
    output: OutputSection = OutputSection()
    service: ServiceSection = ServiceSection()
    teleop: TeleopSettings = TeleopSettings()

    @model_validator(mode="after")
    def _consistent(self) -> Config:
        """Backends that only make sense together; the first problem, as one line."""
        cams, robot = self.cameras.backend, self.robot.backend
        if (cams == "sim") != (robot == "sim"):
            raise ValueError(
                f"cameras.backend {cams!r} and robot.backend {robot!r} do not fit: the simulated "
                "arm lives in the simulated world, so both are 'sim' or neither is"
            )
        if cams == "franka_sim":
            if robot != "franka":
                raise ValueError(
                    "cameras.backend 'franka_sim' needs robot.backend 'franka' (panda-python's "
                    "libfranka 0.9.2 cannot talk to franky-sim)"
                )
            if not _is_loopback(self.franka.host):
                raise ValueError(
                    f"cameras.backend 'franka_sim' serves the arm on a loopback address; "
                    f"franka.host is {self.franka.host!r} (use e.g. 127.0.0.1)"
                )
            if self.sim.between_tasks == "reset":
                raise ValueError(
                    "sim.between_tasks 'reset' is not possible with cameras.backend 'franka_sim' "
                    "(franky-sim's arm belongs to the libfranka client): use 'carry_over'"
                )
        if cams == "hardware":
            _check_hardware(self)
        truth = cams in ("sim", "franka_sim")
        needs_truth = (
            ("models.detector", self.models.detector, "ground_truth", "'grounding_dino'"),
            (
                "models.segmenter",
                self.models.segmenter,
                "ground_truth",
                "'sam', 'mobile_sam' or 'grabcut'",
            ),
            ("models.policy", self.models.policy, "expert", "the learned policy 'tpm'"),
        )
        for key, value, simulated, instead in needs_truth:
            if value == simulated and not truth:
                raise ValueError(
                    f"{key} {value!r} needs simulator truth (cameras.backend 'sim' or "
                    f"'franka_sim'); on hardware use {instead}"
                )
        return self


def _check_hardware(config: Config) -> None:
    cams = config.cameras
    for view in cams.views:
        device = cams.devices.get(view)
        if device is None:
            raise ValueError(
                f"cameras.devices has no entry for view {view!r} (add [cameras.devices.{view}])"
            )
        if device.pose is None:
            raise ValueError(
                f"cameras.devices.{view}.pose is required on hardware: the policy is trained "
                "for fixed viewpoints"
            )
    unused = sorted(set(cams.devices) - set(cams.views))
    if unused:
        raise ValueError(f"cameras.devices.{unused[0]} is not in cameras.views {cams.views}")
    serials = [d.serial for d in cams.devices.values() if d.serial]
    if len(serials) != len(set(serials)):
        raise ValueError("two cameras.devices entries have the same serial")
    if not config.table.objects:
        raise ValueError(
            "table.objects is empty: on hardware, list what stands on the table "
            '(e.g. ["sponge", "milk carton", "user"])'
        )


def load_config(
    source: str | Path | Mapping[str, Any] = "sim",
    overrides: Sequence[str] | Mapping[str, Any] = (),
) -> Config:
    """Load a profile name, a TOML file or a mapping; apply overrides; validate.

    Raises ConfigError with one line naming the key and what is allowed.
    """
    if is_profile_name(source):
        data = read_profile(str(source))
        data["profile"] = str(source)
    else:
        data = read_source(source)
        base = data.get("profile")
        if base is not None:  # a user file or mapping names the profile it refines
            data = deep_merge(read_profile(str(base)), data)
    for key, value in parse_overrides(overrides).items():
        set_dotted(data, key, value)
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None


def with_overrides(config: Config, overrides: Mapping[str, Any]) -> Config:
    """`config` with dotted keys set (`{"sim.seed": 3}`), validated as `load_config` validates.

    For front ends that change a loaded config per request (the service's scene) and must refuse
    a bad value with the same one-line ConfigError as `--set`.
    """
    data = config.model_dump()
    for key, value in overrides.items():
        set_dotted(data, key, value)
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None


def _describe(exc: ValidationError) -> str:
    """First validation error as one line: dotted key, what was given, what is allowed."""
    err = exc.errors()[0]
    loc = _user_loc(err["loc"])
    key = ".".join(loc) or "config"
    if err["type"] == "extra_forbidden":
        section = _section_for(err["loc"][:-1])
        names = list(section.model_fields) if section else []
        close = difflib.get_close_matches(loc[-1], names, n=1) if loc else []
        hint = f" did you mean {'.'.join([*loc[:-1], close[0]])!r}?" if close else ""
        return f"unknown config key {key!r};{hint} allowed here: {', '.join(names)}"
    if err["type"] == "literal_error":
        expected = err.get("ctx", {}).get("expected", "")
        return f"{key}: {err['input']!r} is not allowed; allowed: {expected}"
    if err["type"] == "value_error":
        return f"{key}: {err['msg'].removeprefix('Value error, ')}"
    return f"{key}: {err['msg']} (got {err.get('input')!r})"


def _user_loc(loc: Sequence[Any]) -> list[str]:
    """The key as the user writes it: pydantic puts a camera's driver tag after its view name."""
    parts = [str(p) for p in loc]
    if parts[:2] == ["cameras", "devices"] and len(parts) > 3 and parts[3] in CAMERA_DRIVERS:
        del parts[3]
    return parts


def _section_for(loc: Sequence[Any]) -> type[BaseModel] | None:
    parts = [str(p) for p in loc]
    model: type[BaseModel] = Config
    if parts[:2] == ["cameras", "devices"] and len(parts) > 3:  # devices.<view>.<driver tag>
        model, parts = CAMERA_DRIVERS.get(parts[3], Config), parts[4:]
    for part in parts:
        field = model.model_fields.get(part)
        annotation = field.annotation if field else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return None
        model = annotation
    return model
