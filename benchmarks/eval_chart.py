"""The evaluation's tables as a picture: `eval.png` beside `eval.md`.

One panel per Table I block (a mask source) and one for Table II: our success rate per cell as a
bar with its 95% Wilson score interval as the error bar, and the paper's real-robot number as a
black tick on the same bar, so a reader sees at a glance which differences the trial counts can
tell apart. The numbers are the report's own (`Cell.rate`, `Cell.ci95`); a cell without trials
has no bar. matplotlib comes with the `tpm` extra; without it no picture is written.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks import eval_cells as tables
from benchmarks.eval_cells import Cell

SETTINGS_I = (
    ("standard", "Standard"),
    ("new_background", "New background"),
    ("more_distractors", "More distractors"),
)


@dataclass(frozen=True)
class Bar:
    """One cell as drawn: success rate and its 95% interval in % (None: no trials), the paper's."""

    group: str  # the x-axis label the bar sits at
    series: str  # the legend entry (split or method)
    rate: float | None
    low: float | None
    high: float | None
    paper: float


@dataclass(frozen=True)
class Panel:
    title: str
    groups: list[str]
    series: list[str]
    bars: list[Bar]


def panels(cells: Sequence[Cell], masks: Sequence[str] = ("truth",)) -> list[Panel]:
    """What the chart shows, as data: Table I once per mask source, then Table II (as markdown)."""
    by = {c.key: c for c in cells}

    def bar(key: tuple[str, str, str, str], group: str, series: str, paper: float) -> Bar:
        cell = by.get(key)
        rate, ci = (cell.rate, cell.ci95) if cell is not None else (None, None)
        low, high = ci if ci is not None else (None, None)
        return Bar(group, series, rate, low, high, paper)

    out = []
    for source in masks:
        bars = [
            bar(
                ("ours", setting, split, source),
                label,
                split,
                tables.PAPER_TABLE_I[(setting, split)],
            )
            for setting, label in SETTINGS_I
            for split in ("seen", "unseen")
        ]
        title = f"Table I, {tables.MASK_TITLES[source].split(' (')[0]}"
        out.append(Panel(title, [label for _, label in SETTINGS_I], ["seen", "unseen"], bars))
    bars = [
        bar((variant, setting, split, masks[0]), label, tables.VARIANT_LABELS[variant], ref)
        for variant, paper in tables.PAPER_TABLE_II.items()
        for (label, setting, split), ref in zip(tables.SETTINGS_II, paper, strict=True)
    ]
    groups = [label for label, _, _ in tables.SETTINGS_II]
    series = [tables.VARIANT_LABELS[v] for v in tables.PAPER_TABLE_II]
    out.append(
        Panel(f"Table II, {tables.MASK_TITLES[masks[0]].split(' (')[0]}", groups, series, bars)
    )
    return out


def plot_tables(cells: Sequence[Cell], masks: Sequence[str], path: Path) -> bool:
    """Write the chart to `path` (PNG); False, and nothing written, without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    shown = panels(cells, masks)
    fig, axes = plt.subplots(len(shown), 1, figsize=(11, 3.4 * len(shown)), squeeze=False)
    colours = plt.get_cmap("tab10")
    for ax, panel in zip(axes[:, 0], shown, strict=True):
        width = 0.8 / len(panel.series)
        for s, series in enumerate(panel.series):
            for bar in (b for b in panel.bars if b.series == series):
                x = panel.groups.index(bar.group) + (s - (len(panel.series) - 1) / 2) * width
                label = series if bar is _first(panel.bars, series) else None
                if bar.rate is not None and bar.low is not None and bar.high is not None:
                    err = [[bar.rate - bar.low], [bar.high - bar.rate]]
                    ax.bar(x, bar.rate, width * 0.9, color=colours(s), label=label)
                    ax.errorbar(x, bar.rate, yerr=err, fmt="none", ecolor="0.2", capsize=2)
                else:  # not measured (not asked for, or no policy file): said, not drawn
                    ax.bar(x, 0, width * 0.9, color=colours(s), label=label)
                    ax.text(x, 2, "no trials", rotation=90, fontsize=6, ha="center", va="bottom")
                ax.plot(x, bar.paper, marker="_", color="black", markersize=12, mew=2)
        ax.plot([], [], marker="_", color="black", linestyle="none", mew=2, label="paper (real)")
        ax.set_xticks(range(len(panel.groups)), panel.groups)
        ax.set_ylim(0, 100)
        ax.set_ylabel("success %")
        ax.set_title(panel.title, loc="left", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.suptitle("Success rate in simulation, 95% Wilson intervals; ticks: the paper's numbers")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


def _first(bars: Sequence[Bar], series: str) -> Bar:
    return next(b for b in bars if b.series == series)
