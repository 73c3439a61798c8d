"""One soak task: which request, submitted and followed over server-sent events, cancelled or
not; then its run folder checked for completeness.
"""

from __future__ import annotations

import http.client
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.soak.service import Client, Sample

#: the request mix, in order; "I'm cold" first: nothing in the scene fits it, so it reaches the
#: reasoner's language model, whose lazy load then falls into the warm-up
REQUESTS = (
    "I'm cold",
    "I spilled the milk",
    "I'm thirsty",
    "give me the sponge",
    "put the sponge next to the milk carton",
)


#: requests that move the arm: the ones a cancellation can interrupt part-way
MOVING = REQUESTS[1:]


CANCEL_AFTER_STEPS = 5


TASK_TIMEOUT_S = 150.0  # past the service's own max_duration_s (60 s here), plus the stop


@dataclass
class TaskRecord:
    index: int
    request: str
    cancel: bool  # this task was to be cancelled part-way
    id: str | None = None
    status: str | None = None  # the outcome's status; None: no terminal outcome (lost)
    reason: str = ""
    steps: int = 0
    cancel_answer: int | None = None  # the cancel endpoint's HTTP status, when one was sent
    events: int = 0
    event_kb: float = 0.0  # the task's event history as JSON (what the service keeps of it)
    seconds: float = 0.0
    run_dir: str | None = None
    problems: list[str] = field(default_factory=list)  # a lost task or an incomplete folder
    folder_ok: bool = False
    sample: Sample | None = None

    @property
    def lost(self) -> bool:
        return self.status is None


def request_for(index: int, cancel: bool, cancel_every: int) -> str:
    """The mix in turn; a task to cancel takes a request that moves the arm, each in turn."""
    if cancel:
        return MOVING[(index // max(cancel_every, 1)) % len(MOVING)]
    return REQUESTS[index % len(REQUESTS)]


def run_task(client: Client, record: TaskRecord) -> None:
    """Submit, follow (cancel part-way if asked), wait for the end; fills `record` in."""
    from agent.events import Finished, parse_event

    start = time.monotonic()
    code, body = client.call("POST", "/tasks", {"request": record.request, "record": True})
    if code != 202 or not isinstance(body, dict):
        record.problems.append(f"POST /tasks answered {code}: {body}")
        return
    record.id = task_id = str(body["id"])
    finished: Finished | None = None
    stream_error = None
    try:
        for kind, data in client.events(task_id):
            record.events += 1
            record.event_kb += len(data) / 1024
            if kind == "step":
                record.steps += 1
                if record.cancel and record.steps == CANCEL_AFTER_STEPS:
                    record.cancel_answer, _ = client.call(
                        "POST", f"/tasks/{task_id}/cancel", timeout=60.0
                    )
            elif kind == "finished":
                event = parse_event(data)
                assert isinstance(event, Finished)
                finished = event
            elif kind == "error":
                stream_error = data
            if time.monotonic() - start > TASK_TIMEOUT_S:
                record.problems.append(f"not finished after {TASK_TIMEOUT_S:g} s")
                break
    except (OSError, http.client.HTTPException) as exc:
        record.problems.append(f"event stream broke: {type(exc).__name__}: {exc}")
    record.event_kb = round(record.event_kb, 1)
    code, view = client.call("GET", f"/tasks/{task_id}")
    record.seconds = round(time.monotonic() - start, 2)
    if code != 200 or not isinstance(view, dict):
        record.problems.append(f"GET /tasks/{task_id} answered {code}: {view}")
        return
    record.run_dir = view.get("run_dir")
    outcome = view.get("outcome")
    if view.get("state") != "finished" or not outcome:
        record.problems.append(
            f"no terminal outcome: state {view.get('state')}, error {view.get('error')}"
            + (f", stream error {stream_error}" if stream_error else "")
        )
        return
    if finished is None:
        record.problems.append("the event stream ended without a Finished event")
    elif finished.outcome.status != outcome["status"]:
        record.problems.append(
            f"Finished says {finished.outcome.status}, the task view {outcome['status']}"
        )
    record.status, record.reason = outcome["status"], outcome["reason"]
    if record.cancel and record.cancel_answer not in (None, 200):
        record.problems.append(f"cancel answered {record.cancel_answer} (200: the arm stopped)")


def check_run_folder(folder: Path, status: str | None) -> list[str]:
    """What is missing or wrong in a finished task's run folder (empty: complete)."""
    from agent.events import Finished, Started, parse_event

    problems: list[str] = []
    if not folder.is_dir():
        return [f"{folder.name}: no run folder"]
    for name in ("config.json", "summary.json"):
        try:
            json.loads((folder / name).read_text())
        except (OSError, ValueError) as exc:
            problems.append(f"{name}: {type(exc).__name__}: {exc}")
    events = []
    try:
        for line in (folder / "events.jsonl").read_bytes().splitlines():
            events.append(parse_event(line))
    except OSError as exc:
        problems.append(f"events.jsonl: {exc.strerror or exc}")
    except ValueError as exc:
        problems.append(f"events.jsonl line {len(events) + 1} does not parse: {str(exc)[:120]}")
    finished = events[-1] if events and isinstance(events[-1], Finished) else None
    if not events or not isinstance(events[0], Started):
        problems.append("events.jsonl does not begin with Started")
    elif events[0].world is not None and not events[0].world.reset:
        problems.append("the sim world was not reset for this task")
    if finished is None:
        problems.append("events.jsonl does not end with Finished")
    elif status is not None and finished.outcome.status != status:
        problems.append(f"events.jsonl ends {finished.outcome.status}, the service says {status}")
    if problems:
        return problems
    summary = json.loads((folder / "summary.json").read_text())
    assert finished is not None
    if summary.get("outcome") != finished.outcome.model_dump():
        problems.append("summary.json's outcome differs from the Finished event's")
    if summary.get("recording_error"):
        problems.append(f"recording error: {summary['recording_error']}")
    problems += _check_video(folder, summary)
    return problems


def _check_video(folder: Path, summary: dict[str, Any]) -> list[str]:
    name = (summary.get("files") or {}).get("video")
    if not name:
        stray = sorted(p.name for p in folder.glob("video.*"))
        return [f"a video the summary does not name: {stray}"] if stray else []
    try:
        import imageio_ffmpeg
    except ImportError:  # no decoder here: a non-empty file is the most that can be said
        size = (folder / name).stat().st_size if (folder / name).is_file() else 0
        return [] if size > 0 else [f"{name}: missing or empty"]
    try:
        frames = imageio_ffmpeg.read_frames(str(folder / name))
        next(frames)  # the metadata
        count = sum(1 for _ in frames)
    except (OSError, RuntimeError, StopIteration) as exc:
        return [f"{name} does not decode: {type(exc).__name__}: {str(exc)[:120]}"]
    if count != summary.get("video_frames"):
        return [f"{name} holds {count} frames, the summary says {summary.get('video_frames')}"]
    return []
