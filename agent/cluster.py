"""Ray plumbing for `collect --ray` and `eval --ray`: connect, run tasks, results in order.

Why Ray: an evaluation table is hundreds of realtime trials and a dataset thousands of lockstep
episodes, each independent and CPU-bound; Ray schedules them on every core of one machine or of a
cluster, declares what each needs (a CPU; a share of a GPU for EGL rendering or a CUDA policy),
and re-runs a task whose worker process died (`max_retries`), so no restart logic of our own.

`--ray` starts a Ray instance on this machine for the command (or joins the one `ray start` left
running here); `--ray ADDRESS` joins a cluster (`ray start --head` on one machine, `ray start
--address HEAD:6379` on the others, the same checkout and virtual environment at the same path on
every node). Workers run in the driver's working directory when it exists there, so relative
paths in a config mean what they mean to the driver. The local default (no `--ray`) never imports
Ray (docs/scale-out.md has the measured overhead).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from agent.interrupts import sigterm_interrupts

#: `--ray` without an address: start (or join) a Ray instance on this machine
LOCAL = "local"
#: times Ray re-runs a task whose worker process died (a crash, the OOM killer, `kill -9`)
MAX_RETRIES = 3
#: one thread per library in every worker: a task owns one declared CPU, and torch, OpenMP and
#: ONNX Runtime would otherwise each start a thread per core and oversubscribe the machine
PINNED_THREADS = {
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
}


class ClusterError(ValueError):
    """Ray is missing or the cluster cannot be reached (one line, exit 2)."""


@dataclass(frozen=True, slots=True)
class RaySpec:
    """Where the tasks run: `address` (LOCAL or host:port) and the GPU share each task declares."""

    address: str = LOCAL
    gpus: float = 0.0


@dataclass(frozen=True, slots=True)
class Lost:
    """A task whose worker died more often than Ray retries it: no result, and why."""

    reason: str


def add_ray_arguments(parser: argparse.ArgumentParser) -> None:
    """`--ray [ADDRESS]` and `--ray-gpus F` (collect and eval)."""
    parser.add_argument(
        "--ray",
        nargs="?",
        const=LOCAL,
        default=None,
        metavar="ADDRESS",
        help="run the episodes as Ray tasks: on a Ray instance started here (no ADDRESS) or on "
        "the cluster at ADDRESS (host:port of `ray start --head`); needs the cluster extra",
    )
    parser.add_argument(
        "--ray-gpus",
        type=_gpu_share,
        default=0.0,
        metavar="F",
        help="with --ray: GPU share each task declares (0.25: four per GPU; default 0, CPU only)",
    )


def _gpu_share(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not between 0 and 1")
    return value


def spec_from_args(args: argparse.Namespace) -> RaySpec | None:
    """The Ray settings asked for on the command line, or None for the local path."""
    address = getattr(args, "ray", None)
    if address is None:
        if getattr(args, "ray_gpus", 0.0):
            raise ClusterError("--ray-gpus needs --ray")
        return None
    return RaySpec(address=address, gpus=args.ray_gpus)


def precheck(spec: RaySpec) -> None:
    """Ray installed and, for an ADDRESS, a head answering there: checked before a command
    creates anything (ClusterError, one line)."""
    _ray()
    if spec.address != LOCAL:
        _reachable(spec.address)


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ClusterError(
            "--ray needs Ray: pip install -e '.[cluster]' (scripts/setup.sh installs it)"
        ) from None
    return ray


@contextmanager
def connected(spec: RaySpec) -> Iterator[int]:
    """Connect to (or start) Ray for the block; yields the cluster's CPU count.

    Every worker gets MUJOCO_GL (offscreen EGL unless set) and one thread per math library
    through the job's environment, whichever machine it runs on.
    """
    from drivers.sim import offscreen_gl

    ray = _ray()
    env = {"MUJOCO_GL": offscreen_gl(), **PINNED_THREADS}
    address = None if spec.address == LOCAL else spec.address
    if address is not None:
        _reachable(address)
    try:
        ray.init(
            address=address,
            runtime_env={"env_vars": env},
            include_dashboard=False,
            configure_logging=False,
            log_to_driver=False,
        )
    except (ConnectionError, ValueError, RuntimeError, TimeoutError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ClusterError(f"--ray {spec.address}: cannot start or join Ray: {first}") from None
    try:
        # SIGTERM as Ctrl-C: ray.shutdown() then stops a Ray this command started at once;
        # Python's default exit would leave Ray's agents to notice, about a minute later
        with sigterm_interrupts():
            yield max(1, int(ray.cluster_resources().get("CPU", 1)))
    finally:
        ray.shutdown()


def _reachable(address: str, timeout_s: float = 10.0) -> None:
    """A HOST:PORT that nothing answers on is one line (ray.init would retry it for minutes)."""
    import socket

    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or "://" in address:
        return  # another form (ray://, auto): Ray itself says what is wrong
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise ClusterError(f"--ray {address}: no Ray head answers there ({exc})") from None


def _call(cwd: str, fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    """Run `fn(*args)` in a Ray worker: the driver's working directory, one thread per library."""
    if os.path.isdir(cwd):
        os.chdir(cwd)
    pin_threads()
    return fn(*args)


def pin_threads() -> None:
    """One thread per math library in this worker process, which owns one CPU."""
    from agent.threads import pin_math_threads

    pin_math_threads(1)  # torch, loaded later, reads OMP_NUM_THREADS


def run_ordered(
    fn: Callable[..., Any],
    jobs: Sequence[tuple[Any, ...]],
    spec: RaySpec,
    *,
    on_done: Callable[[int, Any], None] | None = None,
    window: int | None = None,
) -> Iterator[tuple[int, Any]]:
    """Run `fn(*job)` for every job as a Ray task; yield (index, result) in job order.

    `on_done(index, result)` is called as each task completes, in completion order (progress
    bars advance there). A task whose worker died is re-run by Ray up to MAX_RETRIES times; after
    that its result is a `Lost`. An exception raised by `fn` itself is not retried: it
    propagates (Ray's error is an instance of the original exception's class). `window` bounds
    the tasks submitted but not yet yielded (results waiting for an earlier one hold memory).
    Must run inside `connected`.
    """
    ray = _ray()
    from ray.exceptions import RayError, RayTaskError

    task = ray.remote(_call).options(
        num_cpus=1, num_gpus=spec.gpus, max_retries=MAX_RETRIES, retry_exceptions=False
    )
    cwd = os.getcwd()
    limit = len(jobs) if window is None else max(1, window)
    refs: dict[Any, int] = {}
    done: dict[int, Any] = {}
    submitted = following = 0
    while following < len(jobs):
        while submitted < len(jobs) and submitted - following < limit:
            refs[task.remote(cwd, fn, tuple(jobs[submitted]))] = submitted
            submitted += 1
        if following not in done:
            ready, _ = ray.wait(list(refs), num_returns=1)
            index = refs.pop(ready[0])
            try:
                result: Any = ray.get(ready[0])
            except RayTaskError:
                raise
            except RayError as exc:  # the worker (or its node) died on every try
                why = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                result = Lost(f"its worker died {MAX_RETRIES + 1} times ({why})")
            done[index] = result
            if on_done is not None:
                on_done(index, result)
            continue
        yield following, done.pop(following)
        following += 1
