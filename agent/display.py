"""Terminal rendering of a run's events: a live status panel and the final summary table.

Only the CLI uses this; the runtime knows nothing about terminals.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table

from agent.events import (
    Detected,
    Event,
    Fault,
    Finished,
    Outcome,
    Reasoned,
    Started,
    Step,
    describe_task,
)

STAGES_SHOWN = ("perceive", "act", "command", "total")
BAR_WIDTH = 30


class RunDisplay:
    """Collects events; shows a live panel on a terminal and prints the summary at the end."""

    def __init__(
        self,
        request: str,
        folder: Path,
        *,
        live: bool = True,
        budget: tuple[int, float] | None = None,
    ) -> None:
        self.request = request
        self.folder = folder
        self.outcome: Outcome | None = None
        self._budget = budget  # (max steps, max seconds) of the episode: the progress bar's end
        self._started: float | None = None  # when the task started (time.monotonic)
        self._stage = "starting"
        self._lines: list[str] = []
        self._step: Step | None = None
        self._faults: list[str] = []
        self._regained = 0  # tracks lost and found again by re-detection
        self._out = plain_console()  # piped into a file: whole lines, not wrapped at 80
        self._err = Console(stderr=True)
        self._live = (
            Live(self._render(), console=self._err, refresh_per_second=8, transient=True)
            if live and self._err.is_terminal
            else None
        )

    def __enter__(self) -> RunDisplay:
        if self._live is not None:
            self._live.__enter__()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        if self._live is not None:
            self._live.__exit__(*exc_info)

    def stage(self, text: str) -> None:
        self._stage = text
        self._refresh()

    def update(self, event: Event) -> None:
        if isinstance(event, Started):
            self._started = time.monotonic()
            world = event.world
            how = "" if world is None else f" ({'reset' if world.reset else 'carried over'})"
            self._note(f"scene{how}: {', '.join(event.scene_objects)}")
        elif isinstance(event, Reasoned):
            if event.pick is None:
                self._note(f"reasoned ({event.backend}): nothing fits - {event.rationale}")
            else:
                self._note(
                    f"reasoned ({event.backend}, {event.latency_ms:.0f} ms): "
                    f"{describe_task(event.skill, event.pick, event.place)}"
                )
            self._stage = "detecting"
        elif isinstance(event, Detected) and event.redetection:
            self._regained += 1
        elif isinstance(event, Detected):
            found = "found" if event.box else "not visible"
            self._note(f"{event.role} '{event.label}' {found} in {event.view}")
            self._stage = "executing"
        elif isinstance(event, Step):
            self._step = event
        elif isinstance(event, Fault):
            self._faults.append(f"{event.where}: {event.message}")
            self._note(f"[red]fault[/red] {event.where}: {event.message}")
        elif isinstance(event, Finished):
            self.outcome = event.outcome
            self._stage = f"finished: {event.outcome.status}"
        self._refresh()

    def _note(self, line: str) -> None:
        self._lines.append(line)
        if self._live is None:
            self._err.print(line, highlight=False)

    def _refresh(self) -> None:
        if self._live is not None:
            self._live.update(self._render())

    def _render(self) -> Table:
        table = Table.grid(padding=(0, 1))
        table.add_row("[bold]request[/bold]", self.request)
        table.add_row("[bold]stage[/bold]", self._stage)
        for line in self._lines[-6:]:
            table.add_row("", line)
        if self._step is not None:
            s = self._step
            lat = "  ".join(f"{k} {s.latency_ms.get(k, 0):.0f}" for k in STAGES_SHOWN)
            table.add_row(
                "[bold]step[/bold]",
                f"{s.index}  gripper "
                f"{'closed' if s.gripper_closed else 'open'}  ee "
                f"({s.ee_pos[0]:.3f}, {s.ee_pos[1]:.3f}, {s.ee_pos[2]:.3f})"
                f"{'' if s.executed else '  [yellow]stale: held[/yellow]'}",
            )
            table.add_row("[bold]ms[/bold]", lat)
            if self._budget is not None:
                table.add_row("[bold]progress[/bold]", self._progress(s.index))
            table.add_row("[bold]tracks[/bold]", f"regained by re-detection {self._regained}")
        return table

    def _progress(self, step: int) -> Table:
        """Step of the step budget, elapsed of the time budget, and a bar for the nearer end."""
        assert self._budget is not None
        max_steps, max_s = self._budget
        elapsed = 0.0 if self._started is None else time.monotonic() - self._started
        done = min(1.0, max(step / max_steps, elapsed / max_s))
        row = Table.grid(padding=(0, 1))
        row.add_row(
            ProgressBar(total=1.0, completed=done, width=BAR_WIDTH),
            f"step {step} of {max_steps}  {elapsed:.1f} s of {max_s:g} s",
        )
        return row

    def print_summary(self) -> None:
        """The outcome, per-stage latency percentiles and where the run folder is, on stdout."""
        outcome = self.outcome
        if outcome is None:
            return
        colour = "green" if outcome.status == "success" else "red"
        self._out.print(
            f"[bold {colour}]{outcome.status.upper()}[/bold {colour}]: {outcome.reason}"
            # a failure's reason says what ran out; how the arm ended adds what it was doing
            + (f" ({outcome.ended})" if outcome.status == "failure" and outcome.ended else ""),
            highlight=False,
        )
        self._out.print(
            f"steps {outcome.steps}  duration {outcome.duration_s:.1f} s  "
            f"stale actions {outcome.stale_actions}",
            highlight=False,
        )
        dropped = ", ".join(f"{k} {v}" for k, v in outcome.dropped.items())
        self._out.print(f"dropped (overwritten before use): {dropped}", highlight=False)
        if outcome.latency_ms:
            table = Table(title="latency per stage (ms)", title_justify="left")
            for column in ("stage", "count", "median", "p90", "p99", "max"):
                table.add_column(column, justify="left" if column == "stage" else "right")
            for stage, stats in outcome.latency_ms.items():
                table.add_row(
                    stage,
                    *(f"{stats.get(k, 0):g}" for k in ("count", "median", "p90", "p99", "max")),
                )
            self._out.print(table)
        self._out.print(f"run folder: {self.folder}", highlight=False)


def plain_console() -> Console:
    """A console for stdout that hard-wraps only on a terminal: piped into a file or another
    program, a line stays whole (rich would otherwise wrap at 80 columns, mid-phrase)."""
    console = Console()
    if not console.is_terminal:
        console = Console(width=10_000)
    return console
