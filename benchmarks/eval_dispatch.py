"""Where evaluation trials run when more than one runs at once: a local process pool, or Ray.

- `--workers N` (the local default): N spawned processes (a fresh MuJoCo / EGL context each:
  forking a process that has rendered is unsafe), no Ray imported. A worker that dies breaks its
  `ProcessPoolExecutor`; a new pool takes over and the trials that were running are run again
  (same seed), each up to `agent.cluster.MAX_RETRIES` more times, as Ray would; a trial still
  dying after that is recorded as a "crashed" failure and named at the end. The trials that had
  finished are kept, and those not yet started never see the crash.
- `--ray [ADDRESS]`: each trial is a Ray task declaring one CPU (and `--ray-gpus`); a worker that
  dies is re-run by Ray (`agent.cluster.MAX_RETRIES`), a trial that dies on every try is
  "crashed". docs/scale-out.md compares the two on one machine.

Either way `record(cell, i, result)` is called as each trial completes; outcomes are keyed by
(cell, trial), so the report keeps the trial order whatever order they finish in.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from agent.cluster import MAX_RETRIES, Lost, RaySpec, pin_threads, run_ordered
from agent.endings import ending
from benchmarks.eval_cells import Cell

#: (cell, trial index, run config, trial)
Job = tuple[Cell, int, Any, Any]
Record = Callable[[Cell, int, dict[str, Any]], None]
TrialFn = Callable[[Any, Any], dict[str, Any]]


def crashed(trial: Any, reason: str) -> dict[str, Any]:
    """The outcome of a trial whose worker process died: a failure that says so."""
    failed = {
        "success": False,
        "status": "crashed",
        "reason": reason,
        "steps": 0,
        "ended": ending("crashed", reason, None),
    }
    return {**trial.info(), **failed, "wall_s": 0.0}


def run_pooled(jobs: Sequence[Job], workers: int, record: Record, trial_fn: TrialFn) -> int:
    """Run `jobs` in `workers` spawned processes; returns how many trials crashed.

    A dead worker (seen: Mesa's llvmpipe faulting in a camera thread, once in 70 to a few
    hundred trials) breaks the pool, and with it every trial it holds. So the pool holds only
    the trials being run (at most `workers`): after a break, a new pool runs those again first,
    each at most MAX_RETRIES more times (the one that killed its worker cannot be told from the
    one that was merely running beside it: both count a try), then goes on with the rest.
    """
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    context = multiprocessing.get_context("spawn")
    waiting = deque(range(len(jobs)))
    tries = [0] * len(jobs)
    lost = 0

    def finish(future: Future[dict[str, Any]], k: int) -> bool:
        """Record job k's result; False when its worker died (then it waits for a retry)."""
        nonlocal lost
        cell, i, _, trial = jobs[k]
        try:
            result = future.result()
        except BrokenProcessPool:
            if tries[k] <= MAX_RETRIES:
                waiting.appendleft(k)  # first in the next pool, in its trial order
                return False
            why = f"its worker process died on each of {tries[k]} tries"
            result, lost = crashed(trial, why), lost + 1
        record(cell, i, result)
        return True

    while waiting:
        with ProcessPoolExecutor(
            workers, mp_context=context, initializer=start_worker, initargs=(os.getpid(),)
        ) as pool:
            running: dict[Future[dict[str, Any]], int] = {}
            healthy = True
            while healthy and (waiting or running):
                while healthy and waiting and len(running) < workers:
                    k = waiting[0]
                    try:
                        running[pool.submit(trial_fn, jobs[k][2], jobs[k][3])] = k
                    except BrokenProcessPool:  # broke since the last wait: k did not start
                        healthy = False
                        break
                    waiting.popleft()
                    tries[k] += 1
                if not healthy:
                    break
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in sorted(done, key=running.__getitem__, reverse=True):
                    healthy &= finish(future, running.pop(future))
            if not healthy:  # the pool is broken: its other trials end with it
                wait(running)
                for future in sorted(running, key=running.__getitem__, reverse=True):
                    finish(future, running[future])
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
