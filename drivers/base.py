"""Device protocols shared by the real and the simulated drivers.

Drivers are plain blocking code: the runtime decides on which worker thread a call runs. A camera
keeps only its newest frame (a capture thread per device), a robot executes small relative moves
without blocking the caller, and both are context managers so that a crash still closes them.
"""

from __future__ import annotations

import importlib
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import Protocol, TypeVar, runtime_checkable

import numpy as np
from pydantic import BaseModel, ConfigDict


class Settings(BaseModel):
    """Base of every driver's settings: validated once, frozen, an unknown key refused by name.

    The runtime's profiles compose these models as they are (`agent.config`), so a driver's
    settings class is the one definition of its keys, defaults and checks.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)


def require_sdk(*modules: str, error: type[Exception], hint: str) -> ModuleType:
    """Import a vendor SDK (all of `modules`; the first is returned) or raise `error` as one line:
    `hint` says what to install, the import's own message why it failed.

    Drivers import their SDK only when they open, so `import drivers` needs none; this is the
    drivers' one "install the extra" helper (`models._loading.require` is the models' and the
    runtime's: the floors keep drivers and models from sharing one).
    """
    try:
        for name in modules:
            importlib.import_module(name)
    except ImportError as exc:
        raise error(f"{hint} ({exc})") from exc
    return importlib.import_module(modules[0])


_T = TypeVar("_T")


class CallTimeout(TimeoutError):
    """A vendor call did not return within its deadline and was left running in its thread."""


def call_within(call: Callable[[], _T], timeout: float, name: str) -> _T:
    """Run a blocking vendor call in a daemon thread; its result, or its exception, or
    `CallTimeout` after `timeout` seconds.

    For the calls a C++ SDK cannot cancel and may never return from (libfranka waiting for a
    controller that went silent: a pulled cable, a frozen controller): the caller gets its thread
    back and the call is abandoned where it blocks. A daemon thread, so that it cannot keep the
    process from exiting either. `name` names the thread (seen in stack dumps).
    """
    result: list[_T] = []
    error: list[BaseException] = []

    def run() -> None:
        try:
            result.append(call())
        except BaseException as exc:  # handed to the caller's thread below
            error.append(exc)

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise CallTimeout(f"{name} did not return within {timeout:g} s")
    if error:
        raise error[0]
    return result[0]


class DriverError(RuntimeError):
    """A device failed in a way the runtime should report as a fault (never a library traceback)."""


class CameraError(DriverError):
    """A camera delivered no frame in time, or only frames older than its maximum age."""


class RobotError(DriverError):
    """The robot refused or aborted a command (reflex, limit, lost connection)."""


@dataclass(frozen=True, slots=True)
class Frame:
    """One colour image from one camera, with the times needed to judge its age.

    `t_capture` is the host's `time.monotonic()` when the image was taken; every later stage
    measures its own latency against it. `segmentation` / `labels` are simulator ground truth
    (object id per pixel, -1 for background, and object name -> id); real cameras leave them None.
    """

    camera: str
    rgb: np.ndarray  # (H, W, 3) uint8
    t_capture: float
    seq: int
    t_device: float | None = None
    depth: np.ndarray | None = None  # (H, W) float32, metres
    segmentation: np.ndarray | None = None  # (H, W) int32 object ids, -1 background
    labels: Mapping[str, int] | None = None


@dataclass(frozen=True, slots=True)
class RobotState:
    """Proprioception at monotonic time `t`: end-effector position in the robot base frame (m)."""

    ee_pos: np.ndarray  # (3,) float64
    gripper_width: float  # metres between the fingers
    gripper_closed: bool  # the last commanded gripper state
    t: float
    joints: np.ndarray = field(default_factory=lambda: np.zeros(0))


@dataclass(frozen=True, slots=True)
class TaskStart:
    """The world a task starts in, as the driver that owns that world reports it.

    `reset` True: the scene was put back to its known initial layout (objects at their placements,
    arm home) for this task. False: the scene carries over from the last task (a real table; a
    simulator told to keep it) and only the judge's bookkeeping starts afresh, so the task is
    judged from its own start either way. `t` is the host's `time.monotonic()` once the world is
    ready: camera frames captured before it show the world before the task's start.
    """

    reset: bool
    scene: str  # which world, in a few words: "MuJoCo scene, seed 0 (standard, seen objects)"
    seed: int | None = None
    t: float = 0.0


@runtime_checkable
class TaskWorld(Protocol):
    """The world a robot works in, told that a task begins (called before the task's first frame).

    `begin_task(reset=True)` puts the world back to its known scene; worlds that cannot do that (a
    real table, a simulator whose arm belongs to a connected client) raise DriverError for it.
    `begin_task(reset=False)` keeps the scene as it is. Both clear what a judge remembers from
    earlier tasks (such as "was grasped"), so a verdict reads only what happened in this task.
    """

    def begin_task(self, reset: bool) -> TaskStart: ...


class CarriedOverWorld:
    """A world nobody resets between tasks (a real table): each task starts where the last ended.

    There is no judge on a real table (people judge), so there is nothing to clear.
    """

    def __init__(self, scene: str) -> None:
        self.scene = scene

    def begin_task(self, reset: bool = False) -> TaskStart:
        if reset:
            raise DriverError(f"{self.scene} cannot be reset by the runtime; it carries over")
        return TaskStart(reset=False, scene=self.scene, seed=None, t=time.monotonic())


@runtime_checkable
class Camera(Protocol):
    """A camera that streams in its own thread and hands out the newest frame."""

    name: str

    def open(self) -> None: ...

    def read(self, timeout: float) -> Frame:
        """Block until a frame newer than the last one returned exists; CameraError on timeout."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class Robot(Protocol):
    """An arm with a binary gripper driven by small relative Cartesian moves."""

    def open(self) -> None: ...

    def state(self) -> RobotState: ...

    def move(self, delta: np.ndarray, gripper_closed: bool) -> None:
        """Start moving the end effector by `delta` (m, base frame); return without waiting.

        A new call preempts the previous target. The driver clips to its workspace and step limits.
        """
        ...

    def hold(self) -> None:
        """Keep the current pose (used when no fresh action exists)."""
        ...

    def stop(self) -> None:
        """Safe stop: end any motion now and hold. Must be callable from any state, also twice."""
        ...

    def close(self) -> None: ...


def shortened(vector: np.ndarray, max_norm: float) -> np.ndarray:
    """`vector` scaled down to length `max_norm` when longer, its direction kept: how every arm
    driver (and the teleoperation limits that must predict it) bounds a step or a lead."""
    v = np.asarray(vector, dtype=float)
    norm = float(np.linalg.norm(v))
    return v * (max_norm / norm) if norm > max_norm else v
