"""One closed-loop rollout: the step loop that collection, the tracking benchmark and the
sequential loop baseline share, and the lockstep simulator it usually runs in.

A step is: observe (render or read the cameras, and perceive), read the arm's state, decide the
next move, move, advance. In lockstep (`LockstepScene`) "advance" steps physics by one control
period in the caller's thread, so what is recorded depends on no thread timing; where physics runs
in real time (the loop baseline's sim parts) nothing needs advancing. Writing that order once keeps
the three users from drifting apart (which step sees which frame, when the budget is spent, what
ends an episode).

The drivers never import `models` (the import floors), so perception and the policy come in as
callables and structural protocols; `ScriptedExpert` and `SimJudge` are the simulator's own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import numpy as np

from drivers.base import Frame, RobotState

if TYPE_CHECKING:  # these load mujoco; `run_steps` alone runs without it (on a real arm too)
    from drivers.sim.config import SceneSpec
    from drivers.sim.render import ViewRenderer
    from drivers.sim.robot import SimRobot
    from drivers.sim.success import SimJudge, Verdict
    from drivers.sim.world import World

P = TypeVar("P")
P_co = TypeVar("P_co", covariant=True)

SETTLE_S = 1.0  # after the expert is done, let the object come to rest before judging
SETTLE_MAX_S = 3.0  # ... and while it is still moving, wait up to this long in all


class Move(Protocol):
    """What a step decides: a hand displacement (m, base frame) and the gripper's state."""

    @property
    def move(self) -> Any: ...
    @property
    def gripper_closed(self) -> bool: ...


class Arm(Protocol):
    """The two robot calls a rollout makes (`drivers.base.Robot` has them)."""

    def state(self) -> RobotState: ...
    def move(self, delta: np.ndarray, gripper_closed: bool) -> None: ...


class Perception(Protocol[P_co]):
    """A perception pipeline as the rollout drives it (`models.perception.PerceptionPipeline`):
    `start` detects on the first views of a task, `step` tracks on every later one."""

    def start(self, task: Any, views: Mapping[str, Frame]) -> P_co: ...
    def step(self, views: Mapping[str, Frame]) -> P_co: ...


@dataclass(frozen=True, slots=True)
class Ended:
    """How a rollout ended: after `moves` moves, because `decide` said done (`done`), `until`
    said stop (`stopped`), or neither (the step budget was used)."""

    moves: int
    done: bool = False
    stopped: bool = False

    @property
    def budget_used(self) -> bool:
        return not (self.done or self.stopped)


def run_steps(
    observe: Callable[[], P],
    decide: Callable[[P, RobotState], Move | None],
    arm: Arm,
    *,
    max_steps: int,
    advance: Callable[[], object] = lambda: None,
    until: Callable[[], bool] | None = None,
    before_move: Callable[[], object] = lambda: None,
) -> Ended:
    """Up to `max_steps` steps of observe, state, decide, move, `advance`; then `until`.

    `decide` returns None to end the rollout before its move (the expert's "done"); a decision's
    own fields are not read for that, so a policy's `done` flag never cuts a rollout short unless
    the caller's `decide` says so. `advance` is the lockstep world's step of one control period
    (`LockstepScene.advance`), or the caller's per-step bookkeeping where physics runs in real time.
    `before_move` runs between the decision and the move: the lockstep world's share of the period
    that passes before a command arrives (collection's `latency_s`; `advance` is then the rest).
    """
    for moves in range(max_steps):
        observation = observe()
        decision = decide(observation, arm.state())
        if decision is None:
            return Ended(moves, done=True)
        before_move()
        arm.move(decision.move, decision.gripper_closed)
        advance()
        if until is not None and until():
            return Ended(moves + 1, stopped=True)
    return Ended(max_steps)


def perceiving(
    perception: Perception[P], task: Any, sense: Callable[[], Mapping[str, Frame]]
) -> Callable[[], P]:
    """`observe` for `run_steps`: the first call starts `perception` on the first views (detect),
    every later call steps it on new ones (track)."""
    started = False

    def observe() -> P:
        nonlocal started
        if started:
            return perception.step(sense())
        started = True
        return perception.start(task, sense())

    return observe


@dataclass
class LockstepScene:
    """A world built for one scene, stepped in the caller's thread: its renderers (RGB and
    segmentation, no depth), the simulated arm without its realtime check, and the control period
    in physics steps. Open it with `LockstepScene.open`."""

    world: World
    robot: SimRobot
    renderers: list[ViewRenderer]
    control_steps: int

    @classmethod
    @contextmanager
    def open(
        cls, spec: SceneSpec, views: Sequence[str], *, control_hz: float, max_step_m: float
    ) -> Iterator[LockstepScene]:
        """Build `spec`'s world with a renderer per view at the spec's image size; closes both."""
        from drivers.sim.render import ViewRenderer
        from drivers.sim.robot import SimRobot
        from drivers.sim.world import World

        with World.build(spec) as world:
            renderers: list[ViewRenderer] = []
            try:
                for view in views:
                    renderers.append(
                        ViewRenderer(world, view, spec.image_width, spec.image_height, depth=False)
                    )
                steps = max(1, round(1.0 / (control_hz * world.model.opt.timestep)))
                robot = SimRobot(world, max_step=max_step_m, realtime=False)
                yield cls(world, robot, renderers, steps)
            finally:
                for renderer in renderers:
                    renderer.close()

    def render(self) -> dict[str, Frame]:
        """One frame of every view, of the world as it is now."""
        return {r.camera: r.render() for r in self.renderers}

    def advance(self, periods: int = 1) -> None:
        """Step physics by `periods` control periods."""
        self.world.step(periods * self.control_steps)

    def physics_steps(self, seconds: float) -> int:
        """Physics steps in `seconds`, at most one control period."""
        steps = round(seconds / float(self.world.model.opt.timestep))
        return min(self.control_steps, max(0, steps))


def settle_and_judge(world: World, judge: SimJudge, task: Any) -> Verdict:
    """The judge's verdict once the episode's outcome is decided: after `SETTLE_S`, and while A
    is still moving (the judge's "not done"), every 0.25 s up to `SETTLE_MAX_S`.

    The runtime's supervisor judges every step until the verdict is done, so an object that
    rocks for a moment after release is judged at rest there; one look at a fixed time would
    fail it here.
    """
    world.step_seconds(SETTLE_S)
    verdict = judge.verdict(task)
    waited = SETTLE_S
    while not verdict.done and waited < SETTLE_MAX_S:
        world.step_seconds(0.25)
        waited += 0.25
        verdict = judge.verdict(task)
    return verdict
