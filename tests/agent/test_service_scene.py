"""A task's scene on the reference service, for real: uvicorn on 127.0.0.1, the MuJoCo world.

On the default sim server (the sim profile's sponge and milk carton) "put the apple in the bowl"
is infeasible; with `"scene": {"objects": ["apple", "bowl"]}` the world is rebuilt for the task
and the request runs to success; the next task without a scene is back in the server's own
scene. Bad scenes are one-line 400s, checked before anything moves, and a server whose world is
not our sim (franky-sim here, with the real Franka driver) refuses the field.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator

import httpx
import pytest

from agent.config import load_config
from tests.conftest import SMALL, make_config
from tests.service_helpers import (
    TOKEN,
    Served,
    authed_client,
    one_line_error,
    serve_in_thread,
    start,
    wait_finished,
)

APPLE = "put the apple in the bowl"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    config = make_config(tmp_path_factory.mktemp("scene"), "runtime.max_duration_s=150")
    yield from serve_in_thread(config, TOKEN)


@pytest.fixture(scope="module")
def client(served: Served) -> Iterator[httpx.Client]:
    yield from authed_client(served, timeout=30)


def _finish(client: httpx.Client, body: dict[str, object]) -> dict[str, object]:
    task = start(client, body)
    return wait_finished(client, task["id"], timeout=170)


@pytest.mark.timeout(400)
def test_a_task_sets_its_scene_and_the_next_one_gets_the_servers_back(
    served: Served, client: httpx.Client
) -> None:
    default = served.app.config.sim
    assert "apple" not in (default.objects or [])
    before = _finish(client, {"request": APPLE})
    assert before["outcome"]["status"] == "infeasible", before  # type: ignore[index]
    assert before["scene"] == {"seed": 0, "objects": default.objects, "setting": "standard"}

    scene = {"seed": 3, "objects": ["apple", "bowl"]}
    done = _finish(client, {"request": APPLE, "scene": scene})
    assert done["error"] is None, done["error"]
    assert done["outcome"]["status"] == "success", done["outcome"]  # type: ignore[index]
    assert done["scene"] == {**scene, "setting": "standard"}

    after = _finish(client, {"request": APPLE})  # no scene: the server's own world again
    assert after["outcome"]["status"] == "infeasible", after  # type: ignore[index]
    assert after["scene"] == before["scene"]
    assert client.get("/health").json() == {"status": "ok", "busy": False}


@pytest.mark.parametrize(
    ("scene", "expected"),
    [
        ({"colour": "red"}, "unknown scene key 'colour'; allowed: seed, objects, setting"),
        ({"seed": -1}, "scene.seed: Input should be greater than or equal to 0"),
        ({"setting": "moon"}, "scene.setting: 'moon' is not allowed; allowed: 'standard'"),
        ({"objects": "apple"}, "scene.objects: Input should be a valid list"),
        ({"objects": ["unicorn"]}, "scene: no object 'unicorn' in "),
        ("apple and bowl", "scene must be a JSON object"),
    ],
)
def test_a_bad_scene_is_a_one_line_400_and_starts_nothing(
    client: httpx.Client, scene: object, expected: str
) -> None:
    tasks = len(client.get("/tasks").json()["tasks"])
    error = one_line_error(client.post("/tasks", json={"request": APPLE, "scene": scene}), 400)
    assert expected in error
    assert len(client.get("/tasks").json()["tasks"]) == tasks


needs_franky_sim = pytest.mark.skipif(
    not all(importlib.util.find_spec(m) for m in ("franky", "franky_sim", "mujoco")),
    reason="needs franky-control, franky-sim, mujoco",
)


@needs_franky_sim
@pytest.mark.timeout(120)
def test_a_server_whose_world_is_not_our_sim_refuses_a_scene(tmp_path) -> None:
    """franky-sim with the real Franka driver on a loopback address (as test_franka_sim_run)."""
    config = load_config(
        "franka-sim",
        [*SMALL, f'output.runs_dir="{tmp_path / "runs"}"', 'franka.host="127.0.0.4"'],
    )
    for served in serve_in_thread(config, TOKEN):
        with httpx.Client(base_url=served.url, headers={"Authorization": f"Bearer {TOKEN}"}) as c:
            body = {"request": APPLE, "scene": {"objects": ["apple", "bowl"]}}
            error = one_line_error(c.post("/tasks", json=body), 400)
            assert "profile 'franka-sim' (cameras.backend 'franka_sim')" in error
            assert "only be set on the MuJoCo sim" in error
            assert c.get("/tasks").json()["tasks"] == []


def test_a_real_table_refuses_a_scene_by_name() -> None:
    """The real profile needs cameras and an arm to serve; its refusal is the same function."""
    from agent.service.scenes import SceneRefused, choose_scene

    config = load_config("real")
    assert choose_scene(config, None) is None
    with pytest.raises(SceneRefused, match="a real table is set by people"):
        choose_scene(config, {"seed": 1})
