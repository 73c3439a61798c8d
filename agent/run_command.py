"""The `run` and `serve` verbs of the command line (agent.cli parses, this runs them).

`run` claims its run folder before anything starts or moves, ends a SIGTERM as it ends Ctrl-C
(the episode cancelled, the arm stopped, the folder finished, exit 143), prunes old run folders
after and turns the outcome into the exit code; `serve` hands the config to the HTTP service.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
from pathlib import Path
from typing import Any

from agent.cli import (
    EXIT_FAILED,
    EXIT_NOTHING,
    EXIT_OK,
    EXIT_TERMINATED,
    EXIT_USAGE,
    TERMINATED,
    _fail,
)
from drivers.sim import offscreen_gl


def run_folder(runs_dir: Path, request: str) -> Path:
    """A new folder named by time and request, e.g. runs/20261125-190102-i-spilled-the-milk.

    Created here (so no other run can take it) and checked for writing: RunFolderError if not.
    """
    from agent.recording import new_run_folder

    return new_run_folder(runs_dir, request)


def _prune_runs(config: Any, folder: Path) -> None:
    """After a run: delete the oldest run folders beyond output.keep_runs / keep_bytes."""
    output = config.output
    if folder.is_dir() and (output.keep_runs is not None or output.keep_bytes is not None):
        from agent.recording import prune_run_folders

        prune_run_folders(
            folder.parent,
            keep_runs=output.keep_runs,
            keep_bytes=output.keep_bytes,
            protect=[folder],
        )


def _remove_if_empty(folder: Path) -> None:
    with contextlib.suppress(OSError):
        folder.rmdir()  # only succeeds on an empty folder


class _Termination:
    """SIGTERM ends a run as Ctrl-C does: the episode is cancelled, the arm stopped, the run
    folder finished and the drivers closed, then `run` exits 143 (systemd and `docker stop` send
    SIGTERM, and a process that dies of it leaves no summary and an unfinished video)."""

    def __init__(self) -> None:
        self.signalled = False
        self.runtime: Any = None

    async def watch(self, scope: Any, *, task_status: Any) -> None:
        import anyio

        with contextlib.ExitStack() as stack:
            try:
                signals = stack.enter_context(anyio.open_signal_receiver(signal.SIGTERM))
            except (NotImplementedError, ValueError, RuntimeError):  # no loop signal handlers
                task_status.started()
                return
            task_status.started()
            async for _ in signals:
                self.signalled = True
                # an episode running: it ends with its outcome (the consumer keeps the stream);
                # otherwise (starting up, closing) the whole run is cancelled
                if self.runtime is None or not self.runtime.cancel(TERMINATED):
                    scope.cancel()


def run_verb(args: argparse.Namespace, config: Any) -> int:
    """`run`: one request, live display (and view), run folder, exit code from the outcome."""
    import anyio

    from agent.display import RunDisplay
    from agent.event_loop import run_loop
    from agent.runtime import Runtime, validate_request

    request = validate_request(args.request)
    offscreen_gl()
    from agent.view_command import live_view_opener

    open_view = live_view_opener(args, config)  # checks rerun (and a display) before anything
    folder = run_folder(config.output.runs_dir, request)  # before anything starts or moves
    rt = config.runtime
    display = RunDisplay(
        request, folder, live=not args.quiet, budget=(rt.max_steps, rt.max_duration_s)
    )
    term = _Termination()
    live: Any = None

    async def go() -> Any:
        nonlocal live
        failure: Exception | None = None
        async with anyio.create_task_group() as tg:
            await tg.start(term.watch, tg.cancel_scope)
            try:
                async with Runtime(config) as runtime:
                    term.runtime = runtime
                    display.stage("running")
                    live = open_view(folder) if open_view else None
                    async for event in runtime.execute(request, run_dir=folder, observer=live):
                        display.update(event)
            except Exception as exc:  # raised below as it is, not wrapped in an ExceptionGroup
                failure = exc
            finally:
                term.runtime = None
                tg.cancel_scope.cancel()
        if failure is not None:
            raise failure
        return display.outcome

    try:
        with display:
            display.stage("starting (loading the world and models)")
            outcome = run_loop(go, config.runtime.event_loop)
    finally:
        if live is not None:
            live.close()
        _remove_if_empty(folder)  # the run never began (a start-up error, a signal)
        _prune_runs(config, folder)
    if term.signalled:
        display.print_summary()
        if outcome is not None and outcome.stop not in (None, "ok"):
            _fail(f"{TERMINATED}: the safe stop {outcome.stop}; check the arm")
        else:
            _fail(f"{TERMINATED}: the arm was stopped and the drivers closed")
        return EXIT_TERMINATED
    if outcome is None:
        _fail("the run ended without an outcome; see the log above")
        return EXIT_FAILED
    display.print_summary()
    if live is not None:
        live.hold()  # a served web view stays up until Ctrl-C
    if outcome.status == "success":
        return EXIT_OK
    if outcome.status in ("infeasible", "not_found"):
        return EXIT_NOTHING
    return EXIT_FAILED


def serve_verb(args: argparse.Namespace, config: Any) -> int:
    """`serve`: the HTTP service (agent.service) until Ctrl-C, which stops the arm first."""
    try:
        from agent.service import ServiceError, serve
    except ImportError as exc:
        if exc.name not in ("starlette", "uvicorn"):
            raise
        _fail(f"{exc.name} is not installed; install the extra: pip install 'tpm-agent[serve]'")
        return EXIT_USAGE
    offscreen_gl()
    try:
        return serve(
            config,
            host=args.host,
            port=args.port,
            token_file=args.token_file,
            ssl_certfile=args.ssl_certfile,
            ssl_keyfile=args.ssl_keyfile,
            log_level=args.log_level,
        )
    except ServiceError as exc:
        _fail(str(exc))
        return EXIT_USAGE
