"""`python -m agent VERB ...`: a thin terminal front end over the library API.

The runtime only emits events; rendering them (live progress, the summary table) happens here.
Every user error ends in one line on stderr and a non-zero exit code, never a traceback:
0 success, 1 the task failed or faulted, 2 bad input or config (a run folder that cannot be
written included), 3 nothing to do (no object fits or the object is not in view), 130 interrupted
by Ctrl-C, 143 terminated by SIGTERM (`docker stop`, systemd): both 128 + the signal's number, as
shells report them, and both only after the arm was stopped and the run folder finished.
"""

from __future__ import annotations

import argparse
import importlib
import json
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from drivers.sim import offscreen_gl
from models.tpm.cli_args import int_in, non_negative_int

#: `bench` sub-verb -> (module with `add_arguments(parser)` and `run(args, config)`, help).
BENCHMARKS: dict[str, tuple[str, str]] = {
    "reasoning": ("benchmarks.reasoning", "accuracy and latency of the reasoners on request cases"),
    "tracking": ("benchmarks.tracking_iou", "per-frame IoU of each tracker on sim episodes"),
    "modules": ("benchmarks.modules", "latency per module beside the paper's Table IV"),
    "redetect": ("benchmarks.redetect", "re-detecting a target that stays lost, three ways"),
    "loop": ("benchmarks.loop", "the whole control loop: pipelined runtime vs a sequential loop"),
    "soak": ("benchmarks.soak", "one service runtime, many tasks: none lost, RSS and fds flat"),
    "expert": ("benchmarks.expert", "scripted expert success per skill, split and setting"),
}

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NOTHING, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
EXIT_TERMINATED = 128 + signal.SIGTERM  # 143
TERMINATED = "terminated by SIGTERM"

#: What bad input raises (arguments, files, settings), by defining module: one line, exit 2.
#: Matched through sys.modules when an error arrives (a class whose module was never imported
#: cannot have been raised), so the CLI imports none of these modules for its error handling.
USER_ERRORS: tuple[tuple[str, str], ...] = (
    ("agent.cli", "UsageError"),
    ("agent.config", "ConfigError"),
    ("agent.runtime", "RequestError"),
    ("agent.recording", "RunFolderError"),
    ("agent.live_view", "ViewError"),
    ("agent.backends", "BackendError"),
    ("agent.service.server", "ServiceError"),
    ("drivers.sim.catalog", "CatalogError"),
    ("models.tpm.dataset", "DatasetError"),
    ("models.tpm.checkpoint", "CheckpointError"),
    ("models.tpm.train", "RunFolderError"),
    ("models.tpm.export", "OutputExistsError"),
    ("benchmarks.reasoning", "CasesError"),
    ("benchmarks.eval_tables", "EvalError"),
    ("agent.cluster", "ClusterError"),
    ("agent.record_command", "RecordError"),
    ("drivers.input", "InputError"),
)
#: reading a file the user named: missing, a folder, not readable (exit 2 as well)
FILE_ERRORS = (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError)


class UsageError(ValueError):
    """The command line itself is wrong (argparse's complaint, as one line)."""


class _Parser(argparse.ArgumentParser):
    """argparse, but its complaints end as one line on stderr and exit 2 through `main`.

    (argparse prints the usage block and then the error; `--help` still shows the usage.)
    """

    def error(self, message: str) -> Any:
        raise UsageError(f"{message.removeprefix('argument ')} (see {self.prog} --help)")


class _StderrProxyLogger:
    """structlog logger writing to whatever sys.stderr is now (rich's live display swaps it)."""

    def msg(self, message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    log = debug = info = warning = warn = error = critical = exception = fatal = msg


def build_parser() -> argparse.ArgumentParser:
    # the `tpm-agent` console script of an installed wheel names itself in usage and errors
    script = Path(sys.argv[0]).name == "tpm-agent"
    parser = _Parser(
        prog="tpm-agent" if script else "python -m agent",
        description="Follow spoken-style requests with a robot arm (TPM runtime).",
    )
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    from agent.cli_help import run_epilog

    run = verbs.add_parser(
        "run",
        help='carry out one request, e.g. "I spilled the milk"',
        epilog=run_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("request", help="what the user said")
    _add_config_args(run)
    run.add_argument("--runs-dir", type=Path, help="parent folder of run folders (default: runs)")
    run.add_argument("--no-video", action="store_true", help="do not write the video")
    run.add_argument("--quiet", action="store_true", help="no live display, only the summary")
    from agent.view_command import add_run_view_arguments, add_view_arguments

    add_run_view_arguments(run)
    view = verbs.add_parser("view", help="replay a run folder in rerun (its .rrd or its events)")
    add_view_arguments(view)

    doctor = verbs.add_parser("doctor", help="report optional backends, checkpoints, renderers")
    doctor.add_argument("--json", action="store_true", help="print JSON instead of a table")
    _add_config_args(doctor)

    show = verbs.add_parser("config", help="print the resolved configuration")
    _add_config_args(show)

    serve = verbs.add_parser("serve", help="serve the runtime over HTTP (tasks, events, metrics)")
    serve.add_argument("--host", default="127.0.0.1", help="address (default: 127.0.0.1)")
    serve.add_argument(
        "--port", type=int_in(0, 65535), default=8000, help="port (default: 8000; 0: any free)"
    )
    serve.add_argument(
        "--token-file", type=Path, help="file holding the bearer token (default: $AGENT_TOKEN)"
    )
    serve.add_argument("--ssl-certfile", type=Path, help="serve HTTPS with this certificate (PEM)")
    serve.add_argument("--ssl-keyfile", type=Path, help="its private key (PEM), if not in it")
    _add_config_args(serve)

    _add_tpm_verbs(verbs)
    from agent.record_command import add_record_arguments

    record = verbs.add_parser("record", help="record an operator's demonstrations on the arm")
    add_record_arguments(record)
    _add_config_args(record)

    bench = verbs.add_parser("bench", help="benchmarks: print a table, optionally write JSON")
    benches = bench.add_subparsers(dest="bench", required=True, metavar="BENCH")
    for name, (module, text) in BENCHMARKS.items():
        sub = benches.add_parser(name, help=text)
        importlib.import_module(module).add_arguments(sub)
        _add_config_args(sub)
    return parser


def _add_tpm_verbs(verbs: Any) -> None:
    """collect -> train -> export -> eval: the TPM policy's life cycle (docs/policy.md)."""
    from agent.collect_command import add_collect_arguments
    from models.tpm.cli_args import (
        add_export_arguments,
        add_interpolate_arguments,
        add_train_arguments,
    )

    collect = verbs.add_parser("collect", help="record scripted-expert demonstrations in sim")
    add_collect_arguments(collect)
    _add_config_args(collect)
    train = verbs.add_parser("train", help="behaviour-clone the TPM policy on demonstrations")
    add_train_arguments(train)
    export = verbs.add_parser("export", help="TPM checkpoint -> ONNX, checked against PyTorch")
    add_export_arguments(export)
    interpolate = verbs.add_parser(
        "interpolate", help="(1 - alpha) x policy A + alpha x policy B, as a policy (WiSE-FT)"
    )
    add_interpolate_arguments(interpolate)
    evaluate = verbs.add_parser(
        "eval", help="closed-loop success rates of the TPM policy (the paper's tables, in sim)"
    )
    from benchmarks.eval_tables import add_arguments as add_eval_arguments

    add_eval_arguments(evaluate)
    _add_config_args(evaluate)


def _add_config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", default=None, help="shipped profile (default: sim)")
    parser.add_argument("--config", type=Path, help="a TOML config file (may name a profile)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one setting, e.g. models.tracker=kcf",
    )
    parser.add_argument("--objects", type=Path, help="replacement object catalog (TOML)")
    parser.add_argument(
        "--backgrounds", type=Path, help="replacement backgrounds file (TOML): table, wall, lights"
    )
    parser.add_argument("--seed", type=non_negative_int, help="scene seed (sim)")
    parser.add_argument("--log-json", action="store_true", help="log JSON lines to stderr")
    parser.add_argument(
        "--log-level",
        default="warning",
        choices=["debug", "info", "warning", "error"],
        help="log level",
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = None
    try:
        args = build_parser().parse_args(argv)
        _setup_logging(args)  # first: even an error in train or export logs to stderr
        if args.verb == "doctor":
            from agent.doctor import run_doctor

            return run_doctor(as_json=args.json, config=_load(args))
        if args.verb in ("train", "export", "interpolate"):
            return _tpm_verb(args)
        if args.verb == "view":
            from agent.view_command import run_view

            return run_view(args)
        config = _load(args)
        if args.verb == "config":
            print(config.model_dump_json(indent=2))
            return EXIT_OK
        if args.verb == "serve":
            from agent.run_command import serve_verb

            return serve_verb(args, config)
        if args.verb == "bench":
            return _bench(args, config)
        if args.verb == "record":
            from agent.record_command import run_record

            offscreen_gl()
            return run_record(args, config)
        if args.verb == "collect":
            from agent.collect_command import run_collect

            return run_collect(args, config)
        if args.verb == "eval":
            from benchmarks.eval_tables import run as run_eval

            return run_eval(args, config)

        from agent.run_command import run_verb

        return run_verb(args, config)
    except KeyboardInterrupt:
        _fail("interrupted: the arm was stopped and the drivers closed")
        return EXIT_INTERRUPTED
    except Exception as exc:
        if is_user_error(exc):
            _fail(describe_user_error(exc))
            return EXIT_USAGE
        if args is None:  # building the parser failed: a bug, and no logging to send it to
            raise
        import structlog  # a bug: one line here, the traceback in the debug log

        structlog.get_logger("agent.cli").debug("unexpected error", exc_info=True)
        _fail(f"unexpected {type(exc).__name__}: {exc} (--log-level debug shows the traceback)")
        return EXIT_FAILED


def is_user_error(exc: BaseException) -> bool:
    """Whether `exc` means bad input (USER_ERRORS, FILE_ERRORS, a file that is not text)."""
    if isinstance(exc, (*FILE_ERRORS, UnicodeDecodeError)):
        return True
    for module, name in USER_ERRORS:
        cls = getattr(sys.modules.get(module), name, None)
        if isinstance(cls, type) and isinstance(exc, cls):
            return True
    return False


def describe_user_error(exc: BaseException) -> str:
    """One line for a user error: its message, or for a file error the file and what is wrong."""
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{exc.filename}: {exc.strerror or exc}"
    if isinstance(exc, UnicodeDecodeError):
        return f"a file is not {exc.encoding} text ({exc.reason} at byte {exc.start})"
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return "; ".join(lines) or type(exc).__name__


def _bench(args: argparse.Namespace, config: Any) -> int:
    """`bench SUB`: one module per benchmark (each prints its table and last line)."""
    offscreen_gl()  # the modules and loop benchmarks render the sim
    module, _ = BENCHMARKS[args.bench]
    return importlib.import_module(module).run(args, config)


def _tpm_verb(args: argparse.Namespace) -> int:
    """train / export / interpolate (torch): a missing extra is named; other bad input reaches
    `main`."""
    try:
        if args.verb == "train":
            from models.tpm.train_command import run_train

            return run_train(args)
        if args.verb == "interpolate":
            from models.tpm.interpolate import run_interpolate

            return run_interpolate(args)
        from models.tpm.export import run_export

        return run_export(args)
    except ImportError as exc:
        _fail(f"{exc.name} is not installed; install the extra: pip install 'tpm-agent[tpm]'")
    return EXIT_USAGE


def _fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)


def _setup_logging(args: argparse.Namespace) -> None:
    import structlog

    from agent.telemetry import configure_logging

    # train and export have no logging options: their defaults
    configure_logging(
        json=getattr(args, "log_json", False), level=getattr(args, "log_level", "warning")
    )
    structlog.configure(logger_factory=lambda *_: _StderrProxyLogger())


def _load(args: argparse.Namespace) -> Any:
    from agent.config import ConfigError, load_config

    if args.profile and args.config:
        raise ConfigError("give either --profile or --config, not both")
    source: Any = args.config or args.profile or "sim"
    overrides = list(args.overrides)
    if args.objects is not None:
        if not args.objects.is_file():
            raise ConfigError(f"--objects: file not found: {args.objects}")
        overrides.append(f"sim.catalog={json.dumps(str(args.objects))}")
    if args.backgrounds is not None:
        if not args.backgrounds.is_file():
            raise ConfigError(f"--backgrounds: file not found: {args.backgrounds}")
        overrides.append(f"sim.backgrounds={json.dumps(str(args.backgrounds))}")
    if args.seed is not None:
        overrides.append(f"sim.seed={args.seed}")
    if getattr(args, "runs_dir", None) is not None:
        overrides.append(f"output.runs_dir={json.dumps(str(args.runs_dir))}")
    if getattr(args, "no_video", False):
        overrides.append("output.video=false")
    return load_config(source, overrides)
