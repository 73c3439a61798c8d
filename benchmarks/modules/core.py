"""The CPU table's machinery: what a module's builder returns (`Probe`s), the registry's
`Entry`, the shared `Bench`, timing a call, turning probes into rows, and the table.
"""

from __future__ import annotations

import gc
import itertools
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agent.config import Config
from benchmarks._cli import configured
from benchmarks.machine import describe, markdown_table
from benchmarks.table4 import WEIGHTS_NOTE, Row, entry_row, module_row
from models.types import Box


class Unavailable(Exception):
    """This module cannot be measured here; the message (one line) says why."""


@dataclass(frozen=True, slots=True)
class Probe:
    """One table row: `call` runs the module once, or `derived` combines other rows' medians.

    `derived` is ((row name, weight), ...): e.g. SAM's per-extra-box cost is the median of the
    two-box decoder minus the one-box decoder. Derived rows have a median only.
    """

    name: str
    engine: str
    input: str
    call: Callable[[], object] | None = None
    derived: tuple[tuple[str, float], ...] = ()
    paper: str | None = None
    note: str = ""


@dataclass(frozen=True, slots=True)
class Entry:
    """A module in the table: `build(bench)` returns its probes or raises Unavailable.

    `heavy` modules (seconds or more per call on a CPU) are left out by `--no-heavy`, which the
    CI smoke test uses; each family keeps at least one light entry so the smoke run covers it.
    """

    key: str
    family: str
    build: Callable[[Bench], list[Probe]]
    heavy: bool = False
    paper: str | None = None


@dataclass(frozen=True, slots=True)
class Settings:
    """How long to measure: see the module docstring."""

    warmup: int = 3
    runs: int = 200
    min_runs: int = 3
    budget_s: float = 20.0
    size: int = 224
    frames: int = 30

    @classmethod
    def quick(cls, size: int = 96) -> Settings:
        return cls(warmup=1, runs=3, min_runs=2, budget_s=0.5, size=size, frames=6)


@dataclass
class Scene:
    """Rendered sim frames of one view (the arm moving), the task's phrases and first boxes."""

    frames: list[Any]
    phrases: list[str]
    boxes: list[Box]
    size: int

    @property
    def image(self) -> np.ndarray:
        return self.frames[0].rgb

    def sweep(self) -> Iterator[Any]:
        """Frames forwards then backwards, forever: continuous motion for trackers."""
        order = self.frames + self.frames[-2:0:-1]
        return itertools.cycle(order)


@dataclass
class Bench:
    """What builders share: config, scene, threads, a folder for stand-in weights, a cache."""

    config: Config
    scene: Scene
    workdir: Path
    threads: int
    cache: dict[str, Any] = field(default_factory=dict)

    def configured(self, settings: dict[str, Any]) -> Config:
        """The config with dotted `section.key` settings replaced (validated again)."""
        return configured(self.config, settings)

    def cached(self, key: str, make: Callable[[], Any]) -> Any:
        if key not in self.cache:
            self.cache[key] = make()
        return self.cache[key]


def ort_engine(session: Any) -> str:
    """'onnxruntime <provider>' with the provider the session really runs on."""
    return f"onnxruntime {session.get_providers()[0].removesuffix('ExecutionProvider')}"


def measure(call: Callable[[], object], settings: Settings) -> list[float]:
    """Milliseconds per call: warm-up, then runs until `runs` or the budget (>= `min_runs`).

    Warm-up stops after the first call when one call alone uses a budget share: a model that
    takes 30 s is warm after one call, and three more would only burn the budget.
    """
    share = settings.budget_s / max(settings.min_runs, 1)
    for _ in range(max(settings.warmup, 1)):
        t0 = time.perf_counter()
        call()
        if time.perf_counter() - t0 > share:
            break
    samples: list[float] = []
    start = time.perf_counter()
    while len(samples) < settings.runs:
        t0 = time.perf_counter()
        call()
        samples.append((time.perf_counter() - t0) * 1e3)
        if len(samples) >= settings.min_runs and time.perf_counter() - start >= settings.budget_s:
            break
    return samples


def run_entries(
    entries: Sequence[Entry], bench: Bench, settings: Settings, log: Any = None
) -> list[Row]:
    """Build and measure each entry in turn; a failing entry becomes an error row, not a crash."""
    rows: list[Row] = []
    for entry in entries:
        t0 = time.perf_counter()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # timm / groundingdino deprecation noise
                probes = entry.build(bench)
        except Unavailable as exc:
            rows.append(entry_row(entry, "n/a", str(exc)))
            continue
        except Exception as exc:  # one broken backend must not hide the others' numbers
            rows.append(entry_row(entry, "error", f"{type(exc).__name__}: {exc}"))
            continue
        measured: dict[str, Row] = {}
        for probe in probes:
            row = module_row(
                entry,
                probe.name,
                probe.paper,
                engine=probe.engine,
                input=probe.input,
                note=probe.note,
            )
            if probe.call is not None:
                try:
                    row.set_stats(measure(probe.call, settings), 2)
                except Exception as exc:
                    row.status, row.note = "error", f"{type(exc).__name__}: {exc}"
            else:
                row.median = _derived_median(probe, measured)
                row.status = "error" if row.median is None else "derived"
            measured[probe.name] = row
            rows.append(row)
        if log is not None:
            print(f"  {entry.key}: {time.perf_counter() - t0:.1f} s", file=log, flush=True)
        gc.collect()  # drop the module before building the next (SAM / DINO hold GBs)
    return rows


def _derived_median(probe: Probe, measured: dict[str, Row]) -> float | None:
    """The weighted sum of the medians `probe.derived` names (None when one is missing)."""
    total = 0.0
    for name, weight in probe.derived:
        part = measured.get(name)
        if part is None or part.median is None:
            return None
        total += part.median * weight
    return round(total, 2)


def format_table(rows: Sequence[Row]) -> str:
    """A markdown table: ours beside the paper's (GPU) where the paper has the module."""
    columns = ["family", "module", "engine", "input", "runs", "median", "p90", "p99", "min"]
    columns += ["max", "paper (GPU)", "note"]
    return markdown_table(
        columns, ([r.family, r.module, *r.timing_cells(), r.paper_cell, r.note] for r in rows)
    )


def caption(info: dict[str, Any], settings: Settings, threads: int) -> str:
    return (
        f"Latency per call in ms on {describe(info)}; {threads} thread(s) for torch, ONNX "
        f"Runtime and OpenCV; {WEIGHTS_NOTE}. Paper: Table IV, on an NVIDIA GPU."
    )
