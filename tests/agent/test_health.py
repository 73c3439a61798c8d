"""Health reports what would make every task fault: a dead camera, a lost robot link.

Real parts: the sim world, its cameras and arm, the Runtime, and the HTTP service served by
uvicorn on 127.0.0.1. The dead camera is a real sim camera that stops delivering after a few
frames (tests.agent.test_runtime.DyingCamera: an unplugged USB camera cannot exist here). The lost
link is the one fact a Franka driver reports (`link_error`) after franky loses the arm, set on a
wrapper of the real sim robot: killing a libfranka connection is tested in
tests/drivers/test_franka.py.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import anyio
import httpx
import pytest

from agent import Runtime
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


class LinkLostRobot:
    """The real sim robot, reporting a lost link as the Franka drivers do after franky fails."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.link_error: str | None = None

    def __getattr__(self, name):
        return getattr(self.inner, name)


@pytest.mark.asyncio
async def test_runtime_health_names_a_lost_robot_link_and_a_healthy_runtime_has_none(
    tmp_path,
) -> None:
    robot: dict[str, LinkLostRobot] = {}

    def build(config: Config) -> Parts:
        parts = build_parts(config)
        parts.robot = robot.setdefault("r", LinkLostRobot(parts.robot))
        return parts

    config = make_config(tmp_path)
    async with Runtime(config, parts_factory=build) as runtime:
        await anyio.sleep(0.5)  # the cameras have delivered frames
        assert runtime.health() == []
        robot["r"].link_error = "libfranka: connection reset by peer"
        assert runtime.health() == ["robot: libfranka: connection reset by peer"]
