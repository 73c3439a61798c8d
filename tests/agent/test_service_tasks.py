"""Tasks on the reference service for real: uvicorn on 127.0.0.1, an HTTP client, the MuJoCo world.

One server (tests.service_helpers.serve_sim) is shared by the whole module; the tests each wait
for their task to finish, so they may run in any order. The robot and the policy are the real sim
ones, wrapped to count safe stops and to crash on demand. Listeners follow a task's events over
server-sent events (`listen`): every listener gets every event, late and reconnecting ones too.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
import numpy as np
import pytest

from agent import SCHEMA_VERSION, Step, parse_event
from tests.agent.test_task_sequence import SEQUENCE, check_sequence
from tests.faults_helpers import StopSpy, check_run_folder, fatal_fault
from tests.service_helpers import (
    AUTH,
    OTHER,
    REQUEST,
    Served,
    metric,
    start,
)


# --------------------------------------------------------------------- listening to a task
@dataclass
class Received:
    """What one listener got from GET /tasks/{id}/events."""

    ids: list[int] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)
    data: list[str] = field(default_factory=list)

    @property
    def events(self) -> list[Any]:
        return [parse_event(d) for d in self.data]


async def _sse(lines: AsyncIterator[str]) -> AsyncIterator[tuple[int, str, str]]:
    """(id, event, data) per server-sent event; comments (heartbeats) are skipped."""
    fields: dict[str, str] = {}
    async for line in lines:
        if not line:
            if "data" in fields:
                yield int(fields.get("id", "-1")), fields.get("event", "message"), fields["data"]
            fields = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")


async def listen(
    client: httpx.AsyncClient,
    task_id: str,
    *,
    headers: dict[str, str] | None = None,
    seen: anyio.Event | None = None,
    until_step: int | None = None,
) -> Received:
    """Follow a task's events to the end of the stream (or until Step `until_step`).

    `seen` is set once a Step arrives, so a test can start late listeners mid-episode.
    """
    got = Received()
    url = f"/tasks/{task_id}/events"
    async with client.stream("GET", url, headers={**AUTH, **(headers or {})}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        async for ident, kind, data in _sse(response.aiter_lines()):
            got.ids.append(ident)
            got.kinds.append(kind)
            got.data.append(data)
            if kind == "step":
                if seen is not None:
                    seen.set()
                if until_step is not None and json.loads(data)["index"] >= until_step:
                    break
    return got


@pytest.mark.asyncio
async def test_task_succeeds_and_every_listener_gets_every_event(
    served: Served, client: httpx.Client
) -> None:
    before = client.get("/metrics").text
    task = start(client, {"request": REQUEST, "record": True})
    assert task["state"] == "running" and task["request"] == REQUEST
    limits = httpx.Limits(max_connections=40)
    async with httpx.AsyncClient(base_url=served.url, timeout=180, limits=limits) as aclient:
        received: list[Received] = []
        seen = anyio.Event()

        async def one(wait: anyio.Event | None) -> None:
            if wait is not None:
                await wait.wait()  # a late listener: joins mid-episode
            received.append(await listen(aclient, task["id"], seen=seen))

        with anyio.fail_after(170):
            async with anyio.create_task_group() as tg:
                for i in range(20):
                    tg.start_soon(one, seen if i % 2 else None)
        assert len(received) == 20
        first = received[0]
        assert all(r == first for r in received), "every listener gets the same events"
        assert first.ids == list(range(len(first.ids)))
        assert first.kinds[0] == "started" and first.kinds[-1] == "finished"
        events = first.events
        assert [e.kind for e in events] == first.kinds
        assert all(e.schema_version == SCHEMA_VERSION for e in events)
        outcome = events[-1].outcome
        assert outcome.status == "success", outcome.reason
        steps = [e for e in events if e.kind == "step"]
        assert len(steps) > 20

        # a listener after the end gets the whole history; a reconnecting one resumes
        assert await listen(aclient, task["id"]) == first
        tail = await listen(aclient, task["id"], headers={"Last-Event-ID": str(first.ids[-3])})
        assert tail.ids == first.ids[-2:] and tail.data == first.data[-2:]

    state = client.get(f"/tasks/{task['id']}").json()
    assert state["state"] == "finished" and state["events"] == len(events)
    assert state["episode"] == events[0].episode
    assert state["outcome"]["status"] == "success"
    assert client.get("/tasks").json()["tasks"][0]["id"] == task["id"]
    summary = json.loads((Path(state["run_dir"]) / "summary.json").read_text())
    assert summary["outcome"]["status"] == "success"

    after = client.get("/metrics").text

    def delta(name: str, **labels: str) -> float:
        return metric(after, name, **labels) - metric(before, name, **labels)

    assert delta("agent_tasks_total", status="success") == 1
    assert delta("agent_tasks_started_total") == 1
    assert delta("agent_steps_total", executed="true") + delta(
        "agent_steps_total", executed="false"
    ) == len(steps)
    for stage in ("perceive", "act", "command", "total"):
        assert delta("agent_stage_latency_seconds_count", stage=stage) == len(steps)
    assert delta("agent_stage_latency_seconds_count", stage="reason") == 1
    assert delta("agent_stage_latency_seconds_count", stage="detect") == 1
    target = served.app.config.runtime.control_hz
    assert 0.5 * target < metric(after, "agent_control_rate_hz") < 1.5 * target
    assert metric(after, "agent_task_running") == 0
    assert metric(after, "agent_event_listeners") == 0


@pytest.mark.asyncio
async def test_busy_is_409_and_cancel_stops_the_arm_and_returns_the_outcome(
    served: Served, client: httpx.Client
) -> None:
    rejected = metric(client.get("/metrics").text, "agent_tasks_rejected_total")
    task = start(client, {"request": OTHER})
    async with httpx.AsyncClient(base_url=served.url, timeout=60) as aclient:
        with anyio.fail_after(60):
            await listen(aclient, task["id"], until_step=5)  # the arm is moving now
        assert client.get("/health").json() == {"status": "ok", "busy": True}

        busy = client.post("/tasks", json={"request": REQUEST})
        assert busy.status_code == 409
        assert busy.json()["running"] == task["id"]
        assert "one robot, one task" in busy.json()["error"]

        assert served.robot is not None
        stops = served.robot.stops
        cancelled = client.post(f"/tasks/{task['id']}/cancel")
        assert cancelled.status_code == 200, cancelled.text
        state = cancelled.json()
        assert state["state"] == "finished"
        assert state["outcome"]["status"] == "cancelled"
        assert state["outcome"]["success"] is None
        assert served.robot.stops == stops + 1, "cancelling stops the arm"
        held = served.ee()
        await anyio.sleep(0.6)
        assert np.linalg.norm(served.ee() - held) < 0.005, "the arm holds after a cancel"

        history = await listen(aclient, task["id"])  # the stream ends with the outcome
        assert history.kinds[-1] == "finished"
        assert history.events[-1].outcome.status == "cancelled"

    again = client.post(f"/tasks/{task['id']}/cancel")
    assert again.status_code == 409 and "already finished (cancelled)" in again.json()["error"]
    assert client.get("/health").json()["busy"] is False
    after = client.get("/metrics").text
    assert metric(after, "agent_tasks_rejected_total") == rejected + 1
    assert metric(after, "agent_tasks_total", status="cancelled") >= 1


@pytest.mark.asyncio
async def test_a_crashing_model_is_a_fault_and_the_service_carries_on(
    served: Served, client: httpx.Client
) -> None:
    """Scenario 6 of issue 12 where a service user meets it: the policy crashes mid-episode. (a)
    one Fault from the act loop naming the error, and a fault outcome; (b) the arm told to stop
    after the last step and before Finished; (c) the task's run folder complete. The service
    stays healthy and takes the next task."""
    faults = metric(client.get("/metrics").text, "agent_faults_total", where="act")
    assert served.policy is not None and served.robot is not None
    served.policy.crash_at = 6
    try:
        task = start(client, {"request": REQUEST, "record": True})
        async with httpx.AsyncClient(base_url=served.url, timeout=60) as aclient:
            with anyio.fail_after(60):
                events = (await listen(aclient, task["id"])).events
    finally:
        served.policy.crash_at = None
    assert any(isinstance(e, Step) for e in events), "the fault came mid-episode"
    this_task = StopSpy(None)
    this_task.stop_times = [t for t in served.robot.stop_times if t >= events[0].t]
    fault = fatal_fault(events, this_task, "act")
    assert fault.message == "RuntimeError: CUDA error: an illegal memory access was encountered"
    state = client.get(f"/tasks/{task['id']}").json()
    check_run_folder(Path(state["run_dir"]), events)
    after = client.get("/metrics").text
    assert metric(after, "agent_faults_total", where="act") == faults + 1
    assert client.get("/health").json() == {"status": "ok", "busy": False}
    # the runtime survived: the next task is accepted and runs (cancelled at once)
    task = start(client, {"request": OTHER})
    assert client.post(f"/tasks/{task['id']}/cancel").status_code in (200, 409)
    state = client.get(f"/tasks/{task['id']}").json()
    assert state["state"] == "finished" and state["outcome"]["status"] != "fault"


@pytest.mark.asyncio
async def test_a_sequence_of_tasks_is_each_judged_from_its_own_start(
    served: Served, client: httpx.Client
) -> None:
    """Milk, milk again, sponge on the tea box, one after another on the one service."""
    runs = []
    async with httpx.AsyncClient(base_url=served.url, timeout=180) as aclient:
        for request, *_ in SEQUENCE:
            task = start(client, {"request": request})
            with anyio.fail_after(170):
                runs.append((await listen(aclient, task["id"])).events)
            state = client.get(f"/tasks/{task['id']}").json()
            assert state["outcome"]["status"] == runs[-1][-1].outcome.status
    check_sequence(runs)
