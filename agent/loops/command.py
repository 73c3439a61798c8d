"""command: sends fresh actions to the robot, refuses stale ones, and publishes the robot's state.

Two schedules, chosen by `runtime.command_mode`:

- `on_arrival` (the sim profile's): an action is sent as soon as it arrives, but no sooner than
  `min_interval_s` after the previous command (rate-limited, not clocked). An action then waits
  only for the robot, never for a clock tick; with a 10 Hz clock that wait averaged half a period.
- `fixed_rate` (the default, and the Franka profiles'): a tick every `1 / rate_hz` on absolute
  deadlines, executing the newest unseen action if one came since the last tick (the paper's and
  most ROS controllers' shape). Against franky-sim slowed by a busy CPU (0.2x real time), acting
  on arrival failed the expert's pick-and-place where the clock succeeded (one run each), so the
  Franka profiles keep the clock until on_arrival is validated with franky's preempting motions.

In both, the robot state is read and published even when no action comes (proprioception for
act, the target watch's hold): every tick in `fixed_rate`; in `on_arrival` after
`IDLE_READ_PERIODS / rate_hz` without an action. Not after one period: at the camera's rate an
action arrives about once a period, so a refresh timed to the period raced it, and half the steps
(measured in `bench loop`) paid a second robot call and a wake-up of the event loop for a state
that the coming move re-read a few ms later anyway. And an action whose source frame is
older than `deadline_s` is not executed: the arm holds (diffusion_policy's rule: late actions are
dropped, not executed). With no new action the driver keeps moving to its last target.

`hold_while(now)` (the target watch's `hold_reason`, agent.loops.target) is asked after each
state read: while it gives a reason (the task's object missing from every view past a grace), the
arm is told to hold once and every action is dropped unsent and uncounted; `on_hold` hears the
reason when the hold begins and None when it ends.

`check` (the success check, the supervisor's `judge.verdict` for the task) rides on a fresh
action's robot call at most every `check_period_s`: right after the move, on the robot's thread,
its verdict published on `verdicts`. The supervisor takes it from there and calls the judge
itself only when no step brought one (the arm holding, the budget spent, the fixed-rate
schedule). Measured in `bench loop`: a check of its own cost the event loop's thread a timer
wake-up and a worker hand-off, about 0.15 ms a check (0.07 ms a control step at 5 Hz).

Times are `time.monotonic()`, the clock the frames' `t_capture` is read on, so an action's age is
one subtraction; only the fixed-rate schedule's ticks follow the event loop's clock, as its sleeps
do (uvloop's is cached per loop iteration at 1 ms resolution, trio's has an offset of its own).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import anyio
import numpy as np

from agent.channels import Latest, LatestReader
from agent.messages import ActionMsg, StepRecord
from agent.workers import Workers
from drivers.base import Robot, RobotState
from drivers.sim.success import Verdict

CommandMode = Literal["on_arrival", "fixed_rate"]

#: `on_arrival`: the robot state is re-read after this many control periods without an action
IDLE_READ_PERIODS = 1.5


@dataclass(frozen=True, slots=True)
class CommandTick:
    """What happened to one received action, with everything telemetry needs.

    `lateness_ms`: how long the command started after it could have: after its clock tick in
    `fixed_rate` mode, after the action's arrival (or the end of the rate limit) in `on_arrival`.
    """

    record: StepRecord
    action: ActionMsg
    state: RobotState
    command_ms: float
    total_ms: float
    lateness_ms: float


@dataclass(slots=True)
class _Commander:
    """The body both schedules share: read and publish the state, execute or refuse an action."""

    states: Latest[RobotState]
    steps: Latest[StepRecord]
    robot: Robot
    deadline_s: float
    workers: Workers
    call_timeout: float
    max_steps: int
    on_tick: Callable[[CommandTick], None]
    hold_while: Callable[[float], str | None] | None = None
    on_hold: Callable[[str | None], None] | None = None
    check: Callable[[], Verdict] | None = None
    check_period_s: float = 0.2
    verdicts: Latest[Verdict] | None = None
    index: int = 0
    holding: str | None = None
    next_check: float = 0.0

    @property
    def budget_left(self) -> bool:
        return self.index < self.max_steps

    async def _call(self, fn: Callable[..., object], *args: object, what: str) -> None:
        await self.workers.run(fn, *args, timeout=self.call_timeout, what=what)

    async def read_state(self) -> RobotState:
        state = await self.workers.run(
            self.robot.state, timeout=self.call_timeout, what="robot state read"
        )
        self.states.publish(state)
        await self._check_hold()
        return state

    def _hold_asked(self, now: float) -> str | None:
        """Why `hold_while` asks the arm to hold at `now`, or None."""
        return self.hold_while(now) if self.hold_while is not None else None

    async def _check_hold(self) -> None:
        """Enter (the arm told to hold, once) or leave the hold `hold_while` asks for."""
        reason = self._hold_asked(time.monotonic())
        if (reason is None) == (self.holding is None):
            return  # no change (a hold keeps its first reason)
        if reason is not None:
            await self._call(self.robot.hold, what="hold")
        self.holding = reason
        if self.on_hold is not None:
            self.on_hold(reason)

    async def execute(self, msg: ActionMsg, state: RobotState, lateness_ms: float) -> None:
        """Send `msg` (or hold, when it is stale); after the budget's last step the arm holds.

        While `holding` the action is dropped: not sent, not a step.
        """
        if self.holding is not None:
            return
        t0 = time.monotonic()
        executed = t0 - msg.t_capture <= self.deadline_s
        if executed:
            await self._call(
                self.robot.move, msg.action.move, msg.action.gripper_closed, what="robot move"
            )
        else:
            await self._call(self.robot.hold, what="hold")
        await self._count(msg, state, executed, t0, lateness_ms)

    async def read_and_execute(self, msg: ActionMsg, lateness_ms: float) -> None:
        """`read_state` then `execute`, with a fresh action's state read and move in one robot
        call: one thread hop fewer between the action's arrival and the arm (`on_arrival`).
        A stale action or a hold (asked just before the call) takes the two-call path."""
        t0 = time.monotonic()
        holding = self.holding or self._hold_asked(t0)
        if holding is not None or t0 - msg.t_capture > self.deadline_s:
            await self.execute(msg, await self.read_state(), lateness_ms)
            return
        check = self._check_due(t0)
        state, t_sent, verdict = await self.workers.run(
            self._read_then_move,
            msg.action.move,
            msg.action.gripper_closed,
            check,
            timeout=self.call_timeout,
            what="robot state read and move" + (" (and the success check)" if check else ""),
        )
        self.states.publish(state)
        if verdict is not None and self.verdicts is not None:
            self.verdicts.publish(verdict)
        await self._count(msg, state, True, t0, lateness_ms, t_sent)

    def _check_due(self, now: float) -> Callable[[], Verdict] | None:
        """The success check, when one is due at `now` (and counted as done)."""
        if self.check is None or now < self.next_check:
            return None
        self.next_check = now + self.check_period_s
        return self.check

    def _read_then_move(
        self, move: np.ndarray, gripper_closed: bool, check: Callable[[], Verdict] | None
    ) -> tuple[RobotState, float, Verdict | None]:
        """On the robot's thread: the state the step is recorded with, the move and when it was
        sent, then (when due) the success check."""
        state = self.robot.state()
        self.robot.move(move, gripper_closed)
        t_sent = time.monotonic()
        return state, t_sent, check() if check is not None else None

    async def _count(
        self,
        msg: ActionMsg,
        state: RobotState,
        executed: bool,
        t0: float,
        lateness_ms: float,
        t_sent: float | None = None,
    ) -> None:
        """The step is done: count it (the budget's last one holds the arm), publish, report.
        `t_sent`: when the command left (on the robot's thread), else now."""
        t_sent = time.monotonic() if t_sent is None else t_sent
        self.index += 1
        if self.index == self.max_steps:
            await self._call(self.robot.hold, what="hold")
        record = StepRecord(index=self.index, executed=executed, done=msg.action.done, t=t_sent)
        self.steps.publish(record)
        self.on_tick(
            CommandTick(
                record=record,
                action=msg,
                state=state,
                command_ms=(t_sent - t0) * 1e3,
                total_ms=(t_sent - msg.t_capture) * 1e3,
                lateness_ms=lateness_ms,
            )
        )


async def command_loop(
    actions: Latest[ActionMsg],
    states: Latest[RobotState],
    steps: Latest[StepRecord],
    robot: Robot,
    *,
    rate_hz: float,
    deadline_s: float,
    workers: Workers,
    call_timeout: float,
    max_steps: int,
    on_tick: Callable[[CommandTick], None],
    mode: CommandMode = "on_arrival",
    min_interval_s: float = 0.0,
    hold_while: Callable[[float], str | None] | None = None,
    on_hold: Callable[[str | None], None] | None = None,
    check: Callable[[], Verdict] | None = None,
    check_period_s: float = 0.2,
    verdicts: Latest[Verdict] | None = None,
) -> None:
    """Run the chosen schedule until cancelled.

    The step budget is enforced here, where steps happen: after `max_steps` actions the arm
    holds and no further action is taken, whenever the supervisor gets to end the episode.
    """
    commander = _Commander(
        states,
        steps,
        robot,
        deadline_s,
        workers,
        call_timeout,
        max_steps,
        on_tick,
        hold_while,
        on_hold,
        check,
        check_period_s,
        verdicts,
    )
    if mode == "fixed_rate":
        await _fixed_rate(commander, actions.reader(), 1.0 / rate_hz)
    elif mode == "on_arrival":
        idle = IDLE_READ_PERIODS / rate_hz
        await _on_arrival(commander, actions.reader(), idle, min_interval_s)
    else:
        raise ValueError(f"unknown command mode {mode!r} (on_arrival or fixed_rate)")


async def _fixed_rate(
    commander: _Commander, reader: LatestReader[ActionMsg], period: float
) -> None:
    """Ticks on absolute deadlines, so one slow tick does not shift the whole schedule; a tick
    that is more than a period late is skipped."""
    next_tick = anyio.current_time()
    while True:
        lateness_ms = max(0.0, anyio.current_time() - next_tick) * 1e3
        state = await commander.read_state()
        msg = reader.poll() if commander.budget_left else None
        if msg is not None:
            await commander.execute(msg, state, lateness_ms)
        next_tick += period
        now = anyio.current_time()
        if next_tick < now - period:
            next_tick = now  # overrun: skip missed ticks instead of bursting to catch up
        await anyio.sleep_until(next_tick)


async def _on_arrival(
    commander: _Commander,
    reader: LatestReader[ActionMsg],
    state_period: float,
    min_interval_s: float,
) -> None:
    """Wait for an action (re-reading the state after each `state_period` without one), keep to the
    minimum interval, then send the newest action: one that arrived during the wait replaces the
    older (latest wins)."""
    last_sent = -float("inf")
    await commander.read_state()
    while True:
        if not commander.budget_left:
            await anyio.sleep(state_period)
            await commander.read_state()
            continue
        try:
            msg = await reader.next(timeout=state_period)
        except TimeoutError:
            await commander.read_state()
            continue
        now = time.monotonic()
        ready = max(now, last_sent + min_interval_s)
        if ready > now:
            await anyio.sleep(ready - now)
            msg = reader.poll() or msg
        last_sent = time.monotonic()
        lateness_ms = max(0.0, last_sent - max(ready, msg.t_done)) * 1e3
        await commander.read_and_execute(msg, lateness_ms)
