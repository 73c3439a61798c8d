"""Faults through the Runtime (issue 12, section 2, scenarios 6 and 7): a detector, tracker,
segmenter or policy that raises mid-episode, and a policy that overruns once the arm has moved.

Every test checks (a) the cause in one line, (b) the arm told to stop before the episode's events
ended, (c) a complete run folder: see tests/faults_helpers.py. The models are the real ones,
wrapped to raise or slow down from their n-th call.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agent import Step
from agent.backends import Parts
from tests.conftest import make_config
from tests.faults_helpers import (
    VIDEO,
    check_run_folder,
    fatal_fault,
    run_with_fault,
    stopped_before,
)

# ----------------------------------------------------------------------------- models (scenario 6)
CRASH = "CUDA error: an illegal memory access was encountered"


class CrashingAfter:
    """A real model whose `method` raises on the `n`-th call counted in `calls` (shared by the
    trackers one factory makes): a model crashing mid-episode, e.g. on a GPU fault."""

    def __init__(self, inner: Any, method: str, n: int, calls: list[int]) -> None:
        self.inner, self.method, self.n, self.calls = inner, method, n, calls

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if name != self.method:
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls[0] += 1
            if self.calls[0] >= self.n:
                raise RuntimeError(CRASH)
            return attr(*args, **kwargs)

        return call


def crash_model(model: str, n: int) -> Callable[[Parts], None]:
    """A parts wrapper making `model` crash on its `n`-th call; the rest stays real."""
    calls = [0]

    def wrap(parts: Parts) -> None:
        if model == "policy":
            parts.policy = CrashingAfter(parts.policy, "act", n, calls)  # type: ignore[assignment]
            return
        real = parts.new_pipeline

        def new_pipeline() -> Any:
            pipeline = real()
            if model == "detector":
                pipeline.detector = CrashingAfter(pipeline.detector, "detect", n, calls)
            elif model == "segmenter":
                pipeline.segmenter = CrashingAfter(pipeline.segmenter, "segment", n, calls)
            else:
                factory = pipeline.tracker_factory
                pipeline.tracker_factory = lambda: CrashingAfter(factory(), "update", n, calls)
            return pipeline

        parts.new_pipeline = new_pipeline

    return wrap


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("model", "where"),
    [
        ("detector", "perceive"),
        ("tracker", "perceive"),
        ("segmenter", "perceive"),
        ("policy", "act"),
    ],
)
async def test_a_model_that_crashes_mid_episode_is_a_fault_after_the_arm_stopped(
    tmp_path: Path, model: str, where: str
) -> None:
    """Scenario 6: the detector (run on every frame here, so that it runs mid-episode), a
    tracker, the segmenter or the policy raises after some steps: one Fault from the loop it
    ran in, naming the error, the arm stopped before Finished, the run folder whole.

    The crash comes on the sixth frame whatever the model: per frame of the two views, a model
    is called once per view, and the trackers once per view and target (4 calls). How many
    steps the act loop has sent by then depends on the machine's load (CI once saw 2 before a
    tracker crash on the third frame), so mid-episode means: at least one step went out."""
    every_frame = f"models.detect_every_frame={str(model == 'detector').lower()}"
    config = make_config(tmp_path, VIDEO, every_frame)
    folder = tmp_path / "run"
    calls_per_frame = {"tracker": 4, "policy": 1}.get(model, 2)
    events, spy = await run_with_fault(config, folder, crash_model(model, 6 * calls_per_frame))
    assert any(isinstance(e, Step) for e in events), "the fault came mid-episode"
    fault = fatal_fault(events, spy, where)
    assert fault.message == f"RuntimeError: {CRASH}"
    check_run_folder(folder, events)


# ---------------------------------------------------------------------------- overrun (scenario 7)
class SlowingPolicy:
    """The real expert, taking `delay_s` per call from its `n`-th call on: a policy that overruns
    its deadline once the episode is under way (a GPU shared with another job, thermal limits)."""

    def __init__(self, inner: Any, n: int, delay_s: float) -> None:
        self.inner, self.n, self.delay_s, self.calls = inner, n, delay_s, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def act(self, observation: Any) -> Any:
        self.calls += 1
        if self.calls >= self.n:
            time.sleep(self.delay_s)
        return self.inner.act(observation)


@pytest.mark.asyncio
async def test_a_policy_that_overruns_after_the_arm_moved_has_its_actions_refused(
    tmp_path: Path,
) -> None:
    """Scenario 7: 6 timely actions move the arm, then each policy call takes 2 s against a
    1 s action deadline: every later action is refused as stale and the arm holds where it
    was; the outcome counts them, the arm is stopped before Finished, the folder whole."""
    config = make_config(tmp_path, "runtime.max_steps=12", "runtime.action_deadline_s=1.0")

    def wrap(parts: Parts) -> None:
        parts.policy = SlowingPolicy(parts.policy, n=7, delay_s=2.0)  # type: ignore[assignment]

    folder = tmp_path / "run"
    events, spy = await run_with_fault(config, folder, wrap)
    steps = [e for e in events if isinstance(e, Step)]
    assert len(steps) == 12
    executed = [s.executed for s in steps]
    assert sum(executed[:6]) >= 4 and executed[6:] == [False] * 6, executed
    moved = np.linalg.norm(np.subtract(steps[5].ee_pos, steps[0].ee_pos))
    assert moved > 0.02, "the arm moved before the overrun"
    held = [s.ee_pos for s in steps[7:]]
    assert np.ptp(np.array(held), axis=0).max() < 0.01, "the arm held while actions were stale"
    outcome = events[-1].outcome  # type: ignore[attr-defined]
    assert (outcome.status, outcome.stop) == ("failure", "ok")
    assert outcome.stale_actions == executed.count(False) >= 6
    assert outcome.latency_ms["act"]["max"] >= 2000
    stopped_before(events, spy)
    check_run_folder(folder, events)


class HangingAfter:
    """A real segmenter whose calls block from the `n`-th on until `release` is set: a model
    that hangs mid-episode (a wedged GPU driver). The test sets `release` when it ends, so that
    no thread outlives it."""

    def __init__(self, inner: Any, n: int, release: threading.Event) -> None:
        self.inner, self.n, self.release, self.calls = inner, n, release, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def segment(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        if self.calls >= self.n:
            self.release.wait(60)
        return self.inner.segment(*args, **kwargs)


@pytest.mark.asyncio
async def test_a_perception_model_that_hangs_mid_episode_is_a_fault_within_its_deadline(
    tmp_path: Path,
) -> None:
    """The segmenter hangs on the perception thread after a few frames: the pipeline call's
    deadline (the stage timeout, watched from the loop) ends the episode as a fault naming
    perception, the arm stopped first, instead of an episode that waits for ever."""
    release = threading.Event()

    def wrap(parts: Parts) -> None:
        real = parts.new_pipeline

        def new_pipeline() -> Any:
            pipeline = real()
            pipeline.segmenter = HangingAfter(pipeline.segmenter, 12, release)
            return pipeline

        parts.new_pipeline = new_pipeline

    config = make_config(
        tmp_path,
        VIDEO,
        "runtime.stage_timeout_s=1.0",
        "runtime.camera_timeout_s=0.5",
        "runtime.camera_failures=1",
    )
    try:
        t0 = time.monotonic()
        events, spy = await run_with_fault(config, tmp_path / "run", wrap, timeout_s=60)
        took = time.monotonic() - t0
    finally:
        release.set()
    assert any(isinstance(e, Step) for e in events), "the hang came mid-episode"
    fault = fatal_fault(events, spy, "perceive")
    assert fault.message == "perception did not finish within 1 s", fault.message
    assert took < 45, "bounded by the perception call's deadline, not the test's"
