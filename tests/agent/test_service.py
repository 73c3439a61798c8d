"""The reference service for real: uvicorn on 127.0.0.1, an HTTP client, the MuJoCo world.

One server is shared by the whole module (opening the world is the slow part); the tests that run
tasks each wait for theirs to finish, so they may run in any order. The robot and the policy are
the real sim ones, wrapped to count safe stops and to crash on demand.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
import numpy as np
import pytest
import uvicorn
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from agent import SCHEMA_VERSION, parse_event
from agent.backends import Parts, build_parts
from agent.config import Config
from agent.service import MAX_BODY_BYTES, Service, TaskBody, create_app
from tests.agent.test_runtime import CountingRobot
from tests.agent.test_task_sequence import SEQUENCE, check_sequence
from tests.conftest import make_config

TOKEN = "s3cret-token-for-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
REQUEST = "I spilled the milk"
# Another task, for the tests that only need one running (each task starts from the reset scene).
OTHER = "I am thirsty"


class SwitchablePolicy:
    """The real policy, raising while `crash` is set (a model that fails mid-episode)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name = inner.name
        self.crash = False

    def reset(self, task: Any) -> None:
        self.inner.reset(task)

    def act(self, observation: Any) -> Any:
        if self.crash:
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return self.inner.act(observation)


@dataclass
class Served:
    url: str
    app: Service
    robot: CountingRobot | None = None
    policy: SwitchablePolicy | None = None

    def build(self, config: Config) -> Parts:
        parts = build_parts(config)
        self.robot = CountingRobot(parts.robot)
        self.policy = SwitchablePolicy(parts.policy)
        parts.robot, parts.policy = self.robot, self.policy
        return parts

    def ee(self) -> np.ndarray:
        assert self.robot is not None
        return self.robot.state().ee_pos.copy()  # the sim world's reads take its lock


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The service on a free loopback port, in a thread of its own, for the whole module."""
    # a generous time budget: the success test must not fail because the machine is busy
    config = make_config(tmp_path_factory.mktemp("service"), "runtime.max_duration_s=150")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    served = Served(url=f"http://127.0.0.1:{sock.getsockname()[1]}", app=None)  # type: ignore[arg-type]
    served.app = create_app(config, token=TOKEN, parts_factory=served.build)
    server = uvicorn.Server(uvicorn.Config(served.app, lifespan="on", log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not server.started:
        assert thread.is_alive(), f"service did not start: {served.app.startup_error}"
        assert time.monotonic() < deadline, "service did not start within 120 s"
        time.sleep(0.05)
    yield served
    stops = served.robot.stops if served.robot else 0
    server.should_exit = True
    thread.join(timeout=30)
    sock.close()
    assert not thread.is_alive(), "the service did not shut down"
    assert served.robot is not None and served.robot.stops > stops, "closing stops the arm"


@pytest.fixture(scope="module")
def client(served: Served) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served.url, headers=AUTH, timeout=30) as client:
        yield client


# --------------------------------------------------------------------- helpers
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


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text (0 when absent, as Prometheus reads it)."""
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    sample = f"{name}{{{want}}}" if labels else name
    for line in text.splitlines():
        key, _, value = line.rpartition(" ")
        if key == sample:
            return float(value)
    return 0.0


def start(client: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/tasks", json=body)
    assert response.status_code == 202, response.text
    task = response.json()
    assert response.headers["location"] == f"/tasks/{task['id']}"
    return task


# --------------------------------------------------------------------- no runtime work
def test_health_needs_no_token(served: Served) -> None:
    response = httpx.get(f"{served.url}/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "busy": False}


ROUTES = [
    ("GET", "/metrics"),
    ("GET", "/schema"),
    ("GET", "/tasks"),
    ("POST", "/tasks"),
    ("GET", "/tasks/abc"),
    ("GET", "/tasks/abc/events"),
    ("POST", "/tasks/abc/cancel"),
    ("GET", "/no/such/route"),
]


@pytest.mark.parametrize(("method", "path"), ROUTES)
@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "missing bearer token"),
        ({"Authorization": "Bearer wrong"}, "invalid bearer token"),
        ({"Authorization": f"Basic {TOKEN}"}, "invalid bearer token"),
        ({"Authorization": "Bearer"}, "invalid bearer token"),
    ],
)
def test_every_other_route_needs_the_token(
    served: Served, method: str, path: str, headers: dict[str, str], message: str
) -> None:
    response = httpx.request(method, f"{served.url}{path}", headers=headers, json={"request": "x"})
    assert response.status_code == 401
    assert message in response.json()["error"]
    assert response.headers["www-authenticate"].startswith("Bearer")


TOO_LARGE = json.dumps({"request": "a" * (MAX_BODY_BYTES + 1)}).encode()


@pytest.mark.parametrize(
    ("content", "status", "fragment"),
    [
        (b"", 400, "body is empty"),
        (b"I spilled the milk", 400, "not valid JSON"),
        (b'{"request": "I spilled', 400, "not valid JSON"),
        (b"\xff\xfe\x00garbage", 400, "not valid JSON"),
        (b"[" * 10_000, 400, "not valid JSON"),  # deep enough to hit Python's recursion limit
        (TOO_LARGE, 413, "larger than"),
        (b"[]", 422, "JSON object"),
        (b'"I spilled the milk"', 422, "JSON object"),
        (b"{}", 422, "request: Field required"),
        (b'{"text": "I spilled the milk"}', 422, "request"),
        (b'{"request": ""}', 422, "request is empty"),
        (b'{"request": "  \\n\\t "}', 422, "request is empty"),
        (b'{"request": 5}', 422, "request: Input should be a valid string"),
        (b'{"request": null}', 422, "request: Input should be a valid string"),
        (b'{"request": "I spilled the milk", "record": "yes"}', 422, "record"),
        (b'{"request": "I spilled the milk", "x": 1}', 422, "unknown field 'x'"),
        (json.dumps({"request": "milk " * 500}).encode(), 422, "the limit is 2000"),
    ],
)
def test_bad_bodies_get_a_clear_4xx_and_start_nothing(
    client: httpx.Client, content: bytes, status: int, fragment: str
) -> None:
    response = client.post("/tasks", content=content)
    assert response.status_code == status, response.text
    assert fragment in response.json()["error"]
    assert client.get("/health").json()["busy"] is False


def test_a_runs_folder_that_cannot_be_written_is_503_and_starts_nothing(
    served: Served, client: httpx.Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A task that asks to be recorded is refused at once when its run folder cannot be made."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    config = served.app.config
    output = config.output.model_copy(update={"runs_dir": blocker / "runs"})
    monkeypatch.setattr(served.app, "config", config.model_copy(update={"output": output}))
    stops = served.robot.stops if served.robot else 0
    response = client.post("/tasks", json={"request": REQUEST, "record": True})
    assert response.status_code == 503, response.text
    assert response.json()["error"].startswith("cannot write the run folder ")
    assert client.get("/health").json()["busy"] is False
    assert served.robot is not None and served.robot.stops == stops  # nothing moved


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)


@settings(max_examples=60, deadline=None)
@given(
    body=st.binary(max_size=300)
    | JSON.map(lambda v: json.dumps(v).encode())
    | st.dictionaries(st.sampled_from(["request", "record", "x"]), JSON).map(
        lambda v: json.dumps(v).encode()
    )
)
def test_nothing_a_client_sends_starts_a_task_or_breaks_the_service(
    served: Served, client: httpx.Client, body: bytes
) -> None:
    try:
        spec = TaskBody.model_validate_json(body)
        assume(not spec.request.strip())  # a valid request would (rightly) start a task
    except ValueError:
        pass
    response = client.post("/tasks", content=body)
    assert response.status_code in (400, 413, 422), response.text
    assert response.json()["error"]
    assert served.app.board.busy is False


def test_a_large_body_without_content_length_is_cut_off(client: httpx.Client) -> None:
    chunks = iter([b'{"request": "', b"a" * MAX_BODY_BYTES, b'"}'])
    response = client.post("/tasks", content=chunks)  # chunked transfer: no Content-Length
    assert response.status_code == 413


def test_unknown_task_and_method(client: httpx.Client) -> None:
    for response in (client.get("/tasks/nope"), client.post("/tasks/nope/cancel")):
        assert response.status_code == 404
        assert "no task 'nope'" in response.json()["error"]
    assert client.delete("/tasks").status_code == 405


def test_schema_lists_every_event_kind(client: httpx.Client) -> None:
    body = client.get("/schema").json()
    assert body["schema_version"] == SCHEMA_VERSION
    mapping = body["event"]["discriminator"]["mapping"]
    assert set(mapping) == {"started", "reasoned", "detected", "step", "fault", "finished"}


def test_metrics_are_prometheus_text(client: httpx.Client) -> None:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    sample = re.compile(r'^([a-z_]+)(\{[a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*\})? (\S+)$')
    families = set()
    for line in response.text.splitlines():
        if line.startswith("# TYPE"):
            families.add(line.split()[2])
        elif not line.startswith("#"):
            match = sample.match(line)
            assert match, line
            float(match.group(4))
    assert families >= {
        "agent_tasks_total",
        "agent_tasks_started_total",
        "agent_tasks_rejected_total",
        "agent_task_running",
        "agent_steps_total",
        "agent_control_rate_hz",
        "agent_faults_total",
        "agent_stage_latency_seconds",
        "agent_event_listeners",
    }
    info = metric(response.text, "agent_info", profile="sim", schema_version=str(SCHEMA_VERSION))
    assert info == 1


# --------------------------------------------------------------------- tasks on the sim
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
    faults = metric(client.get("/metrics").text, "agent_faults_total", where="act")
    assert served.policy is not None
    served.policy.crash = True
    try:
        task = start(client, {"request": REQUEST})
        async with httpx.AsyncClient(base_url=served.url, timeout=60) as aclient:
            with anyio.fail_after(60):
                got = await listen(aclient, task["id"])
    finally:
        served.policy.crash = False
    fault = next(e for e in got.events if e.kind == "fault")
    assert fault.where == "act" and "CUDA error" in fault.message
    assert got.events[-1].outcome.status == "fault"
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
