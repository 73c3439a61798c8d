"""The loop benchmark's output: the side-by-side report and the timeline plot."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from agent.config import Config
from benchmarks.loop.runs import BREAKDOWN, LoopResult


def _fmt(summary: Mapping[str, float], key: str) -> str:
    value = summary.get(key)
    return "-" if value is None else f"{value:.1f}"


def format_report(results: Sequence[LoopResult]) -> str:
    """Markdown: the loops side by side (the last one is the sequential baseline), then CPU per
    consumer."""
    base = results[-1]

    def lat(d: Mapping[str, float]) -> str:
        return f"{_fmt(d, 'median')} / {_fmt(d, 'p90')} / {_fmt(d, 'p99')}"

    def stage(r: LoopResult, name: str) -> str:
        return _fmt(r.stage_ms.get(name, {}), "median")

    def bound(r: LoopResult) -> str:
        b = r.bounds
        return (
            f"1/slowest ({b['slowest_stage']}, {b['slowest_ms']:.0f} ms) = "
            f"{b['bound_slowest_hz']:.2f} Hz: {b['of_slowest']:.0%}; "
            f"1/sum ({b['sum_ms']:.0f} ms) = {b['bound_sum_hz']:.2f} Hz: {b['of_sum']:.0%}; "
            f"{b['cores']} cores / CPU per step ({b['cpu_ms']:.0f} ms) = "
            f"{b['bound_cpu_hz']:.2f} Hz: {b['of_cpu']:.0%}"
        )

    def work_ms(r: LoopResult) -> str:
        """render + perceive + act: what capture-to-command cannot go below."""
        medians = [r.render_stage_ms]
        medians += [r.stage_ms.get(k, {}).get("median", 0.0) for k in ("perceive", "act")]
        return f"{sum(medians):.1f}"

    def parts(r: LoopResult) -> str:
        b = r.breakdown
        if not b:
            return "-"
        return ", ".join(f"{k} {b[k]:.1f}" for k in BREAKDOWN) + f" (of {b['total']:.1f})"

    def jitter(r: LoopResult) -> str:
        what = "|interval - median| " if r is base else "command lateness "
        return what + lat(r.jitter_ms)

    def overhead(r: LoopResult) -> str:
        if r is base:
            return f"{r.cpu['loop bookkeeping']['ms_per_step']:.2f} (loop bookkeeping)"
        return f"{r.cpu['runtime overhead (event loop)']['ms_per_step']:.2f} (event loop thread)"

    rows: list[tuple[str, Callable[[LoopResult], str]]] = [
        ("control steps", lambda r: str(r.steps)),
        ("achieved rate (Hz)", lambda r: f"{r.rate_hz:.2f}"),
        (
            "rate / sequential",
            lambda r: f"{r.rate_hz / base.rate_hz:.2f}x" if base.rate_hz and r is not base else "",
        ),
        ("how close to the bounds", bound),
        ("capture-to-command ms (median / p90 / p99)", lambda r: lat(r.latency_ms)),
        ("render + perceive + act ms (medians)", work_ms),
        ("capture-to-command by part, ms (medians)", parts),
        ("step interval ms (median / p90 / p99)", lambda r: lat(r.interval_ms)),
        ("jitter ms (median / p90 / p99)", jitter),
        ("stale actions", lambda r: str(r.stale) + (" (would be refused)" if r is base else "")),
        ("frames dropped", lambda r: ", ".join(f"{k} {v}" for k, v in r.dropped.items()) or "0"),
        (
            "render ms per view (median)",
            lambda r: " / ".join(f"{v}: {ms:.1f}" for v, ms in r.render_ms.items()) or "-",
        ),
        *[
            (f"{name} ms per call (median)", lambda r, n=name: stage(r, n))
            for name in ("capture", "perceive", "act", "command")
        ],
        ("runtime overhead, CPU ms per step", overhead),
        ("ended", lambda r: r.outcome),
    ]
    head = " | ".join(r.mode for r in results)
    lines = [f"| | {head} |", "|---" * (len(results) + 1) + "|"]
    lines += [f"| {name} | " + " | ".join(cell(r) for r in results) + " |" for name, cell in rows]
    lines += ["", "CPU per step (ms) and share of the process's CPU:", ""]
    lines += [f"| consumer | {head} |", "|---" * (len(results) + 1) + "|"]
    for name in dict.fromkeys(k for r in results for k in r.cpu):
        cells = []
        for r in results:
            c = r.cpu.get(name)
            cells.append(f"{c['ms_per_step']:.1f} ({c['share']:.0%})" if c else "-")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_timeline(results: Sequence[LoopResult], path: Path) -> bool:
    """A Gantt chart per loop: each stage's calls over a few seconds of the run, so a reader sees
    which stages overlap. False (and nothing written) without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, axes = plt.subplots(len(results), 1, figsize=(11, 1.1 + 1.6 * len(results)), sharex=True)
    colours = plt.get_cmap("tab10")
    for ax, result in zip(np.atleast_1d(axes), results, strict=True):
        names = list(result.timeline)
        for row, name in enumerate(names):
            bars = [(a, max(b - a, 0.5)) for a, b in result.timeline[name]]
            ax.broken_barh(bars, (row - 0.4, 0.8), color=colours(row % 10))
        ax.set_yticks(range(len(names)), names, fontsize=8)
        ax.set_ylim(-0.6, len(names) - 0.4)
        ax.invert_yaxis()
        ax.set_title(f"{result.mode}: {result.rate_hz:.1f} Hz", fontsize=9, loc="left")
        ax.grid(axis="x", alpha=0.3)
    ax.set_xlabel("ms")
    ax.set_xlim(0, 3000)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


def models_line(config: Config) -> str:
    m, s, r = config.models, config.sim, config.runtime
    return (
        f"reasoner {m.reasoner}, detector {m.detector}, tracker {m.tracker}, segmenter "
        f"{m.segmenter}, policy {m.policy}"
        + (f" ({config.policy.onnx.name})" if m.policy == "tpm" else "")
        + f"; {len(config.cameras.views)} views "
        f"{s.image_width}x{s.image_height} at {s.camera_fps:g} fps; control {r.control_hz:g} Hz"
    )
