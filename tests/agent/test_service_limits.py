"""Service hardening (issue 12, section 5): throttling and caps on a served app, for real.

Failed-auth throttling per address (and the throttle table on its own), the caps on requests and
event streams with cancel and /health still served, and a Last-Event-ID that is not a plain
integer; on the hardened app (tests.service_helpers.serve_hardened), whose small limits a test
can reach.
"""

from __future__ import annotations

import socket
import time

import anyio
import httpx
import pytest

from agent.service import AuthThrottle
from tests.service_helpers import (
    AUTH,
    MAX_FAILURES,
    MAX_LISTENERS,
    MAX_REQUESTS,
    OTHER,
    TOKEN,
    WINDOW_S,
    Served,
    metric,
    one_line_error,
    start,
    wait_finished,
)

#: conftest.served: the service with small limits a test can reach
SERVICE = "hardened"


# --------------------------------------------------------------------- throttling
def test_wrong_tokens_from_one_address_get_429_for_a_while(
    served: Served, client: httpx.Client
) -> None:
    """127.0.0.2 guesses; 127.0.0.1 (another address) is served all along."""
    transport = httpx.HTTPTransport(local_address="127.0.0.2")
    with httpx.Client(base_url=served.url, transport=transport, timeout=30) as guesser:
        wrong = {"Authorization": "Bearer guess"}
        assert guesser.get("/tasks").status_code == 401  # no token at all is not a guess
        for _ in range(MAX_FAILURES):
            assert guesser.get("/tasks", headers=wrong).status_code == 401
        for headers in (wrong, AUTH):  # held off now, even with the right token
            error = one_line_error(guesser.get("/tasks", headers=headers), 429)
            assert error.startswith("too many failed bearer tokens from 127.0.0.2; try again in")
            retry = guesser.get("/tasks", headers=headers).headers["retry-after"]
            assert 1 <= int(retry) <= WINDOW_S
        assert guesser.get("/health").status_code == 200  # /health needs no token
        assert client.get("/tasks").status_code == 200  # another address is not held off
        time.sleep(WINDOW_S + 0.2)
        assert guesser.get("/tasks", headers=AUTH).status_code == 200  # served again
        for _ in range(MAX_FAILURES - 1):  # and the right token cleared the count
            assert guesser.get("/tasks", headers=wrong).status_code == 401
        assert guesser.get("/tasks", headers=AUTH).status_code == 200
    assert metric(client.get("/metrics").text, "agent_requests_refused_total", reason="throttled")


def test_the_throttle_table_is_bounded_and_forgets_after_the_window() -> None:
    now = [0.0]
    throttle = AuthThrottle(3, 10.0, max_addresses=100, clock=lambda: now[0])
    for i in range(10_000):
        throttle.failed(f"10.0.{i // 256}.{i % 256}")
        assert len(throttle) <= 100
    for _ in range(2):
        throttle.failed("192.0.2.1")
    assert throttle.retry_after("192.0.2.1") == 0
    now[0] = 11.0  # the window passed: the count starts again
    throttle.failed("192.0.2.1")
    throttle.failed("192.0.2.1")
    assert throttle.retry_after("192.0.2.1") == 0
    throttle.failed("192.0.2.1")
    assert throttle.retry_after("192.0.2.1") == 10
    now[0] = 15.5
    assert throttle.retry_after("192.0.2.1") == 6
    throttle.failed("192.0.2.1")  # a guess while held off does not end the hold
    now[0] = 21.5
    assert throttle.retry_after("192.0.2.1") == 0
    throttle.succeeded("192.0.2.1")
    assert throttle.retry_after("192.0.2.1") == 0 and len(throttle) <= 100


# --------------------------------------------------------------------- caps, cancel, Last-Event-ID
async def _hold_stream(url: str, task_id: object, opened: anyio.Event, done: anyio.Event) -> None:
    """An SSE listener that stays connected until `done` (or the stream ends)."""
    async with (
        httpx.AsyncClient(base_url=url, headers=AUTH, timeout=60) as aclient,
        aclient.stream("GET", f"/tasks/{task_id}/events") as response,
    ):
        assert response.status_code == 200
        async for line in response.aiter_lines():
            if line.startswith("data:"):
                opened.set()
            if done.is_set():
                break


@pytest.mark.asyncio
async def test_past_the_caps_is_503_and_cancel_still_stops_the_arm(
    served: Served, client: httpx.Client
) -> None:
    task = start(client, {"request": OTHER})
    done = anyio.Event()
    with anyio.fail_after(90):
        async with anyio.create_task_group() as tg:
            opened = [anyio.Event() for _ in range(MAX_LISTENERS)]
            for event in opened:
                tg.start_soon(_hold_stream, served.url, task["id"], event, done)
            for event in opened:
                await event.wait()
            async with httpx.AsyncClient(base_url=served.url, headers=AUTH, timeout=30) as ac:
                error = one_line_error(await ac.get(f"/tasks/{task['id']}/events"), 503)
                assert error.startswith(
                    f"too many event streams open ({MAX_LISTENERS}, service.max_listeners)"
                )
                # the listeners take 2 of the 3 requests; a body that never comes holds the 3rd
                slow = socket.create_connection(("127.0.0.1", served.port))
                slow.sendall(
                    b"POST /tasks HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json"
                    + f"\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: 100\r\n\r\n{{".encode()
                )
                try:
                    deadline = time.monotonic() + 10
                    while (busy := await ac.get("/tasks")).status_code != 503:
                        assert time.monotonic() < deadline, "the slow request was never counted"
                        await anyio.sleep(0.05)
                    error = one_line_error(busy, 503)
                    assert error == (
                        f"too many requests at once ({MAX_REQUESTS}, service.max_requests); "
                        "try again later"
                    )
                    assert (await ac.get("/health")).status_code == 200  # never capped
                    cancelled = await ac.post(f"/tasks/{task['id']}/cancel")  # never capped
                    assert cancelled.status_code == 200, cancelled.text
                    outcome = cancelled.json()["outcome"]
                    assert cancelled.json()["state"] == "finished"
                    assert outcome["status"] == "cancelled"
                finally:
                    slow.close()
            done.set()
    # everything closed: served again, once the server has seen the connections close (it
    # learns that on its own loop, after the client's side has gone: on a loaded machine the
    # first request after the streams end could still be counted against the cap)
    deadline = time.monotonic() + 10
    while (again := client.get("/tasks")).status_code != 200:
        assert time.monotonic() < deadline, again.text
        time.sleep(0.05)
    text = client.get("/metrics").text
    assert metric(text, "agent_requests_refused_total", reason="max_listeners") >= 1
    assert metric(text, "agent_requests_refused_total", reason="max_requests") >= 1
    assert metric(text, "agent_event_listeners") == 0


@pytest.fixture(scope="module")
def finished_task(client: httpx.Client) -> dict[str, object]:
    """A task cancelled once it has sent two events: the resume below needs one after id 0. A
    cancel sent at once can land before the run starts, leaving only the "finished" event (it
    did on every try while the development machine's disk was nearly full, 1 GB free)."""
    task = start(client, {"request": OTHER})
    deadline = time.monotonic() + 60
    while client.get(f"/tasks/{task['id']}").json()["events"] < 2:
        assert time.monotonic() < deadline, "the task sent fewer than 2 events in 60 s"
        time.sleep(0.05)
    client.post(f"/tasks/{task['id']}/cancel")
    return wait_finished(client, task["id"])


# b"\xb2" is a superscript two in latin-1, which str.isdigit() took for a digit (then a 500)
@pytest.mark.parametrize("last", ["abc", "-1", "1.5", "0x10", "1 2", "1" * 5000, b"\xb2"])
def test_a_last_event_id_that_is_not_a_plain_integer_is_400(
    client: httpx.Client, finished_task: dict[str, object], last: str | bytes
) -> None:
    task = finished_task
    response = client.get(f"/tasks/{task['id']}/events", headers={"Last-Event-ID": last})
    error = one_line_error(response, 400)
    assert error == "Last-Event-ID must be a plain integer: the id of the last event received"
    resumed = client.get(f"/tasks/{task['id']}/events", headers={"Last-Event-ID": "0"})
    assert resumed.status_code == 200 and "id: 0\n" not in resumed.text
    assert "id: 1\n" in resumed.text
