"""Prometheus text exposition of the service: task counts, per-stage latency, control rate, faults.

Everything is derived from the runtime's public events (the same ones clients stream), so the
metrics can never disagree with what a client saw. Written by hand rather than with
prometheus_client: a handful of counters and one histogram family do not justify a dependency or
its process-global registry (tests start several services in one process).
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field

from agent.events import SCHEMA_VERSION, Detected, Event, Fault, Finished, Reasoned, Started, Step

# seconds; from a fast model call (1 ms) to a slow reasoner (10 s)
BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
RATE_WINDOW = 20  # steps over which the control rate is measured

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass
class _Histogram:
    buckets: list[int] = field(default_factory=lambda: [0] * len(BUCKETS_S))
    total: float = 0.0
    count: int = 0

    def observe(self, seconds: float) -> None:
        for i, bound in enumerate(BUCKETS_S):
            if seconds <= bound:
                self.buckets[i] += 1
        self.total += seconds
        self.count += 1


def _labels(**labels: str) -> str:
    def escape(value: str) -> str:
        return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")

    return "{" + ",".join(f'{k}="{escape(v)}"' for k, v in labels.items()) + "}"


def _num(value: float) -> str:
    return repr(float(value)) if isinstance(value, float) else str(value)


class Metrics:
    """Counters fed with every event of every task; `render()` gives the /metrics text."""

    def __init__(self, *, profile: str, target_hz: float) -> None:
        self.profile = profile
        self.target_hz = target_hz
        self.tasks_started = 0
        self.tasks_rejected = 0
        self.tasks = Counter[str]()  # by outcome status ("error" when the runtime refused it)
        self.steps = Counter[str]()  # by executed "true" / "false" (stale actions are refused)
        self.faults = Counter[str]()  # by where
        self.dropped = Counter[str]()  # by channel, summed over finished episodes
        self.latency: dict[str, _Histogram] = {}
        self.listeners = 0
        self.requests_refused = Counter[str]()  # by reason: a cap of [service], or throttled
        self._step_times: deque[float] = deque(maxlen=RATE_WINDOW)
        self._last_detection: tuple[str, float] | None = None

    # ----------------------------------------------------------------- feeding
    def observe(self, event: Event) -> None:
        if isinstance(event, Started):
            self.tasks_started += 1
            self._step_times.clear()
        elif isinstance(event, Reasoned):
            self._latency("reason", event.latency_ms)
        elif isinstance(event, Detected):
            # one detector call emits a Detected per view and role, all with its latency
            call = (event.episode, event.latency_ms)
            if call != self._last_detection:
                self._latency("redetect" if event.redetection else "detect", event.latency_ms)
            self._last_detection = call
        elif isinstance(event, Step):
            self.steps["true" if event.executed else "false"] += 1
            self._step_times.append(event.t)
            for stage, ms in event.latency_ms.items():
                self._latency(stage, ms)
        elif isinstance(event, Fault):
            self.faults[event.where] += 1
        elif isinstance(event, Finished):
            self.tasks[event.outcome.status] += 1
            self.dropped.update(event.outcome.dropped)

    def refused(self) -> None:
        """A task refused with 409 (one robot, one task)."""
        self.tasks_rejected += 1

    def request_refused(self, reason: str) -> None:
        """A request turned away before the routes: over a cap (503) or throttled (429)."""
        self.requests_refused[reason] += 1

    def task_error(self) -> None:
        """A task the runtime refused before any episode began (no Finished event)."""
        self.tasks["error"] += 1

    def _latency(self, stage: str, ms: float) -> None:
        self.latency.setdefault(stage, _Histogram()).observe(ms / 1e3)

    @property
    def control_rate_hz(self) -> float:
        """Steps per second over the newest steps of the current (or last) episode."""
        times = self._step_times
        if len(times) < 2 or times[-1] <= times[0]:
            return 0.0
        return (len(times) - 1) / (times[-1] - times[0])

    # ----------------------------------------------------------------- exposition
    def render(self, *, running: bool) -> str:
        out: list[str] = []

        def family(name: str, kind: str, help_text: str, samples: list[tuple[str, float]]) -> None:
            out.append(f"# HELP {name} {help_text}")
            out.append(f"# TYPE {name} {kind}")
            out.extend(f"{name}{labels} {_num(value)}" for labels, value in samples)

        family(
            "agent_info",
            "gauge",
            "Static facts about this service.",
            [(_labels(profile=self.profile, schema_version=str(SCHEMA_VERSION)), 1)],
        )
        family("agent_task_running", "gauge", "1 while a task runs.", [("", int(running))])
        family("agent_tasks_started_total", "counter", "Tasks started.", [("", self.tasks_started)])
        family(
            "agent_tasks_total",
            "counter",
            "Finished tasks by outcome status.",
            [(_labels(status=s), n) for s, n in sorted(self.tasks.items())],
        )
        family(
            "agent_tasks_rejected_total",
            "counter",
            "Tasks refused because another one was running.",
            [("", self.tasks_rejected)],
        )
        family(
            "agent_steps_total",
            "counter",
            "Control steps; executed=false are stale actions the arm refused.",
            [(_labels(executed=e), n) for e, n in sorted(self.steps.items())],
        )
        family(
            "agent_control_rate_hz",
            "gauge",
            f"Measured control rate over the last {RATE_WINDOW} steps.",
            [("", round(self.control_rate_hz, 3))],
        )
        family(
            "agent_control_rate_target_hz",
            "gauge",
            "Configured control rate.",
            [("", self.target_hz)],
        )
        family(
            "agent_faults_total",
            "counter",
            "Faults by where they happened.",
            [(_labels(where=w), n) for w, n in sorted(self.faults.items())],
        )
        family(
            "agent_dropped_total",
            "counter",
            "Values overwritten unread in latest-wins channels, by channel.",
            [(_labels(channel=c), n) for c, n in sorted(self.dropped.items())],
        )
        family(
            "agent_event_listeners",
            "gauge",
            "Open event streams.",
            [("", self.listeners)],
        )
        family(
            "agent_requests_refused_total",
            "counter",
            "Requests refused: over service.max_requests / max_listeners (503), throttled (429).",
            [(_labels(reason=r), n) for r, n in sorted(self.requests_refused.items())],
        )
        out.append("# HELP agent_stage_latency_seconds Latency per pipeline stage.")
        out.append("# TYPE agent_stage_latency_seconds histogram")
        name = "agent_stage_latency_seconds"
        for stage, hist in sorted(self.latency.items()):
            for bound, count in zip(BUCKETS_S, hist.buckets, strict=True):
                out.append(f"{name}_bucket{_labels(stage=stage, le=repr(bound))} {count}")
            out.append(f"{name}_bucket{_labels(stage=stage, le='+Inf')} {hist.count}")
            out.append(f"{name}_sum{_labels(stage=stage)} {hist.total!r}")
            out.append(f"{name}_count{_labels(stage=stage)} {hist.count}")
        return "\n".join(out) + "\n"
