"""`eval` writes its tables as a bar chart (eval.png beside eval.md): the numbers drawn are the
report's own, and the picture is a real PNG of both tables."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.eval_cells import PAPER_TABLE_I, PAPER_TABLE_II, plan_cells
from benchmarks.eval_chart import panels, plot_tables

pytest.importorskip("matplotlib")


def _measured():
    cells = plan_cells("I,II", quick=False)
    for i, cell in enumerate(cells[:-1]):  # the last cell stays unmeasured: no bar
        cell.trials, cell.successes = 20, 4 + (i * 3) % 17
    return cells


def test_the_bars_are_the_cells_rates_with_their_wilson_intervals() -> None:
    cells = _measured()
    table_i, table_ii = panels(cells)
    assert table_i.title.startswith("Table I") and table_ii.title.startswith("Table II")
    assert len(table_i.bars) == len(PAPER_TABLE_I) and len(table_ii.bars) == 5 * 4
    by = {c.key: c for c in cells}
    first = by[("ours", "standard", "seen", "truth")]
    bar = table_i.bars[0]
    assert (bar.group, bar.series, bar.paper) == ("Standard", "seen", 82.5)
    assert bar.rate == first.rate and (bar.low, bar.high) == first.ci95
    assert bar.low is not None and bar.high is not None and bar.low < bar.rate < bar.high
    assert [b.paper for b in table_ii.bars[:4]] == list(PAPER_TABLE_II["ours"])
    assert table_ii.bars[-1].rate is None and table_ii.bars[-1].low is None  # not measured


def test_the_chart_is_a_png_with_a_panel_per_table(tmp_path: Path) -> None:
    from PIL import Image

    path = tmp_path / "eval" / "eval.png"
    assert plot_tables(_measured(), ("truth", "grabcut"), path)
    with Image.open(path) as image:
        assert image.format == "PNG"
        width, height = image.size
    assert width > 800 and height > 3 * 250  # three panels: Table I twice, Table II
