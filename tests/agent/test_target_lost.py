"""Scenario 12 of issue 12: the task's object lost mid-episode, through the Runtime and `run`.

The object really leaves every camera's view: after some moves of the arm, the simulated world
holds it 20 m away and 5 m up through its own API (`World.teleport` at every state read: a person
taking the sponge away and holding it; dropped off the table, the judge would end the episode
first with "fell off the table"), and ground-truth detection, the tracker and the re-detection
back-off all run for real. Nothing is faked; the robot is wrapped only to make that move and to
note when the arm was told to hold or stop (and where it was then). The three checks of issue 12
section 2 come from tests/faults_helpers.py: (a) the one-line cause, (b) the arm held, then
stopped, before the episode's events ended, (c) a complete run folder.
"""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agent import Fault, Finished, Runtime, Step
from agent.backends import Parts, build_parts
from agent.loops.target import HOLD_GRACE_S, TargetWatch
from models.perception import Percept
from models.types import Box, Skill, TaskSpec
from tests.conftest import make_config
from tests.faults_helpers import check_run_folder, run_with_fault, stopped_before

LOST_S = 3.0
AWAY = np.array([20.0, 20.0, 5.0])  # far off and above the table: in no camera's view


class TakenAway:
    """The real sim robot; from its `n`-th move on the world holds `name` out of every view (with
    `back_after_s`, puts it back where it was that long later). Notes each `hold` and `stop`
    call: the time and the end effector's position then."""

    def __init__(
        self, inner: Any, world: Any, name: str, n: int, back_after_s: float | None = None
    ) -> None:
        self.inner, self.world, self.name, self.n = inner, world, name, n
        self.back_after_s = back_after_s
        self.moves = 0
        self.away = False
        self.taken_at: float | None = None
        self.origin: np.ndarray | None = None
        self.holds: list[tuple[float, np.ndarray]] = []
        self.stops: list[tuple[float, np.ndarray]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def _ee(self) -> np.ndarray:
        return np.array(self.inner.state().ee_pos[:3])

    def move(self, delta: Any, gripper_closed: bool) -> None:
        self.moves += 1
        self.inner.move(delta, gripper_closed)
        if self.moves == self.n:
            self.origin = self.world.object_position(self.name).copy()
            self.taken_at = time.monotonic()
            self.away = True
            self.world.teleport(self.name, self.origin + AWAY)

    def state(self) -> Any:
        if self.away and self.taken_at is not None and self.origin is not None:
            back = self.back_after_s is not None
            if back and time.monotonic() - self.taken_at >= self.back_after_s:  # type: ignore[operator]
                self.away = False
                self.world.teleport(self.name, self.origin)
            else:  # held up there: at rest again at every read (10 Hz and more)
                self.world.teleport(self.name, self.origin + AWAY)
        return self.inner.state()

    def hold(self) -> None:
        self.inner.hold()
        self.holds.append((time.monotonic(), self._ee()))

    def stop(self) -> None:
        self.inner.stop()
        self.stops.append((time.monotonic(), self._ee()))


class Counted:
    """A real model whose `method` calls are timed into `times` (the detector's tries)."""

    def __init__(self, inner: Any, method: str, times: list[float]) -> None:
        self.inner, self.method, self.times = inner, method, times

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if name != self.method:
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            self.times.append(time.monotonic())
            return attr(*args, **kwargs)

        return call


def taking_away(
    arm: dict[str, TakenAway],
    n: int,
    back_after_s: float | None = None,
    calls: dict[str, list[float]] | None = None,
) -> Any:
    """A parts wrapper: the robot becomes a TakenAway over the real one, moving the sponge;
    with `calls`, the times of every detector call and every perception step are noted."""

    def wrap(parts: Parts) -> None:
        world = parts.judge.world  # type: ignore[union-attr]
        arm["robot"] = TakenAway(parts.robot, world, "sponge", n, back_after_s)
        parts.robot = arm["robot"]  # type: ignore[assignment]
        if calls is None:
            return
        real = parts.new_pipeline

        def new_pipeline() -> Any:
            pipeline = real()
            pipeline.detector = Counted(pipeline.detector, "detect", calls.setdefault("detect", []))
            step = pipeline.step

            def counted_step(frames: Any) -> Any:
                calls.setdefault("step", []).append(time.monotonic())
                return step(frames)

            pipeline.step = counted_step  # type: ignore[method-assign]
            return pipeline

        parts.new_pipeline = new_pipeline

    return wrap


@pytest.mark.asyncio
@pytest.mark.parametrize("mode", ["on_arrival", "fixed_rate"])
async def test_a_target_taken_out_of_view_holds_the_arm_then_ends_as_target_lost(
    tmp_path: Path, mode: str
) -> None:
    """The sponge leaves both views after 10 moves: after the grace the arm is told to hold (one
    non-fatal "target" Fault says why) and no move is sent any more while perception keeps
    re-detecting with its back-off (capped at 4 lost frames here); after runtime.target_lost_s
    the episode ends as a failure "target lost: sponge not seen for N s", the arm stopped before
    Finished, the run folder whole (video included). Both command schedules."""
    config = make_config(
        tmp_path,
        "output.video=true",
        f"runtime.target_lost_s={LOST_S}",
        f'runtime.command_mode="{mode}"',
        "models.redetect_max_interval=4",
    )
    arm: dict[str, TakenAway] = {}
    calls: dict[str, list[float]] = {}
    folder = tmp_path / "run"
    events, spy = await run_with_fault(
        config, folder, taking_away(arm, 10, calls=calls), timeout_s=60
    )
    robot = arm["robot"]
    assert robot.taken_at is not None, "the sponge was taken mid-episode"
    finished = events[-1]
    assert isinstance(finished, Finished)
    outcome = finished.outcome
    # (a) the cause in one line
    assert (outcome.status, outcome.success, outcome.stop) == ("failure", False, "ok")
    assert outcome.reason.startswith("target lost: sponge not seen for "), outcome.reason
    assert "\n" not in outcome.reason
    lost_for = float(outcome.reason.split(" for ")[1].removesuffix(" s"))
    assert LOST_S <= lost_for < LOST_S + 1.5
    faults = [e for e in events if isinstance(e, Fault)]
    assert [(f.where, f.fatal) for f in faults] == [("target", False)], faults
    assert faults[0].message.startswith("sponge not seen in any camera view for ")
    assert faults[0].message.endswith("; the arm holds while it is re-detected")
    # (b) held after the grace, no move sent after it, then stopped before Finished
    hold_t, hold_ee = robot.holds[0]
    # the grace counts from the last percept that showed the sponge, which may have been
    # done up to one camera frame before the sponge was taken (a fresh-clone CI run measured
    # the hold 0.998 s after the taking)
    frame_s = 1.0 / config.sim.camera_fps
    assert HOLD_GRACE_S - frame_s <= hold_t - robot.taken_at < HOLD_GRACE_S + 1.0
    steps = [e for e in events if isinstance(e, Step)]
    assert steps and steps[-1].t < faults[0].t, "no step (no move) after the hold began"
    assert robot.moves == sum(s.executed for s in steps)
    stopped_before(events, spy)
    stop_t, stop_ee = robot.stops[0]
    assert stop_t - hold_t >= LOST_S - HOLD_GRACE_S - 0.5
    assert np.linalg.norm(stop_ee - hold_ee) < 0.01, "the arm stood still while held"
    # re-detection went on through the hold, backed off: tries at 1, 2, 4, 8, 12 ... lost frames
    # per view and lost role (measured: 18 calls in 31 lost frames, 2 views; without the back-off
    # it is one call per view and frame, 62)
    lost_steps = sum(t > robot.taken_at for t in calls["step"])
    tries = sum(t > robot.taken_at for t in calls["detect"])
    assert sum(t > hold_t for t in calls["detect"]) >= 2, "re-detecting while held"
    bound = 2 * 2 * (lost_steps // 4 + 3)  # views x roles (the place may be lost in one view too)
    assert lost_steps >= 10 and tries <= min(bound, 2 * lost_steps - 1), (lost_steps, tries)
    # (c) the run folder
    summary = check_run_folder(folder, events)
    assert summary["outcome"]["reason"] == outcome.reason


@pytest.mark.asyncio
async def test_a_target_that_comes_back_releases_the_hold_and_the_task_goes_on(
    tmp_path: Path,
) -> None:
    """The sponge leaves both views for 2 s (past the grace, short of target_lost_s) and is put
    back: the arm holds, perception finds it again (its tracker or the re-detection), the hold
    ends (moves are sent again) and the expert finishes the task: a good episode is not ended by
    a passing loss."""
    config = make_config(tmp_path, f"runtime.target_lost_s={LOST_S + 2}")
    arm: dict[str, TakenAway] = {}
    events, _ = await run_with_fault(
        config, tmp_path / "run", taking_away(arm, 10, back_after_s=2.0), timeout_s=90
    )
    robot = arm["robot"]
    assert robot.holds, "the arm held while the sponge was away"
    faults = [e for e in events if isinstance(e, Fault)]
    assert [(f.where, f.fatal) for f in faults] == [("target", False)], faults
    assert any(isinstance(e, Step) and e.executed and e.t > faults[0].t for e in events)
    outcome = events[-1].outcome  # type: ignore[attr-defined]
    assert (outcome.status, outcome.success) == ("success", True), outcome.reason


def test_target_lost_in_a_cli_run_is_exit_code_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Through `run` as the user meets it: a lost target is the task failing (the arm moved,
    the scene changed), so exit 1 with the cause on the first line, not 3 ("nothing to do").
    The Runtime `run` builds is given the same taking-away robot (`agent.runtime.Runtime`,
    looked up when `run` starts); everything else is the CLI's own path."""
    import agent.cli
    import agent.runtime

    arm: dict[str, TakenAway] = {}
    wrap = taking_away(arm, 10)

    def parts_factory(config: Any) -> Parts:
        parts = build_parts(config)
        wrap(parts)
        return parts

    monkeypatch.setattr(agent.runtime, "Runtime", partial(Runtime, parts_factory=parts_factory))
    runs = tmp_path / "runs"
    code = agent.cli.main(
        [
            "run", "I spilled the milk", "--quiet", "--runs-dir", str(runs),
            "--set", "models.policy=expert", "--set", "models.reasoner=rules",
            "--set", "sim.image_width=96", "--set", "sim.image_height=96",
            "--set", f"runtime.target_lost_s={LOST_S}", "--no-video",
        ]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 1, out
    assert out.splitlines()[0].startswith("FAILURE: target lost: sponge not seen for "), out
    assert out.splitlines()[0].endswith("(target lost)"), out  # Outcome.ended, agent/endings.py
    check_run_folder(next(runs.iterdir()))


def _percept(boxes: dict[str, dict[str, Box | None]]) -> Percept:
    return Percept(boxes, {}, {}, 0.0, 0, {}, {})


def test_the_watch_counts_only_a_target_no_view_shows() -> None:
    """One view losing the sponge is not missing (the other still guides the policy); missing
    in both for the grace holds, for target_lost_s ends; seen again, both clear."""
    task = TaskSpec(request="r", skill=Skill.PLACE_NEAR, pick="sponge", place="user")
    watch = TargetWatch.for_task(task, lost_after_s=3.0, now=0.0)
    box = Box(1, 1, 9, 9)
    watch.see(_percept({"front": {"pick": None, "place": box}, "side": {"pick": box}}), 0.5)
    assert watch.hold_reason(5.0) is None and watch.lost_reason(5.0) is None
    watch.see(_percept({"front": {"pick": None, "place": box}, "side": {"pick": None}}), 1.0)
    assert watch.hold_reason(0.5 + HOLD_GRACE_S - 0.01) is None
    assert watch.hold_reason(0.5 + HOLD_GRACE_S) == (
        f"sponge not seen in any camera view for {HOLD_GRACE_S:.1f} s"
    )
    assert watch.lost_reason(3.4) is None
    assert watch.lost_reason(3.5) == "target lost: sponge not seen for 3.0 s"
    watch.see(_percept({"front": {"pick": box, "place": box}, "side": {"pick": None}}), 3.6)
    assert watch.hold_reason(9.0) is None and watch.lost_reason(9.0) is None
