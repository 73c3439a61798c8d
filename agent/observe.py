"""Watching an execution from outside its loops: the hook a live viewer (or a lab's logger) uses.

A `RunObserver` hears every event of one execution and every percept the perceive loop publishes
(both camera views with their masks and tracked boxes). It is called on the runtime's event loop,
so it must return at once and never raise: an observer that does real work (drawing, encoding,
sending) hands the item to a thread of its own (see `agent.live_view`). An execution without an
observer costs nothing: no loop is started and no call is made.

Percepts are watched, not taken, from their latest-wins channel: an observer never changes what
the act loop receives nor the drop counts the outcome reports; a slow observer misses percepts.
"""

from __future__ import annotations

from typing import Protocol

from agent.channels import Latest
from agent.events import Event
from agent.messages import PerceptMsg


class RunObserver(Protocol):
    """What `Runtime.execute(..., observer=...)` calls; both methods return at once, never raise."""

    def event(self, event: Event) -> None:
        """One event of the execution, in order, as the consumer receives it."""

    def percept(self, msg: PerceptMsg) -> None:
        """The newest percept (views, masks, boxes), stamped with its capture time."""


async def observe_loop(percepts: Latest[PerceptMsg], observer: RunObserver) -> None:
    """Hand each new percept to the observer until cancelled (an episode's sink loop)."""
    watcher = percepts.watcher()
    while True:
        observer.percept(await watcher.next())
