"""Service hardening (issue 12, section 5) against a real uvicorn server on 127.0.0.1.

TLS with a self-signed certificate made here, the token's minimum length off loopback and the
plain-HTTP warning (`python -m agent serve` in a subprocess); failed-auth throttling, the caps on
requests and event streams (with cancel still served), a bad Last-Event-ID, and the retention of
run folders (a served app on the sim world); the Host check and JSON bodies of an app without a
token; and the pieces (throttle table, retention) on their own.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import httpx
import pytest
import uvicorn

from agent.backends import Parts, build_parts
from agent.config import Config
from agent.recording import UNFINISHED_GRACE_S, prune_run_folders
from agent.service import (
    MIN_TOKEN_CHARS,
    AuthThrottle,
    Service,
    ServiceError,
    check_bind,
    check_tls,
    create_app,
    plain_text_warning,
)
from tests.conftest import SMALL, make_config
from tests.faults_helpers import agent_proc

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "hardening-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
REQUEST = "I am thirsty"
# the served app's limits: small, so that a test can reach them
MAX_LISTENERS = 2
MAX_REQUESTS = 3
MAX_FAILURES = 3
WINDOW_S = 2.0
KEEP_RUNS = 2


# --------------------------------------------------------------------- helpers
def agent_cli(*args: str, token: str | None = TOKEN) -> subprocess.Popen[str]:
    """`python -m agent ARGS` with AGENT_TOKEN set to `token` (unset for None)."""
    return agent_proc(*args, env={"AGENT_TOKEN": token})


def refused_in_one_line(*args: str, token: str | None = TOKEN) -> str:
    proc = agent_cli(*args, token=token)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2, err
    assert len(err.strip().splitlines()) == 1, err
    return err.strip()


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost, and its key (openssl)."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            *(
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
            ),
            *(
                "-nodes",
                "-keyout",
                str(key),
                "-out",
                str(cert),
                "-days",
                "2",
                "-subj",
                "/CN=127.0.0.1",
            ),
            *("-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def one_line_error(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert isinstance(error, str) and error and "\n" not in error
    return error


@dataclass
class Served:
    url: str
    app: Service
    port: int


def serve_in_thread(
    config: Config,
    token: str | None,
    parts_factory: Callable[[Config], Parts] = build_parts,
) -> Iterator[Served]:
    """The app on a free loopback port, in a thread of its own (as tests/agent/test_service.py
    does)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    app = create_app(config, token=token, parts_factory=parts_factory)
    server = uvicorn.Server(uvicorn.Config(app, lifespan="on", log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not server.started:
        assert thread.is_alive(), f"service did not start: {app.startup_error}"
        assert time.monotonic() < deadline, "service did not start within 120 s"
        time.sleep(0.05)
    yield Served(url=f"http://127.0.0.1:{port}", app=app, port=port)
    server.should_exit = True
    thread.join(timeout=30)
    sock.close()
    assert not thread.is_alive(), "the service did not shut down"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    config = make_config(
        tmp_path_factory.mktemp("hardening"),
        "runtime.max_duration_s=150",
        f"service.max_listeners={MAX_LISTENERS}",
        f"service.max_requests={MAX_REQUESTS}",
        f"service.auth_max_failures={MAX_FAILURES}",
        f"service.auth_window_s={WINDOW_S}",
        "service.throttle_loopback=true",
        f"output.keep_runs={KEEP_RUNS}",
    )
    yield from serve_in_thread(config, TOKEN)


@pytest.fixture(scope="module")
def client(served: Served) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served.url, headers=AUTH, timeout=60) as client:
        yield client


def start(client: httpx.Client, body: dict[str, object]) -> dict[str, object]:
    response = client.post("/tasks", json=body)
    assert response.status_code == 202, response.text
    return dict(response.json())


def wait_finished(client: httpx.Client, task_id: object) -> dict[str, object]:
    deadline = time.monotonic() + 60
    while (state := client.get(f"/tasks/{task_id}").json())["state"] != "finished":
        assert time.monotonic() < deadline, state
        time.sleep(0.1)
    return dict(state)


def metric(text: str, name: str, **labels: str) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    sample = f"{name}{{{want}}}" if labels else name
    for line in text.splitlines():
        key, _, value = line.rpartition(" ")
        if key == sample:
            return float(value)
    return 0.0


# --------------------------------------------------------------------- TLS and tokens (CLI)
def test_serve_over_tls_with_a_self_signed_certificate(
    certificate: tuple[Path, Path], tmp_path: Path
) -> None:
    cert, key = certificate
    overrides = [arg for item in SMALL for arg in ("--set", item)]
    proc = agent_cli(
        "serve",
        "--port",
        "0",
        "--ssl-certfile",
        str(cert),
        "--ssl-keyfile",
        str(key),
        *overrides,
        "--set",
        f'output.runs_dir="{tmp_path}"',
    )
    try:
        assert proc.stderr is not None
        first = proc.stderr.readline()
        found = re.search(r"for https://127\.0\.0\.1:(\d+) ", first)
        assert found, first  # the URL says https, and no plain-text warning came first
        url = f"https://127.0.0.1:{found.group(1)}"
        trusted = ssl.create_default_context(cafile=str(cert))
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "the service did not come up"
            try:
                if httpx.get(f"{url}/health", verify=trusted).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        listed = httpx.get(f"{url}/tasks", headers=AUTH, verify=trusted)
        assert listed.status_code == 200 and listed.json() == {"tasks": []}
        assert httpx.get(f"{url}/tasks", verify=trusted).status_code == 401
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            httpx.get(f"{url}/health")  # a client that does not trust it: no connection
        with pytest.raises(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{found.group(1)}/health")  # no plain HTTP on it
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert f"serving {url} (auth: token from AGENT_TOKEN)" in err
    assert "warning" not in first + err and "Traceback" not in err
    assert proc.returncode == 130, err


def test_tls_files_that_cannot_serve_are_refused_in_one_line(
    certificate: tuple[Path, Path], tmp_path: Path
) -> None:
    cert, key = certificate
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    with pytest.raises(ServiceError, match="--ssl-keyfile needs --ssl-certfile"):
        check_tls(None, key)
    with pytest.raises(ServiceError, match=r"--ssl-certfile: cannot read .*: no such file"):
        check_tls(tmp_path / "missing.pem", key)
    with pytest.raises(ServiceError, match="cannot load a certificate and key"):
        check_tls(cert, garbage)
    check_tls(cert, key)
    check_tls(None, None)
    err = refused_in_one_line("serve", "--ssl-certfile", str(garbage))
    assert err.startswith(
        f"error: --ssl-certfile: cannot load a certificate and key from {garbage}"
    )


def test_a_short_token_off_loopback_is_refused_at_start() -> None:
    short = "x" * (MIN_TOKEN_CHARS - 1)
    with pytest.raises(ServiceError, match=f"with a {MIN_TOKEN_CHARS - 1}-character token"):
        check_bind("0.0.0.0", short)
    check_bind("0.0.0.0", "x" * MIN_TOKEN_CHARS)
    check_bind("127.0.0.1", "short")  # on loopback any token will do
    err = refused_in_one_line("serve", "--host", "0.0.0.0", token=short)
    assert err.startswith(
        f"error: refusing to serve on 0.0.0.0 with a {MIN_TOKEN_CHARS - 1}-character token: "
        f"off loopback it needs at least {MIN_TOKEN_CHARS}"
    )


def test_plain_http_off_loopback_warns_in_one_line_at_start(tmp_path: Path) -> None:
    assert plain_text_warning("127.0.0.1", tls=False) is None
    assert plain_text_warning("0.0.0.0", tls=True) is None
    proc = agent_cli("serve", "--host", "0.0.0.0", "--port", "0", "--set", "models.policy=expert")
    try:
        assert proc.stderr is not None
        lines = [proc.stderr.readline(), proc.stderr.readline()]
    finally:
        proc.kill()
        proc.wait()
    assert lines[0].startswith("warning: serving 0.0.0.0 over plain HTTP: the bearer token"), lines
    assert "--ssl-certfile" in lines[0]
    assert lines[1].startswith("starting the runtime (sim) for http://0.0.0.0:"), lines


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
    task = start(client, {"request": REQUEST})
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
    assert client.get("/tasks").status_code == 200  # everything closed: served again
    text = client.get("/metrics").text
    assert metric(text, "agent_requests_refused_total", reason="max_listeners") >= 1
    assert metric(text, "agent_requests_refused_total", reason="max_requests") >= 1
    assert metric(text, "agent_event_listeners") == 0


@pytest.fixture(scope="module")
def finished_task(client: httpx.Client) -> dict[str, object]:
    task = start(client, {"request": REQUEST})
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


# --------------------------------------------------------------------- retention
def _old_run(runs: Path, name: str, *, finished: bool = True, size: int = 10) -> Path:
    folder = runs / name
    folder.mkdir(parents=True)
    (folder / "events.jsonl").write_bytes(b"x" * size)
    if finished:
        (folder / "summary.json").write_text("{}")
    return folder


def test_after_a_recorded_task_the_oldest_run_folders_beyond_the_limit_go(
    served: Served, client: httpx.Client
) -> None:
    runs = served.app.config.output.runs_dir
    for folder in runs.glob("*") if runs.exists() else []:
        if folder.is_dir():
            for file in folder.iterdir():
                file.unlink()
            folder.rmdir()
    oldest = [_old_run(runs, f"2020010{i}-000000-old-run") for i in (1, 2, 3)]
    running = _old_run(runs, "20200104-000000-in-progress", finished=False)  # fresh, no summary
    other = runs / "notes"  # not a run folder: never counted, never deleted
    other.mkdir()
    task = start(client, {"request": REQUEST, "record": True})
    client.post(f"/tasks/{task['id']}/cancel")
    state = wait_finished(client, task["id"])
    new = Path(str(state["run_dir"]))
    assert (new / "summary.json").exists()
    deadline = time.monotonic() + 10
    while any(folder.exists() for folder in oldest):
        assert time.monotonic() < deadline, sorted(p.name for p in runs.iterdir())
        time.sleep(0.05)
    assert sorted(p.name for p in runs.iterdir()) == sorted([running.name, new.name, "notes"])


def test_prune_run_folders_by_count_and_bytes(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    a = _old_run(runs, "20200101-000000-a", size=100)
    b = _old_run(runs, "20200102-000000-b", size=100)
    stale = _old_run(runs, "20200103-000000-crashed", finished=False, size=100)
    old = time.time() - UNFINISHED_GRACE_S - 60
    for path in (stale, stale / "events.jsonl"):
        os.utime(path, (old, old))
    fresh = _old_run(runs, "20200104-000000-running", finished=False, size=100)
    c = _old_run(runs, "20200105-000000-c", size=1000)
    (runs / "20200100-000000-a-file").write_text("not a folder")
    (runs / "20200100-000000-link").symlink_to(a)

    assert prune_run_folders(runs, keep_runs=None, keep_bytes=None) == []
    assert prune_run_folders(runs, keep_runs=5, keep_bytes=None) == []
    # count: the oldest go; the stale unfinished one too, the fresh one (running) never
    assert prune_run_folders(runs, keep_runs=2, keep_bytes=None, protect=[c]) == [a, b, stale]
    assert prune_run_folders(runs, keep_runs=1, keep_bytes=None, protect=[c]) == []
    assert fresh.exists() and c.exists()
    # bytes: the protected (newest) one stays even when it alone is over
    d = _old_run(runs, "20200106-000000-d", size=10)
    assert prune_run_folders(runs, keep_runs=None, keep_bytes=500, protect=[d]) == [c]
    assert sorted(p.name for p in runs.iterdir()) == sorted(
        [fresh.name, d.name, "20200100-000000-a-file", "20200100-000000-link"]
    )
    assert prune_run_folders(tmp_path / "missing", keep_runs=1, keep_bytes=None) == []


def test_run_keeps_only_output_keep_runs_folders(tmp_path: Path) -> None:
    """`python -m agent run` bounds the runs folder too, after the run."""
    runs = tmp_path / "runs"
    oldest = [_old_run(runs, f"2020010{i}-000000-old-run") for i in (1, 2)]
    overrides = [arg for item in SMALL for arg in ("--set", item)]
    proc = agent_cli(
        "run",
        "I want to fly to the moon",  # infeasible: over quickly, with a run folder
        "--quiet",
        "--runs-dir",
        str(runs),
        *overrides,
        "--set",
        "output.keep_runs=2",
    )
    _, err = proc.communicate(timeout=120)
    assert proc.returncode in (0, 3), err
    names = sorted(p.name for p in runs.iterdir())
    assert len(names) == 2 and names[0] == oldest[1].name, names
    assert (runs / names[1] / "summary.json").exists()


# --------------------------------------------------------------------- an app without a token
@pytest.fixture(scope="module")
def open_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    yield from serve_in_thread(make_config(tmp_path_factory.mktemp("open")), None)


@pytest.mark.parametrize(
    "host",
    ["evil.example:{port}", "evil.example", "localhost.evil.example", "127.0.0.1.nip.io:{port}"],
)
def test_without_a_token_a_foreign_host_header_is_421(open_app: Served, host: str) -> None:
    for path in ("/health", "/tasks"):
        response = httpx.get(
            f"{open_app.url}{path}", headers={"Host": host.format(port=open_app.port)}
        )
        error = one_line_error(response, 421)
        assert "is not this service's address" in error and "DNS rebinding" in error


@pytest.mark.parametrize(
    "host", ["127.0.0.1:{port}", "localhost:{port}", "[::1]:{port}", "LOCALHOST"]
)
def test_without_a_token_loopback_host_headers_are_served(open_app: Served, host: str) -> None:
    response = httpx.get(f"{open_app.url}/tasks", headers={"Host": host.format(port=open_app.port)})
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    "content_type", [None, "text/plain", "application/x-www-form-urlencoded", "multipart/form-data"]
)
def test_without_a_token_post_bodies_must_be_json(
    open_app: Served, content_type: str | None
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    body = json.dumps({"request": REQUEST}).encode()
    response = httpx.post(f"{open_app.url}/tasks", content=body, headers=headers)
    error = one_line_error(response, 415)
    assert error.startswith("Content-Type must be application/json")
    assert httpx.get(f"{open_app.url}/health").json()["busy"] is False


def test_without_a_token_a_json_post_starts_a_task(open_app: Served) -> None:
    with httpx.Client(base_url=open_app.url, timeout=60) as client:
        bad = client.post("/tasks", content=b"{}", headers={"Content-Type": "application/json"})
        assert bad.status_code == 422  # past the guard, to the validation
        task = client.post(
            "/tasks",
            content=json.dumps({"request": REQUEST}).encode(),
            headers={"Content-Type": "application/json; charset=utf-8"},
        )
        assert task.status_code == 202, task.text
        cancelled = client.post(f"/tasks/{task.json()['id']}/cancel")  # no body: no type needed
        assert cancelled.status_code in (200, 409), cancelled.text
        assert wait_finished(client, task.json()["id"])["state"] == "finished"
