"""The service's RuntimeHost on the real sim: which scene needs a new world, and what a world
that cannot be built leaves behind (the old one, still running)."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from agent.backends import Parts, build_parts
from agent.config import Config
from agent.service.scenes import RuntimeHost, SceneUnavailable, choose_scene
from tests.conftest import make_config


def _objects(host: RuntimeHost) -> list[str]:
    return host.runtime.parts.scene_objects()


@pytest.mark.asyncio
@pytest.mark.timeout(120)
async def test_a_new_scene_builds_a_new_world_and_an_unchanged_one_does_not(tmp_path) -> None:
    config = make_config(tmp_path)
    built: list[Any] = []

    def counting(config: Config) -> Parts:
        built.append(config.sim.objects)
        return build_parts(config)

    async with RuntimeHost(config, parts_factory=counting) as host:
        first = host.runtime
        assert "sponge" in _objects(host) and len(built) == 1
        same = choose_scene(config, {"seed": config.sim.seed})  # named, but the same world
        assert same is not None and await host.use(same) is first  # reset between tasks
        apple = choose_scene(config, {"objects": ["apple", "bowl"]})
        assert apple is not None
        second = await host.use(apple)
        assert second is not first and second is host.runtime
        assert _objects(host)[:2] == ["apple", "bowl"] and len(built) == 2
        assert first.parts.judge.world.closed  # type: ignore[union-attr]  # the old one is freed
        back = choose_scene(config, None)  # a task without a scene: the server's own world
        assert back is not None and not back.requested
        assert await host.use(back) is not second and "sponge" in _objects(host)
        assert len(built) == 3


@pytest.mark.asyncio
@pytest.mark.timeout(120)
async def test_carry_over_rebuilds_a_named_scene_even_when_unchanged(tmp_path) -> None:
    config = make_config(tmp_path, "sim.between_tasks=carry_over")
    async with RuntimeHost(config, parts_factory=build_parts) as host:
        first = host.runtime
        unnamed = choose_scene(config, None)
        assert unnamed is not None and await host.use(unnamed) is first  # carries over
        named = choose_scene(config, {})
        assert named is not None and await host.use(named) is not first  # a fresh world


@pytest.mark.asyncio
@pytest.mark.timeout(120)
async def test_a_world_that_cannot_be_built_leaves_the_old_one_running(tmp_path) -> None:
    """The one fake: a build that fails (as a broken renderer or a full disk would) for the new
    scene's config; the sim's own builds pass every scene the layout check lets through."""
    config = make_config(tmp_path)

    def failing_for_apples(config: Config) -> Parts:
        if "apple" in (config.sim.objects or []):
            raise RuntimeError("EGL: no display\nsecond line")
        return build_parts(config)

    async with RuntimeHost(config, parts_factory=failing_for_apples) as host:
        first = host.runtime
        apple = choose_scene(config, {"objects": ["apple"]})
        assert apple is not None
        with pytest.raises(SceneUnavailable, match=r"could not be built: EGL: no display$"):
            await host.use(apple)
        assert host.runtime is first and first.health() == []
        with anyio.fail_after(30):  # the old world still runs tasks
            outcome = await first.run("I spilled the milk")
        assert outcome.status == "success", outcome.reason


@pytest.mark.asyncio
@pytest.mark.timeout(60)
async def test_a_server_scene_that_cannot_be_built_is_its_own_one_line_error(tmp_path) -> None:
    """Opening fails with the runtime's BackendError as it is (the service's startup line), not
    an ExceptionGroup nor an error about the host's task group."""
    from agent.backends import BackendError

    config = make_config(tmp_path, 'sim.objects=["unicorn"]')
    with pytest.raises(BackendError, match="no object 'unicorn'"):
        async with RuntimeHost(config, parts_factory=build_parts):
            pass
