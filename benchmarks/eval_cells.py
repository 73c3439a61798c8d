"""The evaluation's cells: the paper's tables and their numbers, which cells a run has, and a
cell's successes out of trials with its 95% Wilson score interval (see `benchmarks.eval_tables`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

#: trials a cell by default: the paper's counts (Table II's "ours" row is Table I's cells)
TRIALS_PER_CELL = {"I": 40, "II": 20}


#: where each `--masks` source gets its masks: the segmenter it runs (models.segmenter)
MASK_SEGMENTERS = {"truth": "ground_truth", "grabcut": "grabcut"}


MASK_TITLES = {
    "truth": "simulator-truth masks (segmenter ground_truth)",
    "grabcut": "GrabCut masks inside the tracked boxes (segmenter grabcut; no mask oracle)",
}


#: `--masks` choices -> the mask sources measured, Table I block order (Table II: the first)
MASK_CHOICES = {"truth": ("truth",), "grabcut": ("grabcut",), "both": ("truth", "grabcut")}


#: 95% two-sided normal quantile
Z95 = 1.959963984540054


PAPER_TABLE_I: dict[tuple[str, str], float] = {
    ("standard", "seen"): 82.5,
    ("standard", "unseen"): 80.0,
    ("new_background", "seen"): 65.0,
    ("new_background", "unseen"): 55.0,
    ("more_distractors", "seen"): 75.0,
    ("more_distractors", "unseen"): 70.0,
}


#: Table II settings, in the paper's column order
SETTINGS_II: tuple[tuple[str, str, str], ...] = (
    ("Seen", "standard", "seen"),
    ("Unseen", "standard", "unseen"),
    ("New background", "new_background", "seen"),
    ("More distractors", "more_distractors", "seen"),
)


PAPER_TABLE_II: dict[str, tuple[float, float, float, float]] = {
    "ours": (82.5, 80.0, 65.0, 75.0),
    "box": (50.0, 40.0, 25.0, 30.0),
    "no_tracking": (70.0, 50.0, 55.0, 70.0),
    "single_view": (65.0, 80.0, 20.0, 70.0),
    "rgbm_only": (85.0, 70.0, 50.0, 70.0),
}


VARIANT_LABELS = {
    "ours": "Ours",
    "box": "replace mask with bbox",
    "no_tracking": "w/o tracking",
    "single_view": "single view",
    "rgbm_only": "RGB-M only",
}


class EvalError(ValueError):
    """The evaluation cannot run as asked (tables, cells, policy files); one line, nothing run."""


def wilson_interval(successes: int, trials: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a binomial proportion (95% for the default z), as fractions.

    Unlike the normal approximation it stays inside [0, 1] and is not empty at 0/n or n/n:
    7/10 -> (0.397, 0.892), 0/10 -> (0, 0.278), 10/10 -> (0.722, 1).
    """
    if trials < 1 or not 0 <= successes <= trials:
        raise ValueError(f"need 0 <= successes <= trials and trials >= 1, got {successes}/{trials}")
    p = successes / trials
    z2 = z * z
    denominator = 1 + z2 / trials
    centre = (p + z2 / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials)) / denominator
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == trials else min(1.0, centre + half)
    return low, high


@dataclass
class Cell:
    """Trials of one (variant, setting, split, masks): successes out of trials, with each outcome.

    `split` is the objects' split (seen / unseen); `masks` where the masks come from
    (MASK_SEGMENTERS: truth or grabcut).
    """

    variant: str
    setting: str
    split: str
    trials: int = 0
    successes: int = 0
    outcomes: list[dict[str, Any]] = field(default_factory=list)
    note: str = ""
    masks: str = "truth"

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.variant, self.setting, self.split, self.masks)

    @property
    def table(self) -> str:
        """The table whose trial count the cell takes: I for ours, II for the variants."""
        return "I" if self.variant == "ours" else "II"

    @property
    def segmenter(self) -> str:
        """The segmenter its trials run: the box variant's boxes, else the mask source's."""
        return "box" if self.variant == "box" else MASK_SEGMENTERS[self.masks]

    @property
    def rate(self) -> float | None:
        return 100.0 * self.successes / self.trials if self.trials else None

    @property
    def ci95(self) -> tuple[float, float] | None:
        """The 95% Wilson score interval in %, or None before any trial."""
        if not self.trials:
            return None
        low, high = wilson_interval(self.successes, self.trials)
        return 100.0 * low, 100.0 * high

    def text(self) -> str:
        if not self.trials or self.ci95 is None:
            return f"- ({self.note})" if self.note else "-"
        low, high = self.ci95
        return f"{self.rate:.1f} ({self.successes}/{self.trials}; {low:.1f}-{high:.1f})"


def cell_trials(cell: Cell, trials: int | Mapping[str, int]) -> int:
    """How many trials `cell` runs: `trials`, or its table's entry of it."""
    return trials if isinstance(trials, int) else trials[cell.table]


TABLES = ("I", "II")


def plan_cells(tables: str, quick: bool, masks: Sequence[str] = ("truth",)) -> list[Cell]:
    """The distinct (variant, setting, split, masks) cells the requested tables need: Table I once
    per mask source in `masks`, Table II with the first of them.

    EvalError names the tables there are when `tables` asks for another.
    """
    wanted = {t.strip().upper() for t in tables.split(",")} - {""}
    unknown = sorted(wanted - set(TABLES))
    if unknown or not wanted:
        raise EvalError(
            f"--tables {tables!r}: no table {', '.join(unknown) or 'named'}; use I, II or I,II"
        )
    keys: list[tuple[str, str, str, str]] = []
    if "I" in wanted:
        keys += [("ours", s, sp, m) for m in masks for (s, sp) in PAPER_TABLE_I]
    if "II" in wanted:
        keys += [(v, s, sp, masks[0]) for v in PAPER_TABLE_II for _, s, sp in SETTINGS_II]
    keys = list(dict.fromkeys(keys))
    if quick:
        keys = keys[:1]
    return [Cell(v, s, sp, masks=m) for v, s, sp, m in keys]


def select_cells(cells: Sequence[Cell], spec: str) -> list[Cell]:
    """The cells named in `spec`: SETTING:SPLIT means ours, VARIANT:SETTING:SPLIT a Table II row
    (in every mask source planned).

    EvalError, naming the cells there are, for a name that is none of `cells`.
    """
    have = {(c.variant, c.setting, c.split) for c in cells}
    wanted = set()
    for item in (part.strip() for part in spec.split(",")):
        if not item:
            continue
        parts = item.split(":")
        key = tuple(["ours", *parts] if len(parts) == 2 else parts)
        if key not in have:
            raise EvalError(f"--cells: no cell {item!r} in these tables; {cell_names(cells)}")
        wanted.add(key)
    if not wanted:
        raise EvalError(f"--cells {spec!r} names no cell; {cell_names(cells)}")
    return [c for c in cells if (c.variant, c.setting, c.split) in wanted]


def cell_names(cells: Sequence[Cell]) -> str:
    """The cells there are, for an error: [VARIANT:]SETTING:SPLIT, variants with the same cells
    grouped, e.g. "cells are SETTING:SPLIT (ours) ...; VARIANT:SETTING:SPLIT for box/..."."""
    by_variant: dict[str, dict[str, None]] = {}
    for c in cells:
        by_variant.setdefault(c.variant, {})[f"{c.setting}:{c.split}"] = None
    groups: dict[tuple[str, ...], list[str]] = {}
    for variant, seen in by_variant.items():
        groups.setdefault(tuple(seen), []).append(variant)
    text = []
    for names, variants in groups.items():
        if variants == ["ours"]:
            text.append(f"SETTING:SPLIT (ours) in {', '.join(names)}")
        else:
            text.append(f"VARIANT:SETTING:SPLIT for {'/'.join(variants)} in {', '.join(names)}")
    return "cells are " + "; ".join(text)
