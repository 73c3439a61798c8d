"""The service under soak: its process (started, awaited, stopped with SIGINT), its /proc
samples (RSS, descriptors, threads, children), and a stdlib HTTP client for its API.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drivers.sim import offscreen_gl

STARTUP_TIMEOUT_S = 180.0


READ_TIMEOUT_S = 60.0  # the service sends an SSE heartbeat every 15 quiet seconds


SHUTDOWN_TIMEOUT_S = 60.0


class SoakError(RuntimeError):
    """The soak could not run at all (the service did not start, no /proc)."""


@dataclass(frozen=True)
class Sample:
    """The server process after a task: resident MB, open fds, threads, child processes."""

    rss_mb: float
    fds: int
    threads: int
    children: int


def sample_process(pid: int, settle_s: float = 0.3) -> Sample:
    """/proc/PID/status (VmRSS, Threads), /proc/PID/fd, and the processes whose parent is PID.

    Open descriptors are the fewest of a few reads over `settle_s`: a connection the server is
    still closing after its last response is no leak (a leaked descriptor stays).
    """
    fds = []
    for _ in range(3):
        time.sleep(settle_s / 3)
        fds.append(len(os.listdir(f"/proc/{pid}/fd")))
    status = Path(f"/proc/{pid}/status").read_text()
    rss = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)
    threads = re.search(r"^Threads:\s+(\d+)", status, re.M)
    if rss is None or threads is None:
        raise SoakError(f"/proc/{pid}/status has no VmRSS or Threads (a zombie?)")
    return Sample(
        rss_mb=round(int(rss.group(1)) / 1024, 2),
        fds=min(fds),
        threads=int(threads.group(1)),
        children=len(child_processes(pid)),
    )


def child_processes(pid: int) -> list[int]:
    """Processes (zombies included) whose parent is `pid`."""
    children = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError):
            stat = Path(f"/proc/{entry}/stat").read_text()
            # "pid (comm) state ppid ...": comm may hold spaces and parentheses
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                children.append(int(entry))
    return children


class Client:
    """The service's HTTP API over http.client, one connection per request (Connection: close),
    so the server closes its end with each response and open descriptors count what it holds."""

    def __init__(self, host: str, port: int, token: str) -> None:
        self.host, self.port, self.token = host, port, token

    def _open(self, method: str, path: str, body: Any, timeout: float) -> Any:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        headers = {"Authorization": f"Bearer {self.token}", "Connection": "close"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        conn.request(method, path, body=data, headers=headers)
        return conn, conn.getresponse()

    def call(self, method: str, path: str, body: Any = None, timeout: float = 30.0) -> Any:
        """(status, parsed JSON body or None)."""
        conn, response = self._open(method, path, body, timeout)
        try:
            raw = response.read()
        finally:
            conn.close()
        try:
            return response.status, json.loads(raw) if raw else None
        except ValueError:
            return response.status, raw.decode(errors="replace")

    def events(self, task_id: str, timeout: float = READ_TIMEOUT_S) -> Iterator[tuple[str, str]]:
        """(event kind, data) of a task's server-sent events, until the stream ends."""
        conn, response = self._open("GET", f"/tasks/{task_id}/events", None, timeout)
        try:
            if response.status != 200:
                raise SoakError(f"GET /tasks/{task_id}/events answered {response.status}")
            kind, data = "message", list[str]()
            for raw in response:
                line = raw.decode().rstrip("\r\n")
                if not line:
                    if data:
                        yield kind, "\n".join(data)
                    kind, data = "message", list[str]()
                elif line.startswith(":"):
                    continue  # heartbeat comment
                elif line.startswith("event:"):
                    kind = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].lstrip())
        finally:
            conn.close()


def service_command(args: argparse.Namespace, runs_dir: Path, steps: int) -> list[str]:
    """`python -m agent serve` on a free loopback port with the bench's config arguments: the
    soak's settings first (so `--set` can change them), the runs folder last."""
    command = [sys.executable, "-m", "agent", "serve", "--host", "127.0.0.1", "--port", "0"]
    command += ["--log-json", "--log-level", "warning"]
    for flag in ("profile", "config", "objects", "backgrounds", "seed"):
        value = getattr(args, flag, None)
        if value is not None:
            command += [f"--{flag}", str(value)]
    settings = [
        "models.policy=expert",
        "sim.image_width=64",
        "sim.image_height=64",
        f"runtime.max_steps={steps}",
        "runtime.max_duration_s=60",
        "output.video=true",
        *getattr(args, "overrides", []),
        f"output.runs_dir={json.dumps(str(runs_dir))}",
    ]
    for setting in settings:
        command += ["--set", setting]
    return command


@dataclass
class Service:
    """The service process, its port, and how it stopped (`exit` None: killed after the wait)."""

    proc: subprocess.Popen[bytes]
    port: int = 0
    shutdown: dict[str, Any] = field(default_factory=lambda: {"exit": None, "seconds": None})


@contextlib.contextmanager
def running_service(command: list[str], log_path: Path, token: str) -> Iterator[Service]:
    """The service process, up (its "serving" line logged); stopped (SIGINT, then kill) on the
    way out, with how it stopped in `Service.shutdown`."""
    env = {**os.environ, "AGENT_TOKEN": token, "MUJOCO_GL": offscreen_gl()}
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            command, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log
        )  # fmt: skip
        service = Service(proc)
        try:
            service.port = _wait_ready(proc, log_path)
            yield service
        finally:
            service.shutdown = _stop(proc)


def _wait_ready(proc: subprocess.Popen[bytes], log_path: Path) -> int:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        found = re.search(r"serving http://127\.0\.0\.1:(\d+)", log_path.read_text())
        if found:
            return int(found.group(1))
        if proc.poll() is not None:
            tail = log_path.read_text().strip().splitlines()[-3:]
            raise SoakError(f"the service exited ({proc.returncode}): {' | '.join(tail)}")
        time.sleep(0.2)
    raise SoakError(f"the service did not come up in {STARTUP_TIMEOUT_S:g} s (log: {log_path})")


def _stop(proc: subprocess.Popen[bytes]) -> dict[str, Any]:
    """Ctrl-C (SIGINT) as a user stops it; killed if it has not exited after the wait."""
    start = time.monotonic()
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=SHUTDOWN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            return {"exit": None, "seconds": None}
    return {"exit": proc.returncode, "seconds": round(time.monotonic() - start, 2)}


def logged_errors(log_path: Path) -> list[str]:
    """The service's error-level log records (JSON lines), as 'event: error' strings."""
    found = []
    for line in log_path.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("level") in ("error", "critical", "exception"):
            found.append(f"{record.get('event')}: {record.get('error') or record.get('exception')}")
    return found
