"""The one place that turns config names into concrete drivers and model backends.

Adding a backend means one registry line here (and its name in the config's allowed values); the
loops never know which backend they run. Heavy imports happen inside the factories, so importing
`agent` stays fast and a missing optional dependency is reported with the extra to install.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

from agent.config import CameraDevice, Config
from agent.grasp_retry import GraspRetry, GraspRetrySettings
from agent.threads import pin_math_threads
from drivers.base import Camera, CarriedOverWorld, DriverError, Robot, TaskStart, call_within
from drivers.cameras.realsense import RealSenseConfig
from drivers.sim.success import Judge
from models._loading import require
from models.detection.base import Detector
from models.perception import PerceptionPipeline
from models.reasoning.base import Reasoner
from models.segmentation.base import Segmenter
from models.tpm.policy import Policy
from models.tracking.base import TrackerFactory
from models.types import ModelError

log = structlog.get_logger("agent.backends")

#: seconds each device gets to close (a Franka's close is bounded at about 8 s by its own
#: timeouts: stop, gripper, connection) before it is abandoned
CLOSE_TIMEOUT_S = 15.0


class BackendError(RuntimeError):
    """A configured backend cannot be built (missing extra, checkpoint or device); one line."""


@dataclass
class Parts:
    """Everything one Runtime drives: devices, model backends, and what closes them."""

    cameras: dict[str, Camera]
    robot: Robot
    reasoner: Reasoner
    new_pipeline: Callable[[], PerceptionPipeline]
    policy: Policy
    judge: Judge | None
    scene_objects: Callable[[], list[str]]
    closers: list[Callable[[], None]] = field(default_factory=list)
    #: called before each task (in a worker thread): resets the world or keeps it, clears what
    #: the judge remembers, and says which world the task starts in (see drivers.base.TaskWorld).
    #: Without one, the world carries over: the runtime cannot reset what it does not know.
    begin_task: Callable[[], TaskStart] = field(
        default=functools.partial(CarriedOverWorld("the robot's world").begin_task, reset=False)
    )

    def open(self) -> None:
        """Open the cameras, then the robot; a device that fails is named in one line.

        The caller closes what was opened (the runtime pushes `close` before calling this).
        """
        what = "robot"
        try:
            for name, camera in self.cameras.items():
                what = f"camera {name!r}"
                camera.open()
            what = "robot"
            self.robot.open()
        except DriverError as exc:
            raise BackendError(f"cannot open the {what}: {exc}") from None

    def close(self) -> None:
        """Close every device, newest first, then the reasoner's model; log (not raise) each
        failure.

        Each close gets `CLOSE_TIMEOUT_S` and is then abandoned in its thread: a vendor SDK stuck
        on a device that stopped answering must not keep the others open, or hang the runtime.
        """
        steps: list[tuple[str, Callable[[], None]]] = [("robot", self.robot.close)]
        steps += [(f"camera {name}", cam.close) for name, cam in self.cameras.items()]
        steps += [("world", closer) for closer in reversed(self.closers)]
        # the offline reasoner's language model: freed here, on the closing worker thread,
        # rather than by the garbage collector wherever the last reference goes (the event
        # loop's thread, which a `serve` process would block while llama.cpp frees its model)
        close_reasoner = getattr(self.reasoner, "close", None)
        if callable(close_reasoner):
            steps.append(("reasoner", close_reasoner))
        for what, close in steps:
            try:
                call_within(close, CLOSE_TIMEOUT_S, f"close-{what}")
            except Exception as exc:  # closing must go on for the other devices
                log.error("close failed", device=what, error=str(exc))


def _reasoner(config: Config, descriptions: dict[str, str]) -> Reasoner:
    from models.reasoning.rules import RuleReasoner

    registry: dict[str, Callable[[], Reasoner]] = {
        "rules": lambda: RuleReasoner(descriptions=descriptions),
        "offline": lambda: _offline_reasoner(config, descriptions),
        "openai": lambda: _openai_reasoner(config, descriptions),
    }
    try:
        return registry[config.models.reasoner]()
    except ModelError as exc:  # a missing extra or model file: one line, exit code 2
        raise BackendError(str(exc)) from None


#: Public name for tools that build a reasoner without the rest (the reasoning benchmark).
build_reasoner = _reasoner


def _offline_reasoner(config: Config, descriptions: dict[str, str]) -> Reasoner:
    from models.reasoning.offline import offline_reasoner

    return offline_reasoner(descriptions, config.reasoning)


def _openai_reasoner(config: Config, descriptions: dict[str, str]) -> Reasoner:
    from models.reasoning.openai_chat import OpenAIReasoner, OpenAISettings

    settings = OpenAISettings.from_config(
        config.reasoning,
        # every retry inside the runtime's reasoning timeout (less a margin for the worker
        # thread and the event loop the backend starts), so that its message is what users see
        deadline_s=max(config.runtime.reason_timeout_s / 2, config.runtime.reason_timeout_s - 1.0),
    )
    return OpenAIReasoner(settings, descriptions)


def _detector(config: Config) -> Detector:
    from models.detection.ground_truth import GroundTruthDetector

    registry: dict[str, Callable[[], Detector]] = {
        "ground_truth": GroundTruthDetector,
        "grounding_dino": lambda: _grounding_dino(config),
    }
    return registry[config.models.detector]()


def _grounding_dino(config: Config) -> Detector:
    from models.detection.grounding_dino import GroundingDinoDetector

    threads = config.runtime.torch_threads
    return GroundingDinoDetector(**config.grounding_dino.model_dump(), threads=threads)


def _tracker(config: Config) -> TrackerFactory:
    if config.models.tracker == "onnx":
        from models.tracking.onnx_tracker import OnnxTrackerFactory

        threads = config.runtime.torch_threads
        return OnnxTrackerFactory(**config.onnx_tracker.model_dump(), threads=threads)
    from models.tracking.opencv_tracker import OpenCVTrackerFactory

    return OpenCVTrackerFactory(kind=config.models.tracker)


#: Public name for tools that build a tracker without the rest (the tracking benchmark).
build_tracker = _tracker


def _segmenter(config: Config) -> Segmenter:
    from models.segmentation.box import BoxSegmenter
    from models.segmentation.grabcut import GrabCutSegmenter
    from models.segmentation.ground_truth import GroundTruthSegmenter

    registry: dict[str, Callable[[], Segmenter]] = {
        "ground_truth": GroundTruthSegmenter,
        "grabcut": GrabCutSegmenter,
        "box": BoxSegmenter,
        "sam": lambda: _sam(config, "sam", config.sam.model_dump()),
        "mobile_sam": lambda: _sam(
            config, "mobile_sam", {"variant": "vit_t", **config.mobile_sam.model_dump()}
        ),
    }
    return registry[config.models.segmenter]()


def _sam(config: Config, section: str, settings: dict[str, Any]) -> Segmenter:
    """SAM or MobileSAM from its section's settings (`section` names it in error messages)."""
    from models.segmentation.sam import SamSegmenter

    threads = config.runtime.torch_threads
    return SamSegmenter(**settings, threads=threads, config_section=section)


def build_perception(config: Config) -> tuple[Detector, TrackerFactory, Segmenter]:
    """The configured detector, tracker factory and segmenter (models load here, blocking).

    A missing checkpoint, model file or extra becomes a one-line BackendError (exit code 2).
    """
    try:
        return _detector(config), _tracker(config), _segmenter(config)
    except ModelError as exc:
        raise BackendError(str(exc)) from None


def build_tpm_policy(config: Config) -> Policy:
    """The exported TPM policy in ONNX Runtime ([policy] section); one line if it cannot load.

    Wrapped in the grasp retry unless `runtime.grasp_retries` is 0 (agent.grasp_retry).
    """
    from models.tpm.onnx_policy import OnnxTPMPolicy

    try:
        policy = OnnxTPMPolicy(**config.policy.model_dump())
    except ModelError as exc:
        raise BackendError(str(exc)) from None
    log.info("tpm policy loaded", path=str(config.policy.onnx), provider=policy.provider)
    rt = config.runtime
    if rt.grasp_retries == 0:
        return policy
    return GraspRetry(
        policy,
        GraspRetrySettings(
            retries=rt.grasp_retries, empty_gap_m=rt.empty_grip_m, lift_m=rt.retry_lift_m
        ),
    )


def pipeline_factory(config: Config, *, lockstep: bool = False) -> Callable[[], PerceptionPipeline]:
    """New perception pipelines as the config sets them up (shared by run, eval and collect).

    `lockstep=True` (dataset collection: nothing runs in real time) re-detects inside each step
    on every lost frame, as before the back-off, whatever `[models]` says: the recorded data
    depends neither on thread timing nor on the back-off.
    """
    pin_math_threads(config.runtime.torch_threads)  # before any model runs: see agent.threads
    detector, tracker, segmenter = build_perception(config)
    m = config.models

    def new_pipeline() -> PerceptionPipeline:
        return PerceptionPipeline(
            detector,
            tracker,
            segmenter,
            detect_every_frame=m.detect_every_frame,
            redetect_after_lost=m.redetect_after_lost,
            redetect_max_interval=1 if lockstep else m.redetect_max_interval,
            redetect_in_background=m.redetect_in_background and not lockstep,
            # open-vocabulary detectors find objects better from shape and colour words (paper)
            use_descriptions=m.detector == "grounding_dino",
        )

    return new_pipeline


def build_parts(config: Config, *, policy: Callable[[], Policy] | None = None) -> Parts:
    """Build (but do not open) the devices and models a config names. Blocking: call in a thread.

    `policy` replaces the configured `models.policy` (`record`: the operator drives).
    """
    builders: dict[str, Callable[[Config, Callable[[], Policy] | None], Parts]] = {
        "sim": _build_sim,
        "franka_sim": _build_franka_sim,
        "hardware": _build_hardware,
    }
    return builders[config.cameras.backend](config, policy)


def _descriptions(world: Any) -> dict[str, str]:
    """Shape and colour words per scene object, for reasoners that pass them to detectors."""
    return {name: world.object_spec(name).description for name in world.object_names()}


def _world_parts(
    config: Config,
    world: Any,
    robot: Robot,
    closers: list[Callable[[], None]],
    policy: Callable[[], Policy] | None = None,
) -> Parts:
    """Cameras, expert and judge over a simulated world (ours or franky-sim's), around `robot`.

    On failure the world is closed here, since the caller never gets the Parts that would.
    """
    from drivers.sim import ScriptedExpert, SimCamera, SimJudge

    try:
        cameras: dict[str, Camera] = {
            name: SimCamera(world, name, depth=config.sim.depth) for name in config.cameras.views
        }
        policies: dict[str, Callable[[], Policy]] = {
            "expert": lambda: ScriptedExpert(world),
            "tpm": lambda: build_tpm_policy(config),
            "none": lambda: _no_policy(config),
        }
        return Parts(
            cameras=cameras,
            robot=robot,
            reasoner=_reasoner(config, _descriptions(world)),
            new_pipeline=pipeline_factory(config),
            policy=(policy or policies[config.models.policy])(),
            judge=SimJudge(world),
            scene_objects=world.object_names,
            begin_task=functools.partial(
                world.begin_task, reset=config.sim.between_tasks == "reset"
            ),
            closers=closers,
        )
    except BaseException:
        for close in reversed(closers):
            with contextlib.suppress(Exception):
                close()
        raise


def _build_sim(config: Config, policy: Callable[[], Policy] | None = None) -> Parts:
    require("mujoco", "sim", error=BackendError)
    from drivers.sim import CatalogError, SceneError, SimRobot, World

    try:
        world = World.build(config.sim)
    except (CatalogError, SceneError) as exc:
        raise BackendError(str(exc)) from None
    # SimRobot.open() starts the realtime physics thread
    robot = SimRobot(world, max_step=config.sim.max_step_m)
    return _world_parts(config, world, robot, [world.close], policy)


def _build_franka_sim(config: Config, policy: Callable[[], Policy] | None = None) -> Parts:
    """The sim world's scene inside franky-sim, driven by the real Franka driver over loopback.

    The simulator's physics starts here rather than in `Parts.open`: like a real arm's
    controller, it must already run when the driver connects.
    """
    require("mujoco", "sim", error=BackendError)
    require("franky_sim", "sim", error=BackendError)
    require("franky", "real", error=BackendError)
    from drivers.franka import FrankaRobot
    from drivers.sim import CatalogError, SceneError
    from drivers.sim.franky_bridge import FrankySimWorld

    try:
        world = FrankySimWorld(config.sim, host=config.franka.host)
    except (CatalogError, SceneError, DriverError) as exc:
        raise BackendError(str(exc)) from None
    world.start()
    return _world_parts(config, world, FrankaRobot(config.franka), [world.close], policy)


def _build_hardware(config: Config, policy: Callable[[], Policy] | None = None) -> Parts:
    """A real arm and real cameras; no simulator, so no judge and no scripted expert.

    Devices are checked first (a missing camera is the first thing a lab meets), then the
    policy, then the perception models (which may take seconds to load).
    """
    cameras = {
        view: build_camera(view, config.cameras.devices[view]) for view in config.cameras.views
    }
    robot = build_robot(config)
    policies: dict[str, Callable[[], Policy]] = {
        "tpm": lambda: build_tpm_policy(config),
        "none": lambda: _no_policy(config),
    }
    chosen = (policy or policies[config.models.policy])()
    table = config.table
    descriptions = {name: table.descriptions.get(name, "") for name in table.objects}
    return Parts(
        cameras=cameras,
        robot=robot,
        reasoner=_reasoner(config, descriptions),
        new_pipeline=pipeline_factory(config),
        policy=chosen,
        judge=None,  # success on a real table is judged by people, not by the runtime
        scene_objects=lambda: list(table.objects),
        # nobody resets a real table: each task starts where the last one ended
        begin_task=functools.partial(CarriedOverWorld("the real table").begin_task, reset=False),
    )


def _no_policy(config: Config) -> Policy:
    raise BackendError(
        "models.policy is 'none': set models.policy = \"tpm\" and policy.onnx to a policy "
        "trained for this setup (python -m agent collect / train / export); the scripted "
        "expert needs simulator truth"
    )


def build_robot(config: Config) -> Robot:
    """The configured Franka driver (not yet connected)."""
    from drivers.franka import FrankaRobot, PandaPyRobot

    drivers: dict[str, tuple[Callable[[Any], Robot], str, str]] = {
        "franka": (FrankaRobot, "franky", "real"),
        "panda_py": (PandaPyRobot, "panda_py", "real"),
    }
    make, module, extra = drivers[config.robot.backend]
    require(module, extra, error=BackendError)
    return make(config.franka)


def build_camera(view: str, device: CameraDevice) -> Camera:
    """One configured camera, after checking that it is connected (one line naming it if not)."""
    try:
        camera, list_devices, kind = _camera_driver(view, device)
        found = list_devices()
    except DriverError as exc:  # the SDK is missing: its message names the extra
        raise BackendError(f"camera {view!r}: {exc}") from None
    serials = [d["serial"] for d in found]
    if not serials or (device.serial is not None and device.serial not in serials):
        which = f"with serial {device.serial}" if device.serial else "at all"
        raise BackendError(
            f"camera {view!r}: no {kind} {which} is connected (found: "
            f"{', '.join(serials) or 'none'}); check the cable or cameras.devices.{view}.serial "
            "(python -m agent doctor lists connected cameras)"
        )
    return camera


def _camera_driver(
    view: str, device: CameraDevice
) -> tuple[Camera, Callable[[], list[dict[str, str]]], str]:
    """The camera for `device` (its own settings, as configured), its SDK's list, its kind."""
    if isinstance(device, RealSenseConfig):
        from drivers.cameras.realsense import RealSenseCamera, list_devices

        return RealSenseCamera(device, name=view), list_devices, "RealSense"
    from drivers.cameras.azure_kinect import AzureKinectCamera
    from drivers.cameras.azure_kinect import list_devices as list_kinects

    return AzureKinectCamera(device, name=view), list_kinects, "Azure Kinect"
