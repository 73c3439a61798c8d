"""The soak's verdict and output: the growth bounds over the samples, the result document and
its table.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from benchmarks.machine import describe, markdown_table
from benchmarks.soak.service import Sample
from benchmarks.soak.tasks import CANCEL_AFTER_STEPS, REQUESTS, TaskRecord

WARMUP_SHARE = 0.2


WARMUP_MIN = 2  # "I'm cold" moves nothing: the second task is the first to render, track, encode


RSS_BOUND_MB = 30.0


FD_BOUND = 2


THREAD_BOUND = 4


def bounds(samples: Sequence[Sample], ready: Sample) -> dict[str, Any]:
    """The resource figures and whether each stays within its bound (see the module docstring)."""
    n = len(samples)
    warm = min(max(WARMUP_MIN, round(n * WARMUP_SHARE)), max(n - 1, 1))
    start, rest = samples[warm - 1], samples[warm:] or samples[-1:]
    rss = [s.rss_mb for s in rest]
    growth = round(max(rss) - start.rss_mb, 2)
    slope = _slope(rss) * 100 if len(rss) >= 3 else None
    fd_growth = samples[-1].fds - start.fds
    thread_growth = samples[-1].threads - start.threads
    children = max(s.children for s in samples)

    def figures(name: str) -> dict[str, Any]:
        values = [getattr(s, name) for s in samples]
        return {
            "ready": getattr(ready, name),
            "start": getattr(start, name),
            "end": values[-1],
            "max": max(values),
        }

    return {
        "warmup_tasks": warm,
        "rss_mb": {
            **figures("rss_mb"),
            "growth": growth,
            "slope_per_100_tasks": None if slope is None else round(slope, 2),
            "bound": RSS_BOUND_MB,
            "ok": growth <= RSS_BOUND_MB,
        },
        "fds": {
            **figures("fds"),
            "growth": fd_growth,
            "bound": FD_BOUND,
            "ok": fd_growth <= FD_BOUND,
        },
        "threads": {
            **figures("threads"),
            "growth": thread_growth,
            "bound": THREAD_BOUND,
            "ok": thread_growth <= THREAD_BOUND,
        },
        "children": {"max_after_a_task": children, "bound": 0, "ok": children == 0},
    }


def _slope(values: Sequence[float]) -> float:
    """Least-squares slope per task (MB per task for RSS)."""
    xs = range(len(values))
    mx, my = statistics.fmean(xs), statistics.fmean(values)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, values, strict=True)) / den if den else 0.0


def build_result(
    records: list[TaskRecord],
    *,
    ready: Sample,
    settings: dict[str, int],
    command: list[str],
    startup_s: float,
    soak_s: float,
    shutdown: dict[str, Any],
    end_checks: list[str],
    errors: list[str],
    info: dict[str, Any],
) -> dict[str, Any]:
    samples = [r.sample for r in records if r.sample is not None]
    counts = Counter(r.status or "lost" for r in records)
    lost = sum(r.lost for r in records) + settings["tasks"] - len(records)
    incomplete = sum(not r.folder_ok for r in records if not r.lost)
    figures = bounds(samples, ready) if samples else {}
    violations = [f"{r.index + 1}: {'; '.join(r.problems)}" for r in records if r.problems]
    violations += end_checks
    for name in ("rss_mb", "fds", "threads", "children"):
        if figures and not figures[name]["ok"]:
            violations.append(f"{name} outside its bound: {figures[name]}")
    cancels = [r for r in records if r.cancel]
    seconds = [r.seconds for r in records]
    tasks, steps, every = settings["tasks"], settings["steps"], settings["cancel_every"]
    cancelling = (
        f", every {ordinal(every)} cancelled after {CANCEL_AFTER_STEPS} steps" if every else ""
    )
    return {
        "benchmark": "soak",
        "machine": info,
        "settings": {**settings, "cancel_after_steps": CANCEL_AFTER_STEPS, "requests": REQUESTS},
        "service_command": command[1:],
        "caption": (
            f"Soak: {tasks} consecutive tasks on one `python -m agent serve` (sim, scripted "
            f"expert, 64x64, video on, {steps}-step budget" + cancelling + f"); on {describe(info)}"
        ),
        "tasks_run": len(records),
        "outcomes": dict(sorted(counts.items())),
        "cancelled_asked": len(cancels),
        "cancelled": sum(r.status == "cancelled" for r in cancels),
        "lost": lost,
        "incomplete_folders": incomplete,
        "seconds_per_task": {
            "mean": round(statistics.fmean(seconds), 2) if seconds else None,
            "max": max(seconds, default=None),
        },
        "event_kb_per_task": round(statistics.fmean(r.event_kb for r in records), 1)
        if records
        else None,
        "startup_s": startup_s,
        "soak_s": round(soak_s, 1),
        "shutdown": shutdown,
        "logged_errors": errors,
        "figures": figures,
        "violations": violations,
        "ok": not violations and lost == 0 and incomplete == 0,
        "tasks": [{**asdict(r), "lost": r.lost} for r in records],
    }


def format_table(result: dict[str, Any]) -> str:
    """The figures and their bounds as a markdown table."""
    f = result["figures"]
    rss, fds, thr, kids = f["rss_mb"], f["fds"], f["threads"], f["children"]
    outcomes = ", ".join(f"{k} {v}" for k, v in result["outcomes"].items())
    secs = result["seconds_per_task"]
    rows = [
        ("tasks", f"{result['tasks_run']} of {result['settings']['tasks']}", ""),
        ("outcomes", outcomes, ""),
        (
            "succeeded / failed / cancelled",
            f"{result['outcomes'].get('success', 0)} / "
            f"{sum(v for k, v in result['outcomes'].items() if k in ('failure', 'fault'))} / "
            f"{result['cancelled']} (of {result['cancelled_asked']} cancelled part-way)",
            "failed: the step budget ran out (by design: the expert needs ~125 steps) or a fault",
        ),
        ("lost tasks", str(result["lost"]), "0"),
        ("incomplete run folders", str(result["incomplete_folders"]), "0"),
        (
            "RSS MB: ready / start / end / max",
            f"{rss['ready']:.1f} / {rss['start']:.1f} / {rss['end']:.1f} / {rss['max']:.1f}",
            f"max - start <= {rss['bound']:g} MB: {rss['growth']:+.1f} MB" + _ok(rss["ok"]),
        ),
        (
            "RSS trend after the start",
            "n/a"
            if rss["slope_per_100_tasks"] is None
            else f"{rss['slope_per_100_tasks']:+.2f} MB per 100 tasks",
            "",
        ),
        (
            "open fds: ready / start / end / max",
            f"{fds['ready']} / {fds['start']} / {fds['end']} / {fds['max']}",
            f"end - start <= {fds['bound']}: {fds['growth']:+d}" + _ok(fds["ok"]),
        ),
        (
            "threads: ready / start / end / max",
            f"{thr['ready']} / {thr['start']} / {thr['end']} / {thr['max']}",
            f"end - start <= {thr['bound']}: {thr['growth']:+d}" + _ok(thr["ok"]),
        ),
        (
            "child processes after a task (max)",
            str(kids["max_after_a_task"]),
            "0" + _ok(kids["ok"]),
        ),
        ("seconds per task: mean / max", f"{secs['mean']} / {secs['max']}", ""),
        ("event history per task (JSON)", f"{result['event_kb_per_task']} kB", ""),
        ("service start-up", f"{result['startup_s']} s", ""),
        (
            "shutdown (Ctrl-C)",
            f"exit {result['shutdown']['exit']} after {result['shutdown']['seconds']} s",
            "exit 130",
        ),
        ("errors in the service log", str(len(result["logged_errors"])), ""),
    ]
    lines = [
        f"start: the sample after the warm-up ({f['warmup_tasks']} tasks); ready: before the first",
        "",
        markdown_table(["figure", "value", "bound"], rows),
    ]
    return "\n".join(lines)


def ordinal(n: int) -> str:
    """1st, 2nd, 3rd, 4th, ..., 11th, 12th, 13th, 21st."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _ok(ok: bool) -> str:
    return " (ok)" if ok else " (VIOLATED)"
