"""The queue that carries an execution's events to its consumer (agent.event_queue)."""

from __future__ import annotations

import anyio
import pytest

from agent.event_queue import EventQueue


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_a_full_queue_refuses_instead_of_waiting_and_close_ends_the_reader(backend):
    """Put never waits: past the bound an item is refused (the episode counts it as dropped);
    a waiting reader wakes on a put; after close it gets what was queued, then its loop ends."""

    async def scenario() -> tuple[list[bool], list[int]]:
        queue: EventQueue[int] = EventQueue(2)
        got: list[int] = []

        async def read() -> None:
            async for item in queue:
                got.append(item)

        async with anyio.create_task_group() as tg:
            tg.start_soon(read)
            await anyio.sleep(0.01)  # the reader waits on the empty queue
            assert queue.put(0)
            await anyio.sleep(0.01)
            accepted = [queue.put(1), queue.put(2), queue.put(3)]  # the reader has not run
            queue.close()
            accepted.append(queue.put(4))
        return accepted, got

    accepted, got = anyio.run(scenario, backend=backend)
    assert accepted == [True, True, False, False]
    assert got == [0, 1, 2]
