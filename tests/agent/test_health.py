"""Health reports what would make every task fault: here a dead camera, through the service.

Real parts: the sim world, its cameras and arm, the Runtime, and the HTTP service served by
uvicorn on 127.0.0.1. The dead camera is a real sim camera that stops delivering after a few
frames (tests.agent.test_runtime.DyingCamera: an unplugged USB camera cannot exist here). A lost
robot link in the health report is tested with the real Franka driver and a killed franky-sim
server (tests/agent/test_faults_devices.py).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from agent.backends import Parts, build_parts
from agent.config import Config
from tests.agent.test_runtime import DyingCamera
from tests.conftest import make_config
from tests.service_helpers import serve_in_thread

TOKEN = "health-check-token-for-tests"


def _dying_side_camera(config: Config) -> Parts:
    parts = build_parts(config)
    parts.cameras["side"] = DyingCamera(parts.cameras["side"], frames=3)
    return parts


@pytest.fixture
def served_with_a_dying_camera(tmp_path) -> Iterator[str]:
    # slack for the healthy camera: a loaded 2-core machine rendered it late twice in 0.2 s
    config = make_config(tmp_path, "runtime.camera_timeout_s=0.5", "runtime.camera_failures=3")
    for served in serve_in_thread(config, TOKEN, parts_factory=_dying_side_camera):
        yield served.url


def test_health_reports_a_dead_camera_instead_of_ok(served_with_a_dying_camera: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        response = httpx.get(f"{served_with_a_dying_camera}/health", timeout=10)
        if response.status_code != 200 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert response.status_code == 503, response.text
    body = response.json()
    assert body["status"] == "degraded" and body["busy"] is False
    assert len(body["problems"]) == 1 and body["problems"][0].startswith("camera 'side': ")
