"""`python -m agent record REQUEST`: an operator demonstrates on the arm while the runtime records.

Each episode is one `Runtime.execute(REQUEST)` with the operator as the policy (`agent.teleop`):
the configured reasoner, detector, tracker and segmenter run exactly as in `run`, and every step the
arm executes is written to the dataset `train` reads (`models.tpm.dataset.EpisodeStore`, the
writing path `collect` uses). At each episode's end the operator says keep, discard or redo; only
kept episodes are committed, each with its request, task, notes, verdict and `source: teleop`.
The store is crash-safe: a recorder killed mid-episode loses that episode only.

With `--device guiding` the operator moves the Franka by hand instead (`agent.guiding`).
`record --replay N` drives episode N's recorded actions back open-loop (`agent.replay`).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import sys
from pathlib import Path
from typing import Any

import anyio

from agent.cli import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_NOTHING,
    EXIT_OK,
    EXIT_TERMINATED,
    TERMINATED,
)
from agent.config import Config
from agent.event_loop import run_loop
from agent.guiding import GuidedRecordingRobot, GuidingPolicy, says_too_fast
from agent.teleop import (
    RecordingRobot,
    TeleopPolicy,
    episode_info,
    limits_for,
    open_input_device,
)
from drivers.input import InputDevice
from models.tpm.dataset import EpisodeStore

VERDICTS = {"k": "keep", "keep": "keep", "d": "discard", "discard": "discard", "r": "redo"}
VERDICTS["redo"] = "redo"


class RecordError(ValueError):
    """Bad input to `record` (no request, an episode that is not in the dataset); one line."""


def add_record_arguments(parser: argparse.ArgumentParser) -> None:
    from models.tpm.cli_args import int_in
    from models.tpm.config import PRESETS

    parser.add_argument(
        "request", nargs="?", help='what is demonstrated, e.g. "give me the sponge"'
    )
    parser.add_argument(
        "--episodes", type=int_in(1), default=1, help="episodes to keep (default: 1)"
    )
    parser.add_argument(
        "--out", type=Path, default=Path("data/teleop.zarr"), help="dataset (created or appended)"
    )
    parser.add_argument(
        "--preset", default="cpu", choices=list(PRESETS), help="TPM preset (its input size)"
    )
    parser.add_argument("--background", help="note: the table and background, e.g. 'white cloth'")
    parser.add_argument("--distractors", help="note: other objects on the table, comma separated")
    parser.add_argument("--notes", help="free-form note stored with every episode")
    parser.add_argument(
        "--device",
        choices=["keyboard", "spacemouse", "guiding"],
        help="the operator's input (default: teleop.device): guiding = the Franka moved by hand",
    )
    parser.add_argument(
        "--replay",
        type=int_in(0),
        metavar="EPISODE",
        help="drive episode EPISODE of --out back on the arm, open loop (nothing is recorded)",
    )


def run_record(args: argparse.Namespace, config: Config) -> int:
    """Check everything, then record (or replay); see the module docstring."""
    from agent.config import with_overrides
    from agent.guiding import guiding_refusal
    from models.tpm.config import preset

    if args.device is not None:
        config = with_overrides(config, {"teleop.device": args.device})
    if args.replay is not None:
        from agent.replay import replay_episode

        return replay_episode(args.out, args.replay, config)
    if not args.request or not args.request.strip():
        raise RecordError(
            'say what is demonstrated, e.g. python -m agent record "give me the sponge"'
        )
    from agent.runtime import validate_request

    request = validate_request(args.request)
    refusal = guiding_refusal(config)
    if refusal is not None:
        raise RecordError(refusal)
    size = preset(args.preset).image_size
    device = open_input_device(config.teleop)
    device.open()  # a missing 3D mouse, or no terminal for the keyboard: one line, nothing written
    device.close()
    created = not (args.out / "zarr.json").exists()
    store = EpisodeStore(args.out, views=config.cameras.views, image_size=size, create=True)
    if store.recovered:
        print(f"note: {args.out}: {store.recovered}")
    notes = {
        "background": args.background,
        "distractors": [d.strip() for d in args.distractors.split(",") if d.strip()]
        if args.distractors
        else None,
        "notes": args.notes,
    }
    session = _Session(config, store, device, request, notes, size, args.episodes)
    try:
        code = run_loop(session.run, config.runtime.event_loop)
    except KeyboardInterrupt:
        code = EXIT_INTERRUPTED
    except Exception:
        if created and session.attempts == 0:  # the rig failed to start: leave no empty dataset
            shutil.rmtree(args.out, ignore_errors=True)
        raise
    print(session.summary(), flush=True)
    if code in (EXIT_INTERRUPTED, EXIT_TERMINATED):
        why = "interrupted" if code == EXIT_INTERRUPTED else TERMINATED
        print(
            f"error: {why}: the arm was stopped and the drivers closed; the episode in "
            "progress was not kept",
            file=sys.stderr,
        )
    return code


class _Session:
    """The episodes of one `record` call, on one Runtime (devices and models opened once)."""

    def __init__(
        self,
        config: Config,
        store: EpisodeStore,
        device: InputDevice,
        request: str,
        notes: dict[str, Any],
        size: int,
        episodes: int,
    ) -> None:
        self.config, self.store, self.device = config, store, device
        self.request, self.notes, self.episodes = request, notes, episodes
        teleop = config.teleop
        self.guided = teleop.device == "guiding"
        self.policy = (
            GuidingPolicy(device, limits_for(config), teleop.deadman_s, teleop.guiding)
            if self.guided
            else TeleopPolicy(device, limits_for(config), teleop.deadman_s)
        )
        self.views = tuple(config.cameras.views)
        self.size = size
        self.robot: RecordingRobot | None = None
        self.world: Any = None
        self.kept = self.discarded = self.redone = 0
        self.kept_last = False
        self.attempts = 0

    def _parts(self, config: Config) -> Any:
        from agent.backends import build_parts

        parts = build_parts(config, policy=lambda: self.policy)
        arm = (parts.robot, self.policy, self.views, self.size)
        self.robot = (
            GuidedRecordingRobot(*arm, self.config.teleop.guiding)
            if self.guided
            else RecordingRobot(*arm)
        )
        parts.robot = self.robot
        self.world = getattr(parts.judge, "world", None)
        return parts

    async def run(self) -> int:
        """The episodes; SIGTERM (systemd, `docker stop`) ends them as Ctrl-C does: the episode in
        progress is cancelled and dropped, the arm stopped and the drivers closed."""
        terminated = False
        code = EXIT_TERMINATED
        failure: Exception | None = None
        async with anyio.create_task_group() as tg:

            async def watch() -> None:
                nonlocal terminated
                with anyio.open_signal_receiver(signal.SIGTERM) as signals:
                    async for _ in signals:
                        terminated = True
                        tg.cancel_scope.cancel()

            tg.start_soon(watch)
            try:
                code = await self._episodes()
            except Exception as exc:  # raised below as it is, not wrapped in an ExceptionGroup
                failure = exc
            finally:
                self.store.abort_episode()  # only if one is open: never half of an episode
                tg.cancel_scope.cancel()
        if failure is not None:
            raise failure
        return EXIT_TERMINATED if terminated else code

    async def _episodes(self) -> int:
        from agent.runtime import Runtime

        say("starting (loading the world and models)")
        async with Runtime(self.config, parts_factory=self._parts) as runtime:
            attempt = 0
            while self.kept < self.episodes:
                attempt += 1
                self.attempts += 1
                say(
                    f"episode {self.kept + 1} of {self.episodes} (attempt {attempt}): "
                    f"{self.request!r} with the {self.device.name}"
                )
                code = await self._episode(runtime)
                if code is not None:
                    return code
                if self.kept_last:
                    attempt = 0
        return EXIT_OK

    async def _episode(self, runtime: Any) -> int | None:
        """One episode, recorded, judged by the operator; an exit code ends the session."""
        from agent.events import Detected, Fault, Finished, Reasoned, Step, describe_task

        robot = self.robot
        assert robot is not None
        info = episode_info(
            request=self.request,
            config=self.config,
            device=self.device.name,
            notes=self.notes,
            scene=self._scene(),
            source="guiding" if self.guided else "teleop",
        )
        self.store.begin_episode(info)
        robot.steps, robot.error = 0, None
        if isinstance(robot, GuidedRecordingRobot):
            robot.begin()
        task: dict[str, Any] = {}
        outcome: Any = None
        every = max(1, round(2 * self.config.runtime.control_hz))  # a status line every 2 s
        await anyio.to_thread.run_sync(self.device.open)
        try:
            robot.sink = self.store
            async for event in runtime.execute(self.request):
                if isinstance(event, Reasoned):
                    task = {"skill": event.skill, "pick": event.pick, "place": event.place}
                    say(f"task: {describe_task(event.skill, event.pick, event.place)}")
                elif isinstance(event, Detected) and event.box is None:
                    say(f"  {event.label} not found in view {event.view}")
                elif isinstance(event, Fault):
                    say(f"  fault ({event.where}): {event.message}")
                elif isinstance(event, Finished):
                    outcome = event.outcome
                elif isinstance(event, Step) and event.index % every == 0:
                    x, y, z = (f"{v:.3f}" for v in event.ee_pos)
                    grip = "closed" if event.gripper_closed else "open"
                    say(f"  step {event.index}: hand at ({x}, {y}, {z}) m, gripper {grip}")
                if isinstance(event, Reasoned) and event.pick is not None:
                    say(f"recording at {self.config.runtime.control_hz:g} Hz: {_keys(self)}")
            await anyio.to_thread.run_sync(robot.flush)  # hand-guiding: the last step's move
        finally:
            robot.sink = None
            self.device.close()
        assert outcome is not None
        say(
            f"episode ended: {outcome.status}: {outcome.reason} ({robot.steps} steps recorded; "
            f"arm stop: {outcome.stop})"
        )
        if outcome.status in ("infeasible", "not_found"):
            self.store.abort_episode()
            say("nothing to record for this request; stopping")
            return EXIT_NOTHING
        speed: dict[str, int] = {}
        if isinstance(robot, GuidedRecordingRobot):
            speed = {"fast_steps": robot.fast_steps}
            fast = says_too_fast(robot)
            if fast is not None:
                say(fast)
        verdict = await ask_verdict()
        extra = {
            **task,
            **speed,
            "verdict": verdict,
            "outcome": outcome.status,
            "reason": outcome.reason,
            "success": outcome.success,
        }
        kept = self.store.end_episode(keep=verdict == "keep", **extra)
        if verdict == "keep" and not kept:
            say("no step was recorded: nothing kept")
        self.kept += kept
        self.kept_last = kept
        self.discarded += verdict != "keep" or not kept
        if verdict == "redo":
            self.redone += 1
            self.store.bump("redone")
        say(f"{verdict}: {self.store.n_episodes} episodes in {self.store.root}")
        if outcome.status == "fault":
            say("stopped after a fault; check the arm and the input device, then record again")
            return EXIT_FAILED
        return None

    def _scene(self) -> dict[str, Any]:
        """What the simulator knows about the scene (nothing on a real table: the notes say it)."""
        layout = getattr(self.world, "layout", None)
        if layout is None:
            return {"scene_objects": list(self.config.table.objects)}
        return {
            "seed": self.config.sim.seed,
            "setting": self.config.sim.setting,
            "background": layout.background,
            "distractors": layout.distractors,
            "scene_objects": layout.names,
        }

    def summary(self) -> str:
        return (
            f"recorded: {self.kept} kept, {self.discarded} discarded ({self.redone} to redo); "
            f"{self.store.root} holds {self.store.n_episodes} episodes, {self.store.n_steps} steps"
        )


def _keys(session: _Session) -> str:
    if session.device.name == "keyboard":
        from drivers.input.keyboard import HELP

        return HELP
    if session.guided:
        from drivers.input.keyboard import GUIDING_HELP

        if session.config.teleop.guiding.mode == "buttons":
            return f"hold the two guiding buttons at the flange and {GUIDING_HELP}"
        return GUIDING_HELP
    s = session.config.teleop.spacemouse
    return f"push the cap to move; button {s.gripper_button}: gripper, {s.end_button}: end"


def say(line: str) -> None:
    print(line, flush=True)


async def ask_verdict() -> str:
    """keep / discard / redo, asked on the terminal until one of them is given.

    End of input (no operator) discards: nothing is kept that nobody looked at.
    """
    while True:
        print("keep, discard or redo this episode? [k/d/r] ", end="", flush=True)
        fd = _stdin_fd()
        line = await read_line(fd) if fd >= 0 else None
        if line is None:
            print("(no answer: discarded)", flush=True)
            return "discard"
        verdict = VERDICTS.get(line.strip().lower())
        if verdict is not None:
            return verdict


async def read_line(fd: int) -> str | None:
    """One line from `fd`, read byte by byte so that nothing after it is taken; None at EOF.

    Waits on the event loop, not in a worker thread: a thread blocked in a read could not be
    cancelled, and Ctrl-C at the prompt would then wait for a line before the process could end.
    """
    data = b""
    while not data.endswith(b"\n"):
        # a regular file (stdin redirected) cannot be waited on, and its reads never block
        with contextlib.suppress(OSError, ValueError, NotImplementedError):
            await anyio.wait_readable(fd)
        byte = os.read(fd, 1)
        if not byte:
            return data.decode(errors="replace") if data else None
        data += byte
    return data.decode(errors="replace")


def _stdin_fd() -> int:
    try:
        return sys.stdin.fileno()
    except (AttributeError, ValueError, OSError):
        return -1
