"""The body of one episode, as the Runtime runs it: its start, then its table of loops.

The start: the world's task start (a reset, or the world carried over), the reasoner, the first
frames after the start and the detector on them. Then the episode itself: perceive, act, command
and supervise (and the recorder as a sink) as a table of loops over latest-wins channels
(`agent.episode.run_loops`). Every blocking call of the start goes through `_stage`, which turns a
failure into a `LoopFault` naming the stage. The Runtime owns what outlives episodes (the drivers,
the capture loops and their frame channels, the worker threads) and the ending (safe stop,
`Finished`); this module only runs what happens in between.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, TypeVar

import anyio
import structlog

from agent.backends import Parts
from agent.channels import ChannelClosed, ThreadFed
from agent.config import Config
from agent.episode import Channels, Episode, Loop, LoopFault, run_loops
from agent.errors import EXPECTED, describe
from agent.events import Reasoned, Started, WorldStart
from agent.loops.act import act_loop
from agent.loops.capture import give_up_s
from agent.loops.command import command_loop
from agent.loops.perceive import perceive_loop, perception_deadline_s
from agent.loops.supervise import Ending, supervise_loop
from agent.loops.target import TargetWatch
from agent.messages import PerceptMsg
from agent.observe import observe_loop
from agent.recording import RunRecorder
from agent.workers import Workers
from drivers.base import Frame, TaskStart
from drivers.cameras.pairing import FrameSet, frameset
from models.perception import ObjectNotInView, Percept
from models.types import TaskSpec

log = structlog.get_logger("agent.runtime")  # the runtime's log: this is its episodes' body
T = TypeVar("T")

STALE_START_FRAMES = 3  # frames from before a task's reset skipped at most, per view


class EpisodeRunner:
    """Runs episodes on what the Runtime shares with them: its frame channels and worker threads.

    Worker threads per device: model calls share the CPU/GPU (`model_workers`: the policy and
    the start's reasoner and detector), the robot takes one call at a time (`robot_workers`,
    also the safe stop's), and so does the judge. Perception has a thread of its own
    (`perception_workers`), which also waits for the frames (agent.loops.perceive).
    """

    def __init__(
        self,
        config: Config,
        frames: Mapping[str, ThreadFed[Frame]],
        *,
        model_workers: Workers,
        robot_workers: Workers,
        judge_workers: Workers,
        perception_workers: Workers,
    ) -> None:
        self.config = config
        self._frames = frames
        self._model_workers = model_workers
        self._perception_workers = perception_workers
        self._robot_workers = robot_workers
        self._judge_workers = judge_workers
        rt = config.runtime
        # how long to wait for a camera's next frame: past the capture loop's giving up, so that
        # a dead camera ends an episode with the capture loop's reason, not a bare timeout
        self._frame_timeout = give_up_s(rt.camera_timeout_s, rt.camera_failures) + 1.0

    async def run(
        self, request: str, parts: Parts, ep: Episode, recorder: RunRecorder | None
    ) -> Ending:
        """One episode from its task start to its ending, or the LoopFault that ended it."""
        rt = self.config.runtime
        objects = parts.scene_objects()

        def started(world: WorldStart | None) -> None:
            ep.emit(
                Started(
                    episode=ep.id,
                    t=ep.now(),
                    request=request,
                    profile=self.config.profile,
                    scene_objects=objects,
                    world=world,
                )
            )

        # every task starts from a known world: reset (or explicitly carried over), and the judge
        # remembers nothing of earlier tasks
        try:
            start: TaskStart = await self._stage(
                "world", parts.begin_task, robot=True, what="task start"
            )
        except LoopFault:
            started(None)
            raise
        world = WorldStart(reset=start.reset, scene=start.scene, seed=start.seed)
        started(world)
        if recorder is not None:
            recorder.set_world(world)
        t0 = ep.now()
        task: TaskSpec = await self._stage(
            "reasoner", parts.reasoner.reason, request, objects, timeout=rt.reason_timeout_s
        )
        reason_ms = (ep.now() - t0) * 1e3
        ep.stats.add("reason", reason_ms)
        ep.emit(
            Reasoned(
                episode=ep.id,
                t=ep.now(),
                request=request,
                skill=task.skill.value,
                pick=task.pick,
                place=task.place,
                rationale=task.rationale,
                backend=parts.reasoner.name,
                latency_ms=round(reason_ms, 2),
            )
        )
        if not task.feasible:
            return Ending("infeasible", False, task.rationale or "nothing in view fits the request")
        skills = getattr(parts.policy, "skills", None)  # optional: see models.tpm.policy
        if skills is not None and task.skill not in skills:
            return Ending(
                "infeasible",
                False,
                f"the {parts.policy.name} policy cannot do {task.skill.value} "
                f"(its skills: {', '.join(sorted(skills))})",
            )

        first = await self._fresh_frames(after=start.t if start.reset else 0.0)
        pipeline = parts.new_pipeline()
        t0 = ep.now()
        try:
            percept: Percept = await self._stage(
                "detector", pipeline.start, task, first.frames, timeout=rt.stage_timeout_s
            )
        except ObjectNotInView as exc:
            return Ending("not_found", False, str(exc))
        detect_ms = (ep.now() - t0) * 1e3
        ep.stats.add("detect", detect_ms)
        ep.detections(task, percept, detect_ms, redetection=False)
        if recorder is not None:
            recorder.set_task(task)
        try:
            await anyio.to_thread.run_sync(parts.policy.reset, task)
            return await self._control(task, parts, ep, pipeline, percept, first, recorder)
        finally:
            pipeline.close()  # a background re-detection still running is dropped

    async def _control(
        self,
        task: TaskSpec,
        parts: Parts,
        ep: Episode,
        pipeline: Any,
        percept: Percept,
        first: FrameSet,
        recorder: RunRecorder | None,
    ) -> Ending:
        """The episode as a table of loops over its channels; how it ended, or its LoopFault."""
        rt = self.config.runtime
        ch = Channels.open(ep)
        ch.percepts.publish(PerceptMsg(percept, first.t_capture, ep.now(), 0.0))
        state = await self._stage("robot", parts.robot.state, robot=True, what="robot state read")
        ch.states.publish(state)
        watch = TargetWatch.for_task(task, rt.target_lost_s, ep.now())
        ending: list[Ending] = []

        async def supervise() -> None:
            ending.append(
                await supervise_loop(
                    task,
                    parts.judge,
                    ch.steps,
                    rate_hz=rt.supervise_hz,
                    max_steps=rt.max_steps,
                    max_duration_s=rt.max_duration_s,
                    settle_s=rt.settle_s,
                    workers=self._judge_workers,
                    call_timeout=rt.stage_timeout_s,
                    lost=watch.lost_reason,
                    verdicts=ch.verdicts,
                )
            )

        perceive = partial(
            perceive_loop,
            self._frames,
            pipeline,
            ch.percepts,
            workers=self._perception_workers,
            frame_timeout=self._frame_timeout,
            stage_timeout=rt.stage_timeout_s,
            first=percept,
            on_regained=partial(ep.regained, task),
            watch=watch,
            view_sync_s=rt.view_sync_s,
            on_demand=rt.perceive_on_demand,
        )
        act = partial(
            act_loop,
            ch.percepts,
            ch.states,
            parts.policy,
            ch.actions,
            workers=self._model_workers,
            # past perception's own deadline, so that perception names its own failures
            percept_timeout=perception_deadline_s(
                self._frame_timeout, rt.view_sync_s, rt.stage_timeout_s
            )
            + 1.0,
            stage_timeout=rt.stage_timeout_s,
        )
        command = partial(
            command_loop,
            ch.actions,
            ch.states,
            ch.steps,
            parts.robot,
            rate_hz=rt.control_hz,
            deadline_s=rt.action_deadline_s,
            workers=self._robot_workers,
            call_timeout=rt.stage_timeout_s,
            max_steps=rt.max_steps,
            on_tick=ep.step,
            mode=rt.command_mode,
            min_interval_s=rt.min_command_interval_s,
            hold_while=watch.hold_reason,
            on_hold=ep.held,
            check=partial(parts.judge.verdict, task) if parts.judge is not None else None,
            check_period_s=1.0 / rt.supervise_hz,
            verdicts=ch.verdicts,
        )
        loops = [
            Loop("perceive", perceive),
            Loop("act", act),
            Loop("command", command),
            Loop("supervise", supervise, ends=True),
        ]
        if recorder is not None:
            loops.append(Loop("record", partial(recorder.record_loop, ch.percepts), sink=True))
        if ep.observer is not None:
            observe = partial(observe_loop, ch.percepts, ep.observer)
            loops.append(Loop("observe", observe, sink=True))
        await run_loops(loops, ep)
        if ep.fault is not None:
            raise ep.fault
        return ending[0]

    async def _fresh_frames(self, after: float = 0.0) -> FrameSet:
        """The first frame of every view captured after this call and at or after `after`.

        Never a stale startup frame, nor one showing the world before the task's start (a frame
        being rendered while the world was reset arrives after the reset with an older stamp).
        """
        timeout = self._frame_timeout
        frames: dict[str, Frame] = {}
        try:
            for name, channel in self._frames.items():
                current = channel.peek()
                version = current[0] if current else 0
                for _ in range(STALE_START_FRAMES + 1):  # bounded: a camera clock may lag
                    version, frame = await channel.wait_newer(version, timeout)
                    if frame.t_capture >= after:
                        break
                frames[name] = frame
        except ChannelClosed as exc:
            raise LoopFault("capture", exc.reason) from None
        except TimeoutError:
            raise LoopFault("capture", f"no camera frame within {timeout:g} s") from None
        return frameset(frames)

    async def _stage(
        self,
        where: str,
        fn: Callable[..., T],
        *args: Any,
        timeout: float | None = None,
        robot: bool = False,
        what: str | None = None,
    ) -> T:
        """One blocking call of a stage, a model's (in the model threads) or the robot's (in its
        one thread; reads and task starts): any failure ends the episode as a LoopFault naming
        `where`, except ObjectNotInView, which is an ending. Timeout: the stage timeout."""
        try:
            workers = self._robot_workers if robot else self._model_workers
            return await workers.run(
                fn,
                *args,
                timeout=self.config.runtime.stage_timeout_s if timeout is None else timeout,
                what=what or where,
            )
        except ObjectNotInView:
            raise
        except Exception as exc:
            log.error(
                "stage failed", stage=where, error=str(exc), exc_info=not isinstance(exc, EXPECTED)
            )
            raise LoopFault(where, describe(exc)) from None
