"""One episode's bookkeeping and its loops, as the Runtime runs them.

An episode is a table of loops joined by latest-wins channels (`Channels`): perceive, act,
command and supervise, and the recorder as a sink. `run_loops` runs such a table in one task
group with the two failure rules the runtime needs in one place: a loop that fails ends the
episode with a `LoopFault` naming it (`Episode.fault`), a sink that fails says so in a non-fatal
Fault and the episode goes on. `Episode` turns what the loops report (command ticks, regained
targets) into events.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import anyio
import structlog

from agent import endings
from agent.channels import Latest, ThreadFed
from agent.errors import EXPECTED, describe
from agent.event_queue import EventQueue
from agent.events import Detected, Event, Fault, Outcome, Step
from agent.loops.command import CommandTick
from agent.loops.supervise import Ending
from agent.messages import ActionMsg, PerceptMsg, StepRecord
from agent.observe import RunObserver
from agent.recording import RecordingError, RunRecorder
from agent.telemetry import LatencyStats
from drivers.base import RobotState
from drivers.sim.success import Verdict
from models.perception import Percept
from models.types import TaskSpec

log = structlog.get_logger("agent.runtime")

#: this many refused (stale) actions in a row earn the episode one non-fatal "command" Fault:
#: otherwise an arm that never moves shows only a stale count at the end (the `paper` preset on
#: a CPU makes every action older than the default deadline)
STALE_IN_A_ROW_WARNING = 5


class LoopFault(Exception):
    """What ends an episode as a fault: where (a loop or a stage) and one line saying why."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}")
        self.where = where
        self.message = message


@dataclass
class Episode:
    """Mutable bookkeeping of one execution (counters, stats), owned by its episode task.

    Its events go to `send` (the consumer's stream) and, with a recorder, to the run folder,
    and with an observer (a live view) to it too.
    """

    send: EventQueue[Event]  # the consumer's events
    recorder: RunRecorder | None = None
    observer: RunObserver | None = None
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    started: float = field(default_factory=time.monotonic)
    stats: LatencyStats = field(default_factory=LatencyStats)
    steps: int = 0
    stale: int = 0
    stale_in_a_row: int = 0
    grasp_retries: int = 0  # the most grasp retries the runtime made (agent.grasp_retry)
    tail: endings.Tail = field(default_factory=endings.Tail)  # the last steps: Outcome.ended
    dropped_events: int = 0
    fault: LoopFault | None = None
    channels: list[Latest[Any]] = field(default_factory=list)

    def now(self) -> float:
        return time.monotonic()

    def emit(self, event: Event) -> None:
        """Record the event, then send it; a record that fails degrades to a Fault event."""
        failed: RecordingError | None = None
        if self.recorder is not None:
            try:
                self.recorder.write_event(event)
            except RecordingError as exc:
                failed = exc
        self._deliver(event)
        if failed is not None:
            self._deliver(self.fault_event("record", str(failed), fatal=False))

    def fault_event(self, where: str, message: str, *, fatal: bool = True) -> Fault:
        return Fault(episode=self.id, t=self.now(), where=where, message=message, fatal=fatal)

    def _deliver(self, event: Event) -> None:
        if self.observer is not None:
            self.observer.event(event)
        if not self.send.put(event):
            self.dropped_events += 1  # a consumer this slow must not stall the control loop

    def outcome(self, ending: Ending, stop: str, frames: Iterable[Latest[Any]]) -> Outcome:
        """The episode's Outcome: how it ended, its counters, and what every channel dropped."""
        dropped = {ch.name: ch.dropped for ch in [*frames, *self.channels]}
        if self.dropped_events:
            dropped["events"] = self.dropped_events
        return Outcome(
            status=ending.status,
            success=ending.success,
            reason=ending.reason,
            steps=self.steps,
            duration_s=round(self.now() - self.started, 3),
            stale_actions=self.stale,
            dropped=dropped,
            latency_ms=self.stats.summary(),
            stop=stop,
            grasp_retries=self.grasp_retries,
            ended=endings.ending(ending.status, ending.reason, self.tail),
        )

    def step(self, tick: CommandTick) -> None:
        """The command loop's report of one action: counters, latency stats, a Step event."""
        self.steps = tick.record.index
        self.stale += 0 if tick.record.executed else 1
        self.stale_in_a_row = 0 if tick.record.executed else self.stale_in_a_row + 1
        if self.stale_in_a_row == STALE_IN_A_ROW_WARNING:
            self.emit(self.fault_event("command", _too_slow(tick), fatal=False))
        latency = {
            "perceive": round(tick.action.perceive_ms, 2),
            "act": round(tick.action.act_ms, 2),
            "command": round(tick.command_ms, 2),
            "total": round(tick.total_ms, 2),
        }
        self.stats.add_all(latency)
        self.stats.add("command_lateness", tick.lateness_ms)
        move = tick.action.action.move
        retry = int(tick.action.action.info.get("grasp_retry", 0))
        self.grasp_retries = max(self.grasp_retries, retry)
        gap = float(tick.state.gripper_width)
        x, y, z = (float(v) for v in tick.state.ee_pos[:3])
        self.tail.add((x, y, z), bool(tick.action.action.gripper_closed), gap)
        self.emit(
            Step(
                episode=self.id,
                t=self.now(),
                index=tick.record.index,
                executed=tick.record.executed,
                move=(float(move[0]), float(move[1]), float(move[2])),
                gripper_closed=bool(tick.action.action.gripper_closed),
                ee_pos=(x, y, z),
                latency_ms=latency,
                grasp_retry=retry,
                gripper_width=gap,
            )
        )

    def detections(
        self,
        task: TaskSpec,
        percept: Percept,
        ms: float,
        *,
        redetection: bool,
        only: list[tuple[str, str]] | None = None,
    ) -> None:
        """A Detected event per (view, role) the task uses (only `only`'s, when given)."""
        labels = {"pick": task.pick or "", "place": task.place or ""}
        for view, roles in percept.lost.items():  # only the roles this task uses
            for role in roles:
                box = percept.boxes[view][role]
                if only is not None and (view, role) not in only:
                    continue
                self.emit(
                    Detected(
                        episode=self.id,
                        t=self.now(),
                        view=view,
                        role=role,
                        label=labels[role],
                        box=box.as_tuple() if box else None,
                        redetection=redetection,
                        latency_ms=round(ms, 2),
                    )
                )

    def held(self, reason: str | None) -> None:
        """The command loop began holding the arm for a missing target (or, None, stopped).

        The start is a non-fatal Fault ("target"), so the log shows why the arm stood still; the
        end is only logged (the Steps that follow show the arm moving again).
        """
        if reason is None:
            log.info("target seen again, the arm moves on")
            return
        message = f"{reason}; the arm holds while it is re-detected"
        log.warning("holding the arm", reason=message)
        self.emit(self.fault_event("target", message, fatal=False))

    def regained(self, task: TaskSpec, percept: Percept, roles: list[tuple[str, str]]) -> None:
        """The perceive loop found lost targets again: their re-detection's Detected events."""
        ms = percept.redetect_ms  # the detector's time, also when it ran beside the loop
        self.detections(task, percept, ms, redetection=True, only=roles)


def _too_slow(tick: CommandTick) -> str:
    return (
        f"{STALE_IN_A_ROW_WARNING} actions in a row came too late (the last "
        f"{tick.total_ms:.0f} ms after its frame, past runtime.action_deadline_s) and were "
        "refused: the arm holds. Perception and the policy are too slow for the deadline on this "
        "machine: use lighter models (`python -m agent bench loop` shows where the time goes) "
        "or, accepting that the arm then acts on older frames, raise the deadline with --set "
        "runtime.action_deadline_s=SECONDS"
    )


@dataclass
class Channels:
    """The latest-wins slots joining an episode's loops (frames are the runtime's own)."""

    percepts: ThreadFed[PerceptMsg]  # fed on the perception thread, taken on the policy's
    actions: Latest[ActionMsg]
    states: ThreadFed[RobotState]  # read on the policy's thread
    steps: Latest[StepRecord]
    verdicts: Latest[Verdict]  # success checks made on the robot's thread after a move

    @classmethod
    def open(cls, ep: Episode) -> Channels:
        channels = cls(
            ThreadFed("percepts"),
            Latest("actions"),
            ThreadFed("robot_state"),
            Latest("steps"),
            Latest("verdicts"),
        )
        ep.channels += [channels.percepts, channels.actions]  # their drops reach the outcome
        return channels


@dataclass(frozen=True)
class Loop:
    """One row of an episode's table: a name, the coroutine, and how it ends the episode.

    `ends`: its return ends the episode (the supervisor). `sink`: its failure is reported and
    the episode goes on (the recorder); any other loop's failure ends the episode as a fault.
    """

    name: str
    run: Callable[[], Awaitable[Any]]
    ends: bool = False
    sink: bool = False


async def run_loops(loops: list[Loop], ep: Episode) -> None:
    """Run the table until a loop that `ends` returns or one fails (then `ep.fault` says why)."""

    async def guarded(loop: Loop) -> None:
        try:
            await loop.run()
        except anyio.get_cancelled_exc_class():
            raise
        except Exception as exc:
            if loop.sink:
                message = f"{describe(exc)}; recording stopped, the task goes on"
                log.error("sink failed", sink=loop.name, error=message, exc_info=True)
                ep.emit(ep.fault_event(loop.name, message, fatal=False))
                return
            ep.fault = LoopFault(loop.name, describe(exc))
            log.error(
                "loop failed",
                loop=loop.name,
                error=ep.fault.message,
                exc_info=not isinstance(exc, EXPECTED),
            )
            tg.cancel_scope.cancel()
            return
        if loop.ends:
            tg.cancel_scope.cancel()

    async with anyio.create_task_group() as tg:
        for loop in loops:
            tg.start_soon(guarded, loop, name=loop.name)
