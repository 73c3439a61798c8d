"""Property tests for the latest-wins channel that joins the runtime's loops."""

from __future__ import annotations

import asyncio
import threading
import time

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.channels import Cancelled, ChannelClosed, Latest, ThreadFed

# An operation script: ("pub", n) publishes n values in a row, ("read", r) makes reader r poll.
ops = st.lists(
    st.one_of(
        st.tuples(st.just("pub"), st.integers(1, 5)),
        st.tuples(st.just("read"), st.integers(0, 2)),
    ),
    max_size=60,
)


@given(ops)
@settings(max_examples=200, deadline=None)
def test_readers_get_newest_never_twice_and_drops_are_counted(script):
    async def scenario():
        channel: Latest[int] = Latest("test")
        readers = [channel.reader() for _ in range(3)]
        received: list[list[int]] = [[] for _ in readers]
        published = 0
        for op, arg in script:
            if op == "pub":
                for _ in range(arg):
                    published += 1
                    channel.publish(published)  # synchronous: a writer can never block
            else:
                value = readers[arg].poll()
                if value is not None:
                    assert value == published, "a reader must get the newest value"
                    received[arg].append(value)
        for values in received:
            assert values == sorted(set(values)), "no value is delivered twice to one reader"
        taken = set().union(*map(set, received))
        # every published value is either taken by some reader, dropped, or still in the slot
        in_slot = 0 if published in taken or published == 0 else 1
        assert channel.dropped == published - len(taken) - in_slot

    anyio.run(scenario)


@given(st.integers(2, 40), st.floats(0.0, 0.004))
@settings(max_examples=25, deadline=None)
def test_slow_reader_always_gets_the_newest_value(burst, reader_delay):
    async def scenario():
        channel: Latest[int] = Latest("test")
        reader = channel.reader()
        seen: list[int] = []
        latest_at_read: list[int] = []

        async def writer():
            for i in range(1, burst + 1):
                channel.publish(i)
                await anyio.sleep(0)
            channel.close("writer done")

        async def slow_reader():
            while True:
                try:
                    value = await reader.next(timeout=5)
                except ChannelClosed:
                    return
                latest_at_read.append(channel.peek()[1])
                seen.append(value)
                await anyio.sleep(reader_delay)

        async with anyio.create_task_group() as tg:
            tg.start_soon(slow_reader)
            tg.start_soon(writer)
        assert seen == latest_at_read
        assert seen == sorted(set(seen))
        assert seen[-1] == burst, "the last value published before close is still delivered"

    anyio.run(scenario)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_close_wakes_every_waiter(backend):
    async def scenario():
        channel: Latest[int] = Latest("frames/front")
        errors: list[str] = []

        async def wait():
            try:
                await channel.reader().next(timeout=5)
            except ChannelClosed as exc:
                errors.append(exc.reason)

        with anyio.fail_after(2):
            async with anyio.create_task_group() as tg:
                for _ in range(4):
                    tg.start_soon(wait)
                await anyio.sleep(0.01)
                channel.close("camera unplugged")
        assert errors == ["camera unplugged"] * 4
        with pytest.raises(ChannelClosed):
            channel.publish(1)

    anyio.run(scenario, backend=backend)


def test_wait_has_a_deadline():
    async def scenario():
        channel: Latest[int] = Latest("empty")
        with pytest.raises(TimeoutError):
            await channel.reader().next(timeout=0.05)

    anyio.run(scenario)


def test_poll_does_not_wait_and_peek_does_not_take():
    async def scenario():
        channel: Latest[str] = Latest("state")
        reader = channel.reader()
        assert reader.poll() is None and channel.peek() is None
        channel.publish("a")
        assert channel.peek() == (1, "a")
        channel.publish("b")
        assert channel.dropped == 1  # "a" was only peeked, never taken
        assert reader.poll() == "b"
        assert reader.poll() is None

    anyio.run(scenario)


def test_a_producer_can_wait_until_its_value_is_taken():
    """wait_taken: a reader's take wakes it, a watcher's look does not, a close ends the wait,
    and with nobody taking it gives up after its timeout."""

    async def scenario():
        channel: Latest[int] = Latest("percepts")
        reader, watcher = channel.reader(), channel.watcher()
        version = channel.publish(1)
        assert watcher.poll() == 1
        assert await channel.wait_taken(version, timeout=0.05) is False  # only looked at
        async with anyio.create_task_group() as tg:

            async def take_soon():
                await anyio.sleep(0.02)
                assert reader.poll() == 1

            tg.start_soon(take_soon)
            assert await channel.wait_taken(version, timeout=5) is True
        assert await channel.wait_taken(version, timeout=0) is True  # taken already
        later = channel.publish(2)
        channel.close("camera gone")
        with pytest.raises(ChannelClosed, match="camera gone"):
            await channel.wait_taken(later, timeout=5)

    anyio.run(scenario)


def test_a_thread_fed_value_wakes_the_loop_only_while_a_reader_waits():
    """Values fed from a thread reach a poll without waking the loop; a waiting reader is woken
    once; an overwritten feed counts as dropped. Real threads and a real asyncio loop."""

    async def scenario() -> tuple[int, list[int | None], int]:
        loop = asyncio.get_running_loop()
        wakes = 0

        def to_loop(callback):
            nonlocal wakes
            wakes += 1
            loop.call_soon_threadsafe(callback)

        channel: ThreadFed[int] = ThreadFed("frames/side")
        channel.attach(to_loop)
        reader = channel.reader()
        seen: list[int | None] = []
        await anyio.to_thread.run_sync(channel.feed, 1)
        await anyio.to_thread.run_sync(channel.feed, 2)  # 1 was never seen: dropped
        seen.append(reader.poll())
        assert wakes == 0  # nobody waited: both values waited for the poll
        async with anyio.create_task_group() as tg:

            async def feed_later() -> None:
                await anyio.sleep(0.05)
                await anyio.to_thread.run_sync(channel.feed, 3)

            tg.start_soon(feed_later)
            seen.append(await reader.next(timeout=5.0))
        return wakes, seen, channel.dropped

    wakes, seen, dropped = anyio.run(scenario)
    assert seen == [2, 3]
    assert wakes == 1
    assert dropped == 1


def test_a_feed_racing_a_readers_wait_always_wakes_it():
    """The thread feeds exactly one value each time the reader is about to wait, so the feed
    lands anywhere between the reader's last look and its wait: a lost wake-up would leave the
    reader waiting for a value that never comes again (and the 2 s deadline would fail it)."""

    async def scenario() -> list[int]:
        loop = asyncio.get_running_loop()
        channel: ThreadFed[int] = ThreadFed("frames/front")
        channel.attach(loop.call_soon_threadsafe)
        want, stop = threading.Event(), threading.Event()

        def produce() -> None:
            n = 0
            while not stop.is_set():
                if want.wait(0.05):
                    want.clear()
                    n += 1
                    channel.feed(n)

        thread = threading.Thread(target=produce, daemon=True)
        thread.start()
        reader = channel.reader()
        got = []
        try:
            for _ in range(300):
                want.set()
                got.append(await reader.next(timeout=2.0))
        finally:
            stop.set()
            thread.join()
        return got

    assert anyio.run(scenario) == list(range(1, 301))


def test_a_thread_blocks_on_a_thread_fed_channel_until_a_feed_a_close_a_stop_or_its_deadline():
    """The perception thread's wait (real threads): a feed from another thread ends it with the
    value; the deadline with a TimeoutError naming the channel; the close with the closer's
    reason; `stop` as soon as it is set and the waiters are woken."""
    channel: ThreadFed[int] = ThreadFed("frames/front")
    timer = threading.Timer(0.05, channel.feed, args=(7,))
    timer.start()
    assert channel.wait_newer_blocking(0, timeout=5.0) == (1, 7)
    with pytest.raises(TimeoutError, match=r"frames/front within 0\.05 s"):
        channel.wait_newer_blocking(1, timeout=0.05)
    stop = threading.Event()

    def stop_and_wake() -> None:
        stop.set()
        channel.wake_threads()

    threading.Timer(0.05, stop_and_wake).start()
    t0 = time.monotonic()
    with pytest.raises(Cancelled):
        channel.wait_newer_blocking(1, timeout=5.0, stop=stop)
    assert time.monotonic() - t0 < 2.0  # not the 5 s deadline
    threading.Timer(0.05, channel.close, args=("camera 'front' failed 3 times",)).start()
    with pytest.raises(ChannelClosed, match="failed 3 times"):
        channel.wait_newer_blocking(1, timeout=5.0)
    timer.join()


def test_a_producer_thread_waits_until_a_thread_took_its_value():
    """The perception thread's demand wait (real threads): it ends when the policy's thread
    takes the value; False at its deadline when nobody does; `Cancelled` once stopped."""
    channel: ThreadFed[int] = ThreadFed("percepts")
    version = channel.feed(1)
    taker = threading.Timer(0.05, channel.wait_newer_blocking, args=(0, 5.0))
    taker.start()
    t0 = time.monotonic()
    assert channel.wait_taken_blocking(version, timeout=5.0) is True
    assert time.monotonic() - t0 < 2.0  # woken by the take, not the deadline
    taker.join()
    version = channel.feed(2)
    assert channel.wait_taken_blocking(version, timeout=0.05) is False
    stop = threading.Event()

    def stop_and_wake() -> None:
        stop.set()
        channel.wake_threads()

    threading.Timer(0.05, stop_and_wake).start()
    with pytest.raises(Cancelled):
        channel.wait_taken_blocking(version, timeout=5.0, stop=stop)
