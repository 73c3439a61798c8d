"""Where evaluation trials run when more than one runs at once: a local process pool, or Ray.

- `--workers N` (the local default): N spawned processes (a fresh MuJoCo / EGL context each:
  forking a process that has rendered is unsafe), no Ray imported. A worker that dies breaks a
  `ProcessPoolExecutor` and every trial not finished by then with it; those trials are recorded
  as "crashed" failures, named at the end, and nothing is retried here.
- `--ray [ADDRESS]`: each trial is a Ray task declaring one CPU (and `--ray-gpus`); a worker that
  dies is re-run by Ray (`agent.cluster.MAX_RETRIES`), a trial that dies on every try is
  "crashed". docs/scale-out.md compares the two on one machine.

Either way `record(cell, i, result)` is called as each trial completes; outcomes are keyed by
(cell, trial), so the report keeps the trial order whatever order they finish in.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from agent.cluster import Lost, RaySpec, pin_threads, run_ordered
from benchmarks.eval_cells import Cell

#: (cell, trial index, run config, trial)
Job = tuple[Cell, int, Any, Any]
Record = Callable[[Cell, int, dict[str, Any]], None]
TrialFn = Callable[[Any, Any], dict[str, Any]]


def crashed(trial: Any, reason: str) -> dict[str, Any]:
    """The outcome of a trial whose worker process died: a failure that says so."""
    failed = {"success": False, "status": "crashed", "reason": reason, "steps": 0}
    return {**trial.info(), **failed, "wall_s": 0.0}


def run_pooled(jobs: Sequence[Job], workers: int, record: Record, trial_fn: TrialFn) -> int:
    """Run `jobs` in `workers` spawned processes; returns how many trials crashed.

    No retries: a dead worker (seen: Mesa's llvmpipe faulting in a camera thread, an hour into a
    run) breaks the pool; finished trials are kept, the rest are recorded as crashed. `--ray`
    is the path that re-runs them.
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    context = multiprocessing.get_context("spawn")
    lost = 0
    with ProcessPoolExecutor(
        workers, mp_context=context, initializer=start_worker, initargs=(os.getpid(),)
    ) as pool:
        futures = {pool.submit(trial_fn, job[2], job[3]): job for job in jobs}
        for future in as_completed(futures):
            cell, i, _, trial = futures[future]
            try:
                result = future.result()
            except BrokenProcessPool:
                why = "a worker process died and broke the pool; not retried (--ray retries)"
                result, lost = crashed(trial, why), lost + 1
            record(cell, i, result)
    return lost


def start_worker(parent: int) -> None:
    """A pool worker's set-up: one thread per math library, as a Ray worker has (a trial owns
    one core), and die with the eval process."""
    pin_threads()
    die_with_parent(parent)


def die_with_parent(parent: int) -> None:
    """In a pool worker: be killed when the eval process dies (Linux), whatever kills it; a
    worker otherwise runs the trial already queued for it as an orphan. A parent that died
    before this ran (the worker was still starting) ends the worker here."""
    import ctypes
    import signal
    import sys

    if sys.platform.startswith("linux"):
        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() != parent:
        os._exit(1)


def run_on_ray(jobs: Sequence[Job], spec: RaySpec, record: Record, trial_fn: TrialFn) -> int:
    """Run `jobs` as Ray tasks (inside `agent.cluster.connected`); returns how many crashed."""
    lost = 0

    def done(index: int, result: Any) -> None:
        nonlocal lost
        cell, i, _, trial = jobs[index]
        if isinstance(result, Lost):
            result, lost = crashed(trial, result.reason), lost + 1
        record(cell, i, result)

    for _ in run_ordered(trial_fn, [(job[2], job[3]) for job in jobs], spec, on_done=done):
        pass
    return lost
