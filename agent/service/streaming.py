"""The event stream of a task (GET /tasks/{id}/events), as server-sent events.

The stream replays the task's history, then follows it live until `Finished`: each event's `id`
is its index in the task, so a client that reconnects with `Last-Event-ID` resumes after the
last event it received. A quiet stream gets a comment every HEARTBEAT_S so that proxies keep it
open; a task that ended in an error says so in a last `error` event.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from agent.service.metrics import Metrics
from agent.service.tasks import Task

HEARTBEAT_S = 15.0  # an SSE comment after this many quiet seconds keeps proxies from timing out
LAST_EVENT_ID = re.compile(r"[0-9]{1,18}")  # ASCII digits only, and few enough to be an index


def events_response(task: Task, request: Request, metrics: Metrics) -> Response:
    """The task's events from where the client resumes (`Last-Event-ID`), as a stream."""
    start = _resume_from(request)
    return StreamingResponse(
        _stream(task, start, metrics),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _stream(task: Task, start: int, metrics: Metrics) -> AsyncIterator[str]:
    """Server-sent events: `id` is the event's index in the task, `event` its kind."""
    metrics.listeners += 1
    try:
        async for item in task.follow(start, heartbeat=HEARTBEAT_S):
            if item is None:
                yield ": still running\n\n"
                continue
            index, event = item
            yield f"id: {index}\nevent: {event.kind}\ndata: {event.to_json()}\n\n"
        if task.error is not None:
            yield f"event: error\ndata: {json.dumps({'error': task.error})}\n\n"
    finally:
        metrics.listeners -= 1


def _resume_from(request: Request) -> int:
    """Where a stream starts: after the SSE `Last-Event-ID` a reconnecting client sends, else 0."""
    last = request.headers.get("last-event-id", "").strip()
    if not last:
        return 0
    if not LAST_EVENT_ID.fullmatch(last):
        raise HTTPException(
            400, "Last-Event-ID must be a plain integer: the id of the last event received"
        )
    return int(last) + 1
