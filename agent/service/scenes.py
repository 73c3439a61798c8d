"""The scene a task runs in, and the one runtime, rebuilt when a task asks for another scene.

On the sim profile `POST /tasks` may carry `"scene": {"seed": 3, "objects": ["apple", "bowl"],
"setting": "standard"}`. Each key left out keeps the server's own value (its profile and `--set`),
and a task without a scene runs in the server's own scene, so a task's world never depends on
what an earlier client asked for. The values are checked as `--set sim.<key>=...` checks them,
and the scene is planned (catalog names, room on the table) before the task is accepted, so a bad
scene is a one-line 400 and never a task that fails later.

A MuJoCo world is compiled for its objects, so another scene means another world: `RuntimeHost`
builds the new devices first (the old world stays if that fails), then closes the old runtime
(the arm stopped, the drivers closed) and opens one on the new devices. An unchanged scene is
not rebuilt: each task starts from its reset layout anyway (`sim.between_tasks = "reset"`; with
"carry_over" a task that names a scene gets a freshly built one). The runtime lives in a task of
its own because its task group must be left by the task that entered it.

Only our MuJoCo world can be rebuilt this way: franky-sim's arm belongs to its libfranka client
and a real table is set by people, so on any other profile a scene is refused.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import anyio
import structlog
from anyio.abc import TaskGroup, TaskStatus

from agent.backends import Parts
from agent.config import Config, ConfigError, with_overrides
from agent.runtime import Runtime

log = structlog.get_logger("agent.service")

#: What a client may choose, as keys of `[sim]`.
SCENE_KEYS = ("seed", "objects", "setting")


class SceneRefused(ValueError):
    """A scene this server cannot set up (bad value, unknown object, not the sim); one line."""


class SceneUnavailable(RuntimeError):
    """The world for a scene could not be built or opened; the service goes on in the old one."""


@dataclass(frozen=True)
class Scene:
    """The world a task runs in: the server's config with the scene's `[sim]` keys applied."""

    config: Config
    requested: bool  # a client named it: a fresh world even where the last one carries over

    def view(self) -> dict[str, Any]:
        """The JSON shape in GET /tasks/{id}: the keys a client may set, as they are."""
        sim = self.config.sim
        return {"seed": sim.seed, "objects": sim.objects, "setting": sim.setting}


def choose_scene(config: Config, scene: Mapping[str, Any] | None) -> Scene | None:
    """The scene of a task on a server configured with `config`; SceneRefused if it cannot be.

    None on a server without our sim (nothing to choose, nothing to report).
    """
    if config.cameras.backend != "sim":
        if scene is not None:
            raise SceneRefused(_not_sim(config))
        return None
    if scene is None:
        return Scene(config, requested=False)
    if not isinstance(scene, Mapping):
        raise SceneRefused('scene must be a JSON object such as {"objects": ["apple", "bowl"]}')
    unknown = [key for key in scene if key not in SCENE_KEYS]
    if unknown:
        raise SceneRefused(f"unknown scene key {unknown[0]!r}; allowed: {', '.join(SCENE_KEYS)}")
    try:
        chosen = with_overrides(config, {f"sim.{key}": value for key, value in scene.items()})
    except ConfigError as exc:
        raise SceneRefused(f"scene: {exc}".replace("scene: sim.", "scene.", 1)) from None
    return Scene(chosen, requested=True)


def check_layout(scene: Scene) -> None:
    """Plan the scene as the world will (numpy only, milliseconds): unknown names and a table
    too full become SceneRefused now rather than a task that fails once accepted. Blocking."""
    from drivers.sim.catalog import CatalogError
    from drivers.sim.scene import SceneError, plan_scene

    try:
        plan_scene(scene.config.sim)
    except (CatalogError, SceneError) as exc:
        raise SceneRefused(f"scene: {exc}") from None


def _not_sim(config: Config) -> str:
    backend = config.cameras.backend
    why = (
        "franky-sim's world is built once, with the arm's server"
        if backend == "franka_sim"
        else "a real table is set by people"
    )
    return (
        f"scene: this server runs profile {config.profile!r} (cameras.backend {backend!r}); a "
        f"scene can only be set on the MuJoCo sim (cameras.backend 'sim'): {why}"
    )


class RuntimeHost:
    """The service's one runtime, held open in a task of its own so that it can be replaced.

    `async with RuntimeHost(config) as host:` opens the runtime for the server's own scene;
    `await host.use(scene)` returns a runtime for a task's scene, rebuilding the world if needed.
    Only one caller switches at a time (the task board starts one task at a time anyway).
    """

    def __init__(self, config: Config, *, parts_factory: Callable[[Config], Parts]) -> None:
        self.config = config
        self._parts_factory = parts_factory
        self._runtime: Runtime | None = None
        self._tg: TaskGroup | None = None
        self._stack = contextlib.AsyncExitStack()
        # made in the event loop (__aenter__, _hold): anyio's primitives need one
        self._leave: anyio.Event | None = None
        self._left: anyio.Event | None = None
        self._switching: anyio.Lock | None = None

    @property
    def runtime(self) -> Runtime:
        """The runtime opened last (during a switch: the one being replaced)."""
        if self._runtime is None:
            raise RuntimeError("the runtime host is not open")
        return self._runtime

    async def __aenter__(self) -> RuntimeHost:
        self._switching = anyio.Lock()
        stack = contextlib.AsyncExitStack()
        tg = await stack.enter_async_context(anyio.create_task_group())
        stack.callback(self._leave_now)  # the held runtime closes before the group is left
        try:
            await tg.start(self._hold, self.config, self._parts_factory)
        except BaseException:
            # left with no error inside the group, so that the runtime's own one-line error
            # reaches the caller as it is, not wrapped in an ExceptionGroup (not shielded: the
            # group's scope must be the innermost one when it is left)
            await stack.aclose()
            raise
        self._tg, self._stack = tg, stack
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._tg = None
        await self._stack.aclose()

    def _leave_now(self) -> None:
        if self._leave is not None:
            self._leave.set()

    async def use(self, scene: Scene) -> Runtime:
        """The runtime for `scene`: the open one when it fits, else one on a new world.

        Shielded: a shutdown that comes meanwhile waits for the switch (a second or two) rather
        than leaving a half-built world behind. SceneUnavailable if the new world cannot be
        built (the old one stays) or opened (the old one is reopened).
        """
        assert self._switching is not None, "use `async with RuntimeHost(...)` first"
        async with self._switching:
            current = self.runtime
            fresh = scene.requested and scene.config.sim.between_tasks != "reset"
            if scene.config == current.config and not fresh:
                return current
            with anyio.CancelScope(shield=True):
                await self._switch(current.config, scene.config)
            return self.runtime

    async def _switch(self, old: Config, new: Config) -> None:
        assert self._tg is not None
        try:
            parts = await anyio.to_thread.run_sync(self._parts_factory, new)
        except Exception as exc:
            raise SceneUnavailable(f"the scene's world could not be built: {_line(exc)}") from None
        log.info("switching scene", scene=Scene(new, requested=True).view())
        await self._close_held()
        try:
            await self._tg.start(self._hold, new, lambda _config: parts)
        except Exception as exc:
            message = f"the scene's world could not be opened: {_line(exc)}"
            log.error("scene switch failed; reopening the previous scene", error=message)
            await self._tg.start(self._hold, old, self._parts_factory)
            raise SceneUnavailable(message) from None

    async def _close_held(self) -> None:
        """Tell the task holding the runtime to close it (arm stopped, drivers closed); wait."""
        leave, left = self._leave, self._left
        assert leave is not None and left is not None
        leave.set()
        await left.wait()

    async def _hold(
        self,
        config: Config,
        parts_factory: Callable[[Config], Parts],
        *,
        task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        leave, left = self._leave, self._left = anyio.Event(), anyio.Event()
        try:
            async with Runtime(config, parts_factory=parts_factory) as runtime:
                self._runtime = runtime
                task_status.started()
                await leave.wait()
        finally:
            left.set()


def _line(exc: BaseException) -> str:
    if isinstance(exc, KeyError) and exc.args:
        return str(exc.args[0])
    return (str(exc) or type(exc).__name__).splitlines()[0]
