"""Typed, JSON-serialisable events that `Runtime.execute` yields, with a versioned schema.

Embedders (CLI, HTTP service, a lab's dashboard) see only these. Every event carries `t`, the
runtime's monotonic clock in seconds, and `episode`, the id of the execution it belongs to.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

#: 2: `Started.world` (which world the task starts in). 3: `Outcome.stop` (how the safe stop went).
#: 4: `Step.grasp_retry` and `Outcome.grasp_retries` (the runtime's grasp retry, agent.grasp_retry),
#: `Step.gripper_width` (the fingers' measured gap), `Outcome.ended` (agent.endings).
SCHEMA_VERSION = 4

Status = Literal["success", "failure", "infeasible", "not_found", "cancelled", "fault"]


class _Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: int = SCHEMA_VERSION
    episode: str
    t: float

    def to_json(self) -> str:
        return self.model_dump_json()


class WorldStart(BaseModel):
    """Which world a task starts in.

    `reset` True: the scene was put back to its known layout for this task (the simulator, by
    default). False: it carries over from the last task (a real table, or `sim.between_tasks =
    "carry_over"`). Either way the success check judges only what happens during the task.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    reset: bool
    scene: str
    seed: int | None = None


class Started(_Event):
    kind: Literal["started"] = "started"
    request: str
    profile: str
    scene_objects: list[str]
    world: WorldStart | None = None  # None only if the world could not be readied (a Fault follows)


class Reasoned(_Event):
    """The request turned into targets (or `pick is None`: nothing in view fits)."""

    kind: Literal["reasoned"] = "reasoned"
    request: str
    skill: str
    pick: str | None
    place: str | None
    rationale: str
    backend: str
    latency_ms: float


class Detected(_Event):
    """One target found (or not: `box is None`) in one camera view by the detector."""

    kind: Literal["detected"] = "detected"
    view: str
    role: Literal["pick", "place"]
    label: str
    box: tuple[float, float, float, float] | None
    redetection: bool = False
    latency_ms: float


class Step(_Event):
    """One action the command loop received: executed, or refused because it was too old.

    `latency_ms` holds per-stage times of this action's pipeline: `perceive`, `act`, `command`
    (time the command call took), and `total` (capture of the source frame -> command sent).
    `grasp_retry`: n when the runtime's n-th grasp retry of the episode drove this step (the hand
    had closed on nothing: agent.grasp_retry), 0 when the policy did. `gripper_width`: the
    fingers' measured gap (m) in the state the step was taken from (None: the robot reports none).
    """

    kind: Literal["step"] = "step"
    index: int
    executed: bool
    move: tuple[float, float, float]
    gripper_closed: bool
    ee_pos: tuple[float, float, float]
    latency_ms: dict[str, float]
    grasp_retry: int = 0
    gripper_width: float | None = None


class Fault(_Event):
    """Something failed. `fatal` faults end the episode with status "fault"."""

    kind: Literal["fault"] = "fault"
    where: str
    message: str
    fatal: bool = True


class Outcome(BaseModel):
    """How an execution ended; `success` is None when nothing could judge it (real robot).

    `stop` is how the safe stop that ends every execution went, before `Finished` was sent: "ok",
    "failed: <reason>" or "timed out after <n> s" (a stop that did not succeed also turns the
    status into "fault" and is named in `reason`). None only in records older than schema 3.
    `ended`: how an unsuccessful episode ended (agent.endings: "closed on nothing", "stalled, hand
    open", "placed wrong", ...); None on success and in records older than schema 4.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    status: Status
    success: bool | None
    reason: str
    steps: int = 0
    duration_s: float = 0.0
    stale_actions: int = 0
    dropped: dict[str, int] = Field(default_factory=dict)
    latency_ms: dict[str, dict[str, float]] = Field(default_factory=dict)
    stop: str | None = None
    grasp_retries: int = 0
    ended: str | None = None


class Finished(_Event):
    kind: Literal["finished"] = "finished"
    outcome: Outcome


Event = Annotated[
    Started | Reasoned | Detected | Step | Fault | Finished, Field(discriminator="kind")
]
EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)


def describe_task(skill: str, pick: str | None, place: str | None) -> str:
    """A task in a few words for people: "pick sponge, place near user", "open drawer"."""
    if pick is None:
        return "nothing to do"
    if place is None:
        return f"{skill.replace('_', ' ').split(' ')[0]} {pick}"
    return f"pick {pick}, {skill.replace('_', ' ')} {place}"


def parse_event(data: str | bytes) -> Event:
    """Parse one JSON event (e.g. a line of a run's events.jsonl) back into its typed model."""
    return EVENT_ADAPTER.validate_json(data)
