"""The one place that turns config names into concrete drivers and model backends.

Adding a backend means one registry line here (and its name in the config's allowed values); the
loops never know which backend they run. Heavy imports happen inside the factories, so importing
`agent` stays fast and a missing optional dependency is reported with the extra to install.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

from agent.config import Config
from agent.loops.supervise import Judge
from drivers.base import Camera, Robot
from models.detection.base import Detector
from models.perception import PerceptionPipeline
from models.policy.base import Policy
from models.reasoning.base import Reasoner
from models.segmentation.base import Segmenter
from models.tracking.base import TrackerFactory

log = structlog.get_logger("agent.backends")


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

    def open(self) -> None:
        for camera in self.cameras.values():
            camera.open()
        self.robot.open()

    def close(self) -> None:
        """Close every device, newest first, logging (not raising) individual failures."""
        steps: list[tuple[str, Callable[[], None]]] = [("robot", self.robot.close)]
        steps += [(f"camera {name}", cam.close) for name, cam in self.cameras.items()]
        steps += [("world", closer) for closer in reversed(self.closers)]
        for what, close in steps:
            try:
                close()
            except Exception as exc:  # closing must go on for the other devices
                log.error("close failed", device=what, error=str(exc))


def _require(module: str, extra: str) -> Any:
    try:
        return __import__(module, fromlist=["_"])
    except ImportError as exc:
        raise BackendError(
            f"{module} is not installed ({exc.name}); "
            f"install the extra: pip install 'tpm-agent[{extra}]'"
        ) from None


def _reasoner(config: Config, descriptions: dict[str, str]) -> Reasoner:
    from models.reasoning.rules import RuleReasoner

    registry: dict[str, Callable[[], Reasoner]] = {
        "rules": lambda: RuleReasoner(descriptions=descriptions),
    }
    return registry[config.models.reasoner]()


def _detector(config: Config) -> Detector:
    from models.detection.ground_truth import GroundTruthDetector

    registry: dict[str, Callable[[], Detector]] = {"ground_truth": GroundTruthDetector}
    return registry[config.models.detector]()


def _tracker(config: Config) -> TrackerFactory:
    from models.tracking.opencv_tracker import OpenCVTrackerFactory

    return OpenCVTrackerFactory(kind=config.models.tracker)


def _segmenter(config: Config) -> Segmenter:
    from models.segmentation.box import BoxSegmenter
    from models.segmentation.grabcut import GrabCutSegmenter
    from models.segmentation.ground_truth import GroundTruthSegmenter

    registry: dict[str, Callable[[], Segmenter]] = {
        "ground_truth": GroundTruthSegmenter,
        "grabcut": GrabCutSegmenter,
        "box": BoxSegmenter,
    }
    return registry[config.models.segmenter]()


def _pipeline_factory(config: Config) -> Callable[[], PerceptionPipeline]:
    detector, tracker, segmenter = _detector(config), _tracker(config), _segmenter(config)

    def new_pipeline() -> PerceptionPipeline:
        return PerceptionPipeline(
            detector, tracker, segmenter, detect_every_frame=config.models.detect_every_frame
        )

    return new_pipeline


def build_parts(config: Config) -> Parts:
    """Build (but do not open) the devices and models a config names. Blocking: call in a thread."""
    builders: dict[str, Callable[[Config], Parts]] = {"sim": _build_sim}
    return builders[config.cameras.backend](config)


def _build_sim(config: Config) -> Parts:
    _require("mujoco", "sim")
    from drivers.sim import SceneSpec, ScriptedExpert, SimCamera, SimJudge, SimRobot, World

    sim = config.sim
    spec = SceneSpec(
        seed=sim.seed,
        objects=list(sim.objects),
        split=sim.split,
        setting=sim.setting,
        include_user=sim.include_user,
        catalog=sim.catalog,
        image_width=sim.image_width,
        image_height=sim.image_height,
        camera_fps=sim.camera_fps,
    )
    world = World.build(spec)
    closers: list[Callable[[], None]] = [world.close]
    try:
        cameras: dict[str, Camera] = {name: SimCamera(world, name) for name in config.cameras.views}
        robot = SimRobot(world, max_step=sim.max_step_m)
        policies: dict[str, Callable[[], Policy]] = {"expert": lambda: ScriptedExpert(world)}
        parts = Parts(
            cameras=cameras,
            robot=robot,
            reasoner=_reasoner(config, world.descriptions()),
            new_pipeline=_pipeline_factory(config),
            policy=policies[config.models.policy](),
            judge=SimJudge(world),
            scene_objects=world.object_names,
            closers=closers,
        )
    except BaseException:
        with contextlib.suppress(Exception):
            world.close()
        raise
    world.start_realtime()
    return parts
