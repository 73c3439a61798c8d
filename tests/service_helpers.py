"""What the tests of the HTTP service share: a real uvicorn server on 127.0.0.1, and its checks.

The service tests are split by theme (tests/agent/test_service_*.py) and each module opens its
own server, so the server, the bearer token, the limits of the hardened app and the small
request helpers live here once: `serve_in_thread` serves an app in a thread of its own (as
tests/agent/test_health.py does too), `serve_sim` is the plain service on the sim world with its
robot counting safe stops and its policy crashable, `serve_hardened` is one with small limits a
test can reach.
"""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
import pytest
import uvicorn

from agent.backends import Parts, build_parts
from agent.config import Config
from agent.service import Service, create_app
from tests.conftest import make_config
from tests.faults_helpers import StopSpy, agent_proc

TOKEN = "hardening-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
REQUEST = "I spilled the milk"
# Another task, for the tests that only need one running (each task starts from the reset scene).
OTHER = "I am thirsty"
# the hardened app's limits (`serve_hardened`): small, so that a test can reach them
MAX_LISTENERS = 2
MAX_REQUESTS = 3
MAX_FAILURES = 3
WINDOW_S = 2.0
KEEP_RUNS = 2


class SwitchablePolicy:
    """The real policy, raising from the `crash_at`-th call of an episode on, while `crash_at`
    is set (a model that fails mid-episode, e.g. on a GPU fault)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name = inner.name
        self.crash_at: int | None = None
        self.calls = 0

    def reset(self, task: Any) -> None:
        self.calls = 0
        self.inner.reset(task)

    def act(self, observation: Any) -> Any:
        self.calls += 1
        if self.crash_at is not None and self.calls >= self.crash_at:
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return self.inner.act(observation)


@dataclass
class Served:
    """A served app; `robot` and `policy` are set when it was served with `wrap=True`."""

    url: str
    app: Service
    port: int
    robot: StopSpy | None = None
    policy: SwitchablePolicy | None = None

    def wrap(self, parts: Parts) -> Parts:
        self.robot = StopSpy(parts.robot)
        self.policy = SwitchablePolicy(parts.policy)
        parts.robot, parts.policy = self.robot, self.policy
        return parts

    def ee(self) -> np.ndarray:
        assert self.robot is not None
        return self.robot.state().ee_pos.copy()  # the sim world's reads take its lock


def serve_in_thread(
    config: Config,
    token: str | None,
    parts_factory: Callable[[Config], Parts] = build_parts,
    *,
    wrap: bool = False,
) -> Iterator[Served]:
    """The app on a free loopback port, in a thread of its own, until the generator resumes.

    With `wrap`, the robot counts safe stops and the policy can be made to crash (`Served.wrap`).
    """
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    served = Served(url=f"http://127.0.0.1:{port}", app=None, port=port)  # type: ignore[arg-type]

    def parts(config: Config) -> Parts:
        built = parts_factory(config)
        return served.wrap(built) if wrap else built

    served.app = create_app(config, token=token, parts_factory=parts)
    server = uvicorn.Server(uvicorn.Config(served.app, lifespan="on", log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not server.started:
        assert thread.is_alive(), f"service did not start: {served.app.startup_error}"
        assert time.monotonic() < deadline, "service did not start within 120 s"
        time.sleep(0.05)
    yield served
    server.should_exit = True
    thread.join(timeout=30)
    sock.close()
    assert not thread.is_alive(), "the service did not shut down"


def serve_sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The service on the sim world for a whole module; closing it must stop the arm."""
    # a generous time budget: the success test must not fail because the machine is busy
    config = make_config(tmp_path_factory.mktemp("service"), "runtime.max_duration_s=150")
    serving = serve_in_thread(config, TOKEN, wrap=True)
    served = next(serving)
    yield served
    stops = served.robot.stops if served.robot else 0
    next(serving, None)  # shuts it down
    assert served.robot is not None and served.robot.stops > stops, "closing stops the arm"


def serve_hardened(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The service on the sim world with the small limits above, for a whole module."""
    config = make_config(
        tmp_path_factory.mktemp("hardening"),
        "runtime.max_duration_s=150",
        f"service.max_listeners={MAX_LISTENERS}",
        f"service.max_requests={MAX_REQUESTS}",
        f"service.auth_max_failures={MAX_FAILURES}",
        f"service.auth_window_s={WINDOW_S}",
        "service.throttle_loopback=true",
        f"output.keep_runs={KEEP_RUNS}",
    )
    yield from serve_in_thread(config, TOKEN)


def authed_client(served: Served, timeout: float) -> Iterator[httpx.Client]:
    """A client of `served` that sends the bearer token."""
    with httpx.Client(base_url=served.url, headers=AUTH, timeout=timeout) as client:
        yield client


def agent_cli(*args: str, token: str | None = TOKEN) -> subprocess.Popen[str]:
    """`python -m agent ARGS` with AGENT_TOKEN set to `token` (unset for None)."""
    return agent_proc(*args, env={"AGENT_TOKEN": token})


def start(client: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/tasks", json=body)
    assert response.status_code == 202, response.text
    task = response.json()
    assert response.headers["location"] == f"/tasks/{task['id']}"
    return dict(task)


def wait_finished(client: httpx.Client, task_id: object, timeout: float = 60) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while (state := client.get(f"/tasks/{task_id}").json())["state"] != "finished":
        assert time.monotonic() < deadline, state
        time.sleep(0.1)
    return dict(state)


def one_line_error(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert isinstance(error, str) and error and "\n" not in error
    return error


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text (0 when absent, as Prometheus reads it)."""
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    sample = f"{name}{{{want}}}" if labels else name
    for line in text.splitlines():
        key, _, value = line.rpartition(" ")
        if key == sample:
            return float(value)
    return 0.0
