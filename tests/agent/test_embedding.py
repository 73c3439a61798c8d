"""The library API as an embedder uses it: the event schema, cancel, queueing, sync code, trio.

Runs against the real MuJoCo world (small images, no video); `runtime.max_steps` keeps the runs
that only need to reach an end short.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import pytest
from pydantic import BaseModel

import agent
from agent import (
    SCHEMA_VERSION,
    BlockingRuntime,
    Event,
    Finished,
    Outcome,
    Runtime,
    RuntimeBusy,
    Step,
    events,
    parse_event,
    run_request,
)
from tests.conftest import SMALL, make_config

ROOT = Path(__file__).resolve().parents[2]
REQUEST = "I spilled the milk"

# The shape of every event at each schema version. Changing an event (a field added, removed,
# retyped or made optional) must bump SCHEMA_VERSION and add the new shape here, so embedders that
# store events.jsonl or stream them can tell the versions apart.
COMMON = {"schema_version": "int?", "episode": "str", "t": "float", "kind": "Literal[...]?"}
SHAPES: dict[int, dict[str, dict[str, str]]] = {
    1: {
        "Started": {"request": "str", "profile": "str", "scene_objects": "list[str]"},
        "Reasoned": {
            "request": "str",
            "skill": "str",
            "pick": "str | None",
            "place": "str | None",
            "rationale": "str",
            "backend": "str",
            "latency_ms": "float",
        },
        "Detected": {
            "view": "str",
            "role": "Literal['pick', 'place']",
            "label": "str",
            "box": "tuple[float, float, float, float] | None",
            "redetection": "bool?",
            "latency_ms": "float",
        },
        "Step": {
            "index": "int",
            "executed": "bool",
            "move": "tuple[float, float, float]",
            "gripper_closed": "bool",
            "ee_pos": "tuple[float, float, float]",
            "latency_ms": "dict[str, float]",
        },
        "Fault": {"where": "str", "message": "str", "fatal": "bool?"},
        "Finished": {"outcome": "Outcome"},
        "Outcome": {
            "status": "Literal['success', 'failure', 'infeasible', 'not_found', 'cancelled', "
            "'fault']",
            "success": "bool | None",
            "reason": "str",
            "steps": "int?",
            "duration_s": "float?",
            "stale_actions": "int?",
            "dropped": "dict[str, int]?",
            "latency_ms": "dict[str, dict[str, float]]?",
        },
    }
}

# 2: Started says which world the task starts in (reset to its scene, or carried over)
SHAPES[2] = {
    **SHAPES[1],
    "Started": {**SHAPES[1]["Started"], "world": "agent.events.WorldStart | None?"},
    "WorldStart": {"reset": "bool", "scene": "str", "seed": "int | None?"},
}

# 3: Outcome says how the safe stop that ends every execution went ("ok", "failed: ...", ...)
SHAPES[3] = {
    **SHAPES[2],
    "Outcome": {**SHAPES[2]["Outcome"], "stop": "str | None?"},
}

# 4: the runtime's grasp retry (which steps it drove, how many retries an episode took), the
# fingers' measured gap at each step, and how an unsuccessful episode ended (agent.endings)
SHAPES[4] = {
    **SHAPES[3],
    "Step": {**SHAPES[3]["Step"], "grasp_retry": "int?", "gripper_width": "float | None?"},
    "Outcome": {**SHAPES[3]["Outcome"], "grasp_retries": "int?", "ended": "str | None?"},
}


def shape(model: type[BaseModel]) -> dict[str, str]:
    """field -> type as text, "?" marking optional fields; the event-common fields left out."""

    def name(annotation: Any) -> str:
        if isinstance(annotation, type):
            return annotation.__name__
        return str(annotation).replace("typing.", "")

    out = {}
    for field, info in model.model_fields.items():
        text = name(info.annotation) + ("" if info.is_required() else "?")
        if field == "kind":
            text = "Literal[...]?"
        if COMMON.get(field) != text:
            out[field] = text
    return out


def test_public_api_is_exported() -> None:
    for name in agent.__all__:
        assert getattr(agent, name) is not None, name
    assert {"Runtime", "load_config", "Outcome", "RuntimeBusy", "BlockingRuntime"} <= set(
        agent.__all__
    )


def test_event_schema_is_versioned_and_stable() -> None:
    models: list[type[BaseModel]] = [events.Started, events.Reasoned, events.Detected]
    models += [events.Step, events.Fault, events.Finished, events.Outcome, events.WorldStart]
    assert SCHEMA_VERSION in SHAPES, "a new SCHEMA_VERSION needs its shape in SHAPES"
    assert {m.__name__: shape(m) for m in models} == SHAPES[SCHEMA_VERSION], (
        "an event changed shape: bump agent.events.SCHEMA_VERSION and add the new shape"
    )
    schema = events.EVENT_ADAPTER.json_schema()
    assert set(schema["discriminator"]["mapping"]) == {
        "started",
        "reasoned",
        "detected",
        "step",
        "fault",
        "finished",
    }


def test_events_round_trip_through_json() -> None:
    outcome = Outcome(status="cancelled", success=None, reason="cancelled", dropped={"x": 2})
    samples: list[Event] = [
        events.Started(episode="e", t=1.0, request=REQUEST, profile="sim", scene_objects=["a"]),
        events.Started(
            episode="e",
            t=1.0,
            request=REQUEST,
            profile="sim",
            scene_objects=["a"],
            world=events.WorldStart(reset=True, scene="MuJoCo scene, seed 0", seed=0),
        ),
        events.Detected(
            episode="e", t=2.0, view="front", role="pick", label="sponge", box=None, latency_ms=3
        ),
        Step(
            episode="e",
            t=3.0,
            index=1,
            executed=True,
            move=(0.0, 0.01, 0.0),
            gripper_closed=False,
            ee_pos=(0.4, 0.0, 0.3),
            latency_ms={"total": 80.5},
        ),
        events.Fault(episode="e", t=4.0, where="act", message="boom"),
        Finished(episode="e", t=5.0, outcome=outcome),
    ]
    for event in samples:
        line = event.to_json()
        assert json.loads(line)["schema_version"] == SCHEMA_VERSION
        assert parse_event(line) == event


# --------------------------------------------------------------------- on the sim
@pytest.mark.asyncio
async def test_cancel_returns_the_outcome_and_queue_mode_waits_its_turn(tmp_path: Path) -> None:
    config = make_config(tmp_path, "runtime.when_busy=queue", "runtime.max_steps=5")
    got: dict[str, list[Event]] = {"first": [], "second": []}
    order: list[str] = []
    async with Runtime(config) as runtime:
        assert runtime.cancel() is False  # nothing runs yet
        first_started = anyio.Event()

        async def consume(name: str, cancel_at: int | None) -> None:
            async for event in runtime.execute(REQUEST):
                got[name].append(event)
                order.append(f"{name}:{event.kind}")
                first_started.set()
                if cancel_at is not None and isinstance(event, Step) and event.index == cancel_at:
                    assert runtime.cancel() is True  # the stream goes on to the outcome

        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                tg.start_soon(consume, "first", 2)
                await first_started.wait()
                tg.start_soon(consume, "second", None)  # queued, not refused
        robot = runtime.parts.robot
        held = robot.state().ee_pos.copy()
        await anyio.sleep(0.5)
        assert np.linalg.norm(robot.state().ee_pos - held) < 0.005
    first, second = got["first"][-1], got["second"][-1]
    assert isinstance(first, Finished) and first.outcome.status == "cancelled"
    assert first.outcome.success is None and first.outcome.steps >= 2
    assert isinstance(second, Finished) and second.outcome.status == "failure"
    assert order.index("first:finished") < order.index("second:started")


def test_run_request_from_plain_sync_code(tmp_path: Path) -> None:
    outcome = run_request(make_config(tmp_path, "runtime.max_steps=5"), REQUEST)
    assert isinstance(outcome, Outcome)
    assert outcome.status == "failure" and "step budget" in outcome.reason
    assert outcome.steps >= 5


def test_blocking_runtime_under_trio_cancels_from_another_thread(tmp_path: Path) -> None:
    with BlockingRuntime(make_config(tmp_path), backend="trio") as runtime:
        robot = runtime.runtime.parts.robot

        def holds_still() -> bool:
            held = robot.state().ee_pos.copy()
            time.sleep(0.5)
            return bool(np.linalg.norm(robot.state().ee_pos - held) < 0.005)

        # a stop button in another thread: the loop goes on to the cancelled outcome
        received = []
        for event in runtime.execute(REQUEST):
            received.append(event)
            if isinstance(event, Step) and event.index == 3:
                threading.Thread(target=runtime.cancel).start()
        assert isinstance(received[-1], Finished)
        assert received[-1].outcome.status == "cancelled"
        assert holds_still()

        # leaving the loop early cancels too, and returns once the arm has stopped
        with pytest.raises(RuntimeBusy):  # meanwhile, the robot is taken
            for event in runtime.execute(REQUEST):
                if isinstance(event, Step):
                    runtime.run("I am thirsty")
        assert not runtime.busy
        assert holds_still()


@pytest.mark.parametrize(
    ("script", "code"), [("embed.py", 1), ("embed_sync.py", 0)], ids=["async", "sync"]
)
def test_examples_run(tmp_path: Path, script: str, code: int) -> None:
    overrides = [*SMALL, "runtime.max_steps=5", f'output.runs_dir="{tmp_path}"']
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / script), REQUEST, *overrides],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == code, proc.stderr
    lines = proc.stdout.splitlines()
    if script == "embed.py":
        parsed = [parse_event(line) for line in lines]  # logs go to stderr, not into the output
        assert parsed[0].kind == "started"
        assert isinstance(parsed[-1], Finished) and parsed[-1].outcome.status == "failure"
    else:
        assert any(line.startswith("step ") for line in lines) and "failure" in lines
