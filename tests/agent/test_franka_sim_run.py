"""`--profile franka-sim`: the whole pipeline with the real Franka driver against franky-sim.

Nothing is mocked: the sim world's table, objects, user figure and cameras are merged into
franky-sim's MuJoCo scene, franky-sim's server runs in this process (the cameras render from its
`MjData`), and `FrankaRobot` drives the arm and hand through franky-control's libfranka over
TCP/UDP on a loopback address, exactly as it would drive an FR3. The success check and the scripted
expert read franky-sim's state through `SceneState`. 127.0.0.3 keeps clear of test_franka.py's
server on 127.0.0.1.
"""

from __future__ import annotations

import importlib.util

import pytest

from agent import Runtime, Step, load_config
from agent.config import ConfigError
from tests.conftest import SMALL

HOST = "127.0.0.3"
_HAVE = all(importlib.util.find_spec(m) for m in ("franky", "franky_sim", "mujoco"))
needs_franky_sim = pytest.mark.skipif(not _HAVE, reason="needs franky-control, franky-sim, mujoco")


def _config(tmp_path, *overrides: str):
    return load_config(
        "franka-sim",
        [*SMALL, f'output.runs_dir="{tmp_path / "runs"}"', f'franka.host="{HOST}"', *overrides],
    )


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ('robot.backend="panda_py"', "cameras.backend 'franka_sim' needs robot.backend 'franka'"),
        ('franka.host="172.16.0.2"', "serves the arm on a loopback address"),
        ('robot.backend="sim"', "do not fit"),
    ],
)
def test_franka_sim_profile_refuses_what_cannot_work(tmp_path, override: str, expected: str):
    with pytest.raises(ConfigError, match=expected):
        _config(tmp_path, override)


@needs_franky_sim
@pytest.mark.asyncio
@pytest.mark.timeout(150)
async def test_spilled_milk_succeeds_with_the_real_franka_driver(tmp_path):
    from drivers.franka import FrankaRobot
    from drivers.sim.franky_bridge import FrankySimWorld

    config = _config(tmp_path)
    steps: list[Step] = []
    async with Runtime(config) as runtime:
        parts = runtime.parts
        assert isinstance(parts.robot, FrankaRobot)
        world = parts.judge.world  # type: ignore[union-attr]
        assert isinstance(world, FrankySimWorld)
        finished = None
        async for event in runtime.execute("I spilled the milk"):
            if isinstance(event, Step):
                steps.append(event)
            finished = event
        realtime_factor = world.realtime_factor
        assert parts.robot.faults == []
    assert finished is not None
    outcome = finished.outcome  # type: ignore[attr-defined]
    print(
        f"franka-sim: {outcome.status} in {outcome.duration_s} s, {outcome.steps} steps, "
        f"realtime x{realtime_factor:.2f}, latency {outcome.latency_ms.get('total')}"
    )
    assert outcome.status == "success", outcome.reason
    assert outcome.success is True
    assert world.was_grasped("sponge")
    # the arm really moved: the hand went down to the sponge and came back up
    heights = [s.ee_pos[2] for s in steps]
    assert min(heights) < 0.05 < max(heights)
    assert any(s.gripper_closed for s in steps)
    assert world.closed  # the runtime closed the simulator after the driver
