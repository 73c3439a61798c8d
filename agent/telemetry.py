"""Logging (structlog) and per-stage latency statistics.

Logs go to stderr: a human-readable console by default, JSON lines with `json=True` (the CLI's
`--log-json`), so stdout stays free for the CLI's own output. Latencies are kept as raw samples per
stage (an episode has at most a few thousand) and summarised as median / p90 / p99 / max.
"""

from __future__ import annotations

import logging
import sys
from collections import defaultdict
from collections.abc import Iterable

import numpy as np
import structlog

log = structlog.get_logger("agent")


def configure_logging(*, json: bool = False, level: str = "info") -> None:
    """Set up structlog once per process; call it from entry points, not from library code."""
    processors: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: structlog.typing.Processor
    if json:
        processors.append(structlog.processors.format_exc_info)
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    structlog.configure(
        processors=[*processors, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )


def ensure_logging() -> None:
    """Warnings and errors to stderr when the embedding program has not set structlog up.

    structlog's unconfigured default prints every level to stdout, which would mix the runtime's
    info logs into an embedder's own output; a program that configures structlog keeps its setup.
    """
    if not structlog.is_configured():
        configure_logging(level="warning")


def summarize(samples: Iterable[float]) -> dict[str, float]:
    """median, p90, p99, max, mean and count of a list of milliseconds (empty -> count 0 only).

    The mean is what a rate is made of (a loop's period is the sum of its stages' means).
    """
    values = np.asarray(list(samples), dtype=np.float64)
    if values.size == 0:
        return {"count": 0}
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    return {
        "count": int(values.size),
        "median": round(float(p50), 2),
        "p90": round(float(p90), 2),
        "p99": round(float(p99), 2),
        "max": round(float(values.max()), 2),
        "mean": round(float(values.mean()), 2),
    }


class LatencyStats:
    """Latency samples per stage name, in milliseconds."""

    def __init__(self) -> None:
        self._samples: defaultdict[str, list[float]] = defaultdict(list)

    def add(self, stage: str, ms: float) -> None:
        self._samples[stage].append(ms)

    def add_all(self, latencies: dict[str, float]) -> None:
        for stage, ms in latencies.items():
            self.add(stage, ms)

    def summary(self) -> dict[str, dict[str, float]]:
        return {stage: summarize(values) for stage, values in sorted(self._samples.items())}
