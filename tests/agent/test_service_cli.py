"""`python -m agent serve` as a user runs it: token sources, the bind check, start and Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from agent import Finished, parse_event
from agent.service import ServiceError, check_bind, is_loopback, resolve_token
from tests.conftest import SMALL

ROOT = Path(__file__).resolve().parents[2]


def agent_cli(*args: str) -> subprocess.Popen[str]:
    """`python -m agent ARGS` with no AGENT_TOKEN in its environment."""
    return subprocess.Popen(
        [sys.executable, "-m", "agent", *args],
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if k != "AGENT_TOKEN"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("localhost", True),
        ("::1", True),
        ("[::1]", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.20", False),
        ("robot-lab.example.org", False),
    ],
)
def test_loopback_addresses(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_token_sources(tmp_path: Path) -> None:
    file = tmp_path / "token"
    file.write_text("  from-file\n")
    assert resolve_token(file, {"AGENT_TOKEN": "env"}) == ("from-file", f"token from {file}")
    assert resolve_token(None, {"AGENT_TOKEN": " env "}) == ("env", "token from AGENT_TOKEN")
    assert resolve_token(None, {"AGENT_TOKEN": "  "}) == (None, "")
    assert resolve_token(None, {}) == (None, "")
    file.write_text("\n")
    with pytest.raises(ServiceError, match="is empty"):
        resolve_token(file, {})
    with pytest.raises(ServiceError, match="cannot read"):
        resolve_token(tmp_path / "missing", {})
    check_bind("0.0.0.0", "a-token-of-16-chars")  # a long enough token: any address will do
    with pytest.raises(ServiceError, match=r"refusing to serve on 0\.0\.0\.0 without a token"):
        check_bind("0.0.0.0", None)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--host", "0.0.0.0"], "error: refusing to serve on 0.0.0.0 without a token"),
        (["--host", "10.0.0.5"], "error: refusing to serve on 10.0.0.5 without a token"),
        (["--token-file", "/nonexistent/token"], "error: --token-file: cannot read"),
    ],
)
def test_serve_refuses_in_one_line(args: list[str], message: str) -> None:
    proc = agent_cli("serve", *args)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert err.strip().startswith(message), err
    assert len(err.strip().splitlines()) == 1, err


def test_serve_reports_a_taken_port_and_a_runtime_that_cannot_start(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = str(taken.getsockname()[1])
        proc = agent_cli("serve", "--port", port)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert len(err.strip().splitlines()) == 1, err  # refused before the slow runtime start
    assert err.startswith(f"error: cannot listen on 127.0.0.1:{port}: Address already in use")

    proc = agent_cli("serve", "--port", "0", "--set", 'sim.objects=["unicorn"]')
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2
    assert "the runtime did not start: no object 'unicorn'" in err
    assert "Traceback" not in err


def test_serve_with_a_generated_token_and_ctrl_c_stops_the_arm_at_once(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    overrides = [arg for item in SMALL for arg in ("--set", item)]
    proc = agent_cli(
        "serve", "--port", str(port), *overrides, "--set", f'output.runs_dir="{tmp_path}"'
    )
    try:
        first = proc.stderr.readline() if proc.stderr else ""
        found = re.search(r"one-time token (\S+)", first)
        assert found, first
        token = found.group(1)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "the service did not come up"
            try:
                if httpx.get(f"{url}/health").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        assert httpx.get(f"{url}/tasks").status_code == 401
        auth = {"Authorization": f"Bearer {token}"}
        task = httpx.post(f"{url}/tasks", json={"request": "I spilled the milk"}, headers=auth)
        assert task.status_code == 202
        events = f"{url}/tasks/{task.json()['id']}/events"
        interrupted = None
        with httpx.stream("GET", events, headers=auth, timeout=60) as stream:
            lines = stream.iter_lines()
            for line in lines:
                if line == "event: step":  # the arm is moving: Ctrl-C now
                    proc.send_signal(signal.SIGINT)
                    interrupted = time.monotonic()
                    break
            rest = list(lines)  # the open stream ends, with the outcome
        _, err = proc.communicate(timeout=30)
        assert interrupted is not None, "the task ended before a step: nothing to interrupt"
        assert time.monotonic() - interrupted < 10, "Ctrl-C must not wait for open streams"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    finished = parse_event(next(x for x in reversed(rest) if x.startswith("data:"))[5:])
    assert isinstance(finished, Finished) and finished.outcome.status == "cancelled"
    assert proc.returncode == 130, err  # the CLI's exit code for Ctrl-C, after a clean stop
    assert f"serving http://127.0.0.1:{port} (auth: the one-time token above)" in err
    # a clean stop is not an error (issue 17): no "error:" line, the exit code says Ctrl-C
    assert err.rstrip().endswith("\nstopped: the arm was stopped and the drivers closed")
    assert "error" not in err
    assert "Traceback" not in err
