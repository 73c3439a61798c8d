"""Soak: one service runtime carries out many consecutive tasks; nothing is lost and nothing leaks.

The real service (`python -m agent serve`) is started on 127.0.0.1 in a subprocess with the sim
profile, the scripted expert, 64x64 images, a short step budget and video recording on. Tasks are
then submitted one after another over HTTP (`record: true`), a mix of requests the default scene
(a sponge and a milk carton) supports and one it cannot ("I'm cold": nothing fits, the reasoner's
language-model path). Each task's events are followed over server-sent events; every Nth task is
cancelled through `POST /tasks/{id}/cancel` after a few steps. The sim world is reset at the start
of every task (checked: each run's Started event says `world.reset`). After each task:

- the task has a terminal outcome (GET /tasks/{id} finished, with the outcome the Finished event
  carried); a task refused, never finished, or finished without an outcome counts as lost;
- its run folder is complete: config.json and summary.json parse, events.jsonl parses line by
  line from Started to Finished, the summary holds that outcome and no recording error, and the
  video is either absent (the summary names none, no file) or decodes to exactly the frame count
  the summary states;
- the server process is sampled from /proc: resident memory (VmRSS), open file descriptors,
  threads, and child processes (the video encoder is one; none may outlive its task).

At the end the task list holds no running task, /health answers, the runs folder holds exactly one
folder per task, and Ctrl-C (SIGINT) stops the service cleanly (exit 130).

The step budget (40 steps by default, `--steps`) keeps a task to a few seconds; the scripted
expert needs ~125 steps to finish, so a task that moves the arm ends in "failure" (budget used up)
unless cancelled: the soak is about the service, not the task.

Bounds (exit status 1 when one is violated). All are measured from the same start: the sample
after the warm-up, the first 20% of the tasks and at least two (the first "I'm cold" moves
nothing; the second task is the first to render, track and encode, and adds ~50 MB and the
worker pools' threads). Chosen from the 100-task run here (2-core CPU,
benchmarks/results/soak-cpu.md):

- RSS: at most 30 MB of growth over the remaining 80% of the tasks (start to highest later
  sample). Measured: +5.8 MB (+6.9 MB in an earlier run), a steady 70-90 kB per task, which is
  the task history the service keeps by design (the last 100 tasks with every event: ~47 events
  of ~1.7 kB in memory per task; it stops growing once the oldest are dropped). The first run
  of this soak measured +49 MB: the language-model scorer, called from changing worker threads,
  left ~6-8 MB in each thread's malloc arena (fixed: it now scores on one thread of its own).
  30 MB is about four times the history's share over 80 tasks; a leak of ~0.4 MB per task (a
  pair of 224 px frames, a video buffer) crosses it, as the arena leak above did.
- Open file descriptors: end - start <= 2. Measured: 7 throughout. Every task opens and closes
  its event log, summary, video pipe and HTTP connections, so one descriptor left per task would
  show as ~80; the slack covers a connection the server is still closing (each count is also the
  fewest of three reads over 0.3 s).
- Threads: end - start <= 4. Measured: +0 (18 from the second task on). The worker pools' idle
  threads come and go (an earlier run varied between 16 and 18); a thread left per task would
  show as ~80.
- Child processes: none after any task (the ffmpeg encoder is waited for before a task ends).

    python -m agent bench soak [--tasks 100] [--cancel-every 10] [--steps 40] [--quick] [--json P]
    python -m benchmarks.soak  (the same arguments, with the sim profile)
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import re
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchmarks._cli import save_results, standalone_main
from benchmarks.machine import describe, machine_info

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
WARMUP_SHARE = 0.2
WARMUP_MIN = 2  # "I'm cold" moves nothing: the second task is the first to render, track, encode
RSS_BOUND_MB = 30.0
FD_BOUND = 2
THREAD_BOUND = 4
STARTUP_TIMEOUT_S = 180.0
TASK_TIMEOUT_S = 150.0  # past the service's own max_duration_s (60 s here), plus the stop
READ_TIMEOUT_S = 60.0  # the service sends an SSE heartbeat every 15 quiet seconds
SHUTDOWN_TIMEOUT_S = 60.0


class SoakError(RuntimeError):
    """The soak could not run at all (the service did not start, no /proc)."""


# ---------------------------------------------------------------- the server process


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


# ---------------------------------------------------------------- HTTP client (stdlib only)


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


# ---------------------------------------------------------------- one task


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


# ---------------------------------------------------------------- the run folder


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


# ---------------------------------------------------------------- the service


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
    env = {**os.environ, "AGENT_TOKEN": token}
    env.setdefault("MUJOCO_GL", "egl")
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


# ---------------------------------------------------------------- the soak


def soak(
    args: argparse.Namespace, tasks: int, cancel_every: int, steps: int, out: Any
) -> dict[str, Any]:
    """Run the soak; returns the result document (JSON-ready)."""
    if not Path("/proc/self/status").is_file():
        raise SoakError("the soak samples the server through /proc: Linux only")
    before = machine_info()
    token = secrets.token_urlsafe(24)
    records: list[TaskRecord] = []
    end_checks: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bench-soak-") as tmp:
        runs_dir, log_path = Path(tmp) / "runs", Path(tmp) / "service.log"
        command = service_command(args, runs_dir, steps)
        started = time.monotonic()
        with running_service(command, log_path, token) as service:
            proc = service.proc
            startup_s = round(time.monotonic() - started, 1)
            print(f"soak: service pid {proc.pid} up in {startup_s} s", file=out, flush=True)
            client = Client("127.0.0.1", service.port, token)
            ready = sample_process(proc.pid)
            soak_start = time.monotonic()
            for index in range(tasks):
                cancel = cancel_every > 0 and (index + 1) % cancel_every == 0
                record = TaskRecord(index, request_for(index, cancel, cancel_every), cancel)
                run_task(client, record)
                if record.run_dir is not None:
                    folder = check_run_folder(Path(record.run_dir), record.status)
                    record.folder_ok = not folder
                    record.problems += folder
                else:
                    record.problems.append("no run folder")
                record.sample = sample_process(proc.pid)
                records.append(record)
                print(_progress(record, tasks), file=out, flush=True)
                if record.lost and _busy(client):
                    end_checks.append(f"stopped after task {index + 1}: the service stays busy")
                    break
            soak_s = time.monotonic() - soak_start
            end_checks += _end_checks(client, runs_dir, records)
        shutdown = service.shutdown
        errors = logged_errors(log_path)
    if shutdown["exit"] != 130:
        end_checks.append(f"Ctrl-C did not stop the service cleanly: {shutdown}")
    info = machine_info()
    info["load_average_before"] = before["load_average"]
    return build_result(
        records,
        ready=ready,
        settings={"tasks": tasks, "cancel_every": cancel_every, "steps": steps},
        command=command,
        startup_s=startup_s,
        soak_s=soak_s,
        shutdown=shutdown,
        end_checks=end_checks,
        errors=errors,
        info=info,
    )


def _busy(client: Client) -> bool:
    with contextlib.suppress(OSError, http.client.HTTPException):
        code, body = client.call("GET", "/health")
        return code == 200 and isinstance(body, dict) and bool(body.get("busy"))
    return True


def _end_checks(client: Client, runs_dir: Path, records: list[TaskRecord]) -> list[str]:
    problems = []
    code, health = client.call("GET", "/health")
    if code != 200 or not isinstance(health, dict) or health.get("busy"):
        problems.append(f"/health after the soak: {code} {health}")
    code, listing = client.call("GET", "/tasks")
    tasks = listing.get("tasks", []) if isinstance(listing, dict) else []
    running = [t["id"] for t in tasks if t.get("state") != "finished"]
    if code != 200 or running:
        problems.append(f"GET /tasks after the soak: {code}, not finished: {running}")
    listed = {t["id"] for t in tasks}
    newest = [r.id for r in records if r.id is not None][-len(tasks) :] if tasks else []
    missing = [task_id for task_id in newest if task_id not in listed]
    if missing:
        problems.append(f"tasks missing from GET /tasks: {missing}")
    folders = sorted(p.name for p in runs_dir.iterdir()) if runs_dir.is_dir() else []
    expected = sorted(Path(r.run_dir).name for r in records if r.run_dir)
    if folders != expected:
        problems.append(f"{len(folders)} run folders for {len(expected)} tasks")
    return problems


def _progress(record: TaskRecord, total: int) -> str:
    s = record.sample
    assert s is not None
    mark = "" if not record.problems else f"  PROBLEM: {'; '.join(record.problems)}"
    return (
        f"  {record.index + 1:>3}/{total} {record.status!s:<10} {record.steps:>3} steps "
        f"{record.seconds:>5.1f} s  RSS {s.rss_mb:7.1f} MB  fds {s.fds:>3}  "
        f"threads {s.threads:>3}  {record.request!r}{' (cancel)' if record.cancel else ''}{mark}"
    )


def bounds(samples: Sequence[Sample], ready: Sample) -> dict[str, Any]:
    """The resource figures and whether each stays within its bound (see the module docstring)."""
    n = len(samples)
    warm = min(max(WARMUP_MIN, round(n * WARMUP_SHARE)), max(n - 1, 1))
    start, rest = samples[warm - 1], samples[warm:] or samples[-1:]
    rss = [s.rss_mb for s in rest]
    growth = round(max(rss) - start.rss_mb, 2)
    slope = _slope(rss) * 100 if len(rss) >= 3 else None
    fd_growth = samples[-1].fds - start.fds
    thread_growth = samples[-1].threads - start.threads
    children = max(s.children for s in samples)

    def figures(name: str) -> dict[str, Any]:
        values = [getattr(s, name) for s in samples]
        return {
            "ready": getattr(ready, name),
            "start": getattr(start, name),
            "end": values[-1],
            "max": max(values),
        }

    return {
        "warmup_tasks": warm,
        "rss_mb": {
            **figures("rss_mb"),
            "growth": growth,
            "slope_per_100_tasks": None if slope is None else round(slope, 2),
            "bound": RSS_BOUND_MB,
            "ok": growth <= RSS_BOUND_MB,
        },
        "fds": {
            **figures("fds"),
            "growth": fd_growth,
            "bound": FD_BOUND,
            "ok": fd_growth <= FD_BOUND,
        },
        "threads": {
            **figures("threads"),
            "growth": thread_growth,
            "bound": THREAD_BOUND,
            "ok": thread_growth <= THREAD_BOUND,
        },
        "children": {"max_after_a_task": children, "bound": 0, "ok": children == 0},
    }


def _slope(values: Sequence[float]) -> float:
    """Least-squares slope per task (MB per task for RSS)."""
    xs = range(len(values))
    mx, my = statistics.fmean(xs), statistics.fmean(values)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, values, strict=True)) / den if den else 0.0


def build_result(
    records: list[TaskRecord],
    *,
    ready: Sample,
    settings: dict[str, int],
    command: list[str],
    startup_s: float,
    soak_s: float,
    shutdown: dict[str, Any],
    end_checks: list[str],
    errors: list[str],
    info: dict[str, Any],
) -> dict[str, Any]:
    samples = [r.sample for r in records if r.sample is not None]
    counts = Counter(r.status or "lost" for r in records)
    lost = sum(r.lost for r in records) + settings["tasks"] - len(records)
    incomplete = sum(not r.folder_ok for r in records if not r.lost)
    figures = bounds(samples, ready) if samples else {}
    violations = [f"{r.index + 1}: {'; '.join(r.problems)}" for r in records if r.problems]
    violations += end_checks
    for name in ("rss_mb", "fds", "threads", "children"):
        if figures and not figures[name]["ok"]:
            violations.append(f"{name} outside its bound: {figures[name]}")
    cancels = [r for r in records if r.cancel]
    seconds = [r.seconds for r in records]
    tasks, steps, every = settings["tasks"], settings["steps"], settings["cancel_every"]
    cancelling = (
        f", every {ordinal(every)} cancelled after {CANCEL_AFTER_STEPS} steps" if every else ""
    )
    return {
        "benchmark": "soak",
        "machine": info,
        "settings": {**settings, "cancel_after_steps": CANCEL_AFTER_STEPS, "requests": REQUESTS},
        "service_command": command[1:],
        "caption": (
            f"Soak: {tasks} consecutive tasks on one `python -m agent serve` (sim, scripted "
            f"expert, 64x64, video on, {steps}-step budget" + cancelling + f"); on {describe(info)}"
        ),
        "tasks_run": len(records),
        "outcomes": dict(sorted(counts.items())),
        "cancelled_asked": len(cancels),
        "cancelled": sum(r.status == "cancelled" for r in cancels),
        "lost": lost,
        "incomplete_folders": incomplete,
        "seconds_per_task": {
            "mean": round(statistics.fmean(seconds), 2) if seconds else None,
            "max": max(seconds, default=None),
        },
        "event_kb_per_task": round(statistics.fmean(r.event_kb for r in records), 1)
        if records
        else None,
        "startup_s": startup_s,
        "soak_s": round(soak_s, 1),
        "shutdown": shutdown,
        "logged_errors": errors,
        "figures": figures,
        "violations": violations,
        "ok": not violations and lost == 0 and incomplete == 0,
        "tasks": [{**asdict(r), "lost": r.lost} for r in records],
    }


def format_table(result: dict[str, Any]) -> str:
    """The figures and their bounds as a markdown table."""
    f = result["figures"]
    rss, fds, thr, kids = f["rss_mb"], f["fds"], f["threads"], f["children"]
    outcomes = ", ".join(f"{k} {v}" for k, v in result["outcomes"].items())
    secs = result["seconds_per_task"]
    rows = [
        ("tasks", f"{result['tasks_run']} of {result['settings']['tasks']}", ""),
        ("outcomes", outcomes, ""),
        (
            "succeeded / failed / cancelled",
            f"{result['outcomes'].get('success', 0)} / "
            f"{sum(v for k, v in result['outcomes'].items() if k in ('failure', 'fault'))} / "
            f"{result['cancelled']} (of {result['cancelled_asked']} cancelled part-way)",
            "failed: the step budget ran out (by design: the expert needs ~125 steps) or a fault",
        ),
        ("lost tasks", str(result["lost"]), "0"),
        ("incomplete run folders", str(result["incomplete_folders"]), "0"),
        (
            "RSS MB: ready / start / end / max",
            f"{rss['ready']:.1f} / {rss['start']:.1f} / {rss['end']:.1f} / {rss['max']:.1f}",
            f"max - start <= {rss['bound']:g} MB: {rss['growth']:+.1f} MB" + _ok(rss["ok"]),
        ),
        (
            "RSS trend after the start",
            "n/a"
            if rss["slope_per_100_tasks"] is None
            else f"{rss['slope_per_100_tasks']:+.2f} MB per 100 tasks",
            "",
        ),
        (
            "open fds: ready / start / end / max",
            f"{fds['ready']} / {fds['start']} / {fds['end']} / {fds['max']}",
            f"end - start <= {fds['bound']}: {fds['growth']:+d}" + _ok(fds["ok"]),
        ),
        (
            "threads: ready / start / end / max",
            f"{thr['ready']} / {thr['start']} / {thr['end']} / {thr['max']}",
            f"end - start <= {thr['bound']}: {thr['growth']:+d}" + _ok(thr["ok"]),
        ),
        (
            "child processes after a task (max)",
            str(kids["max_after_a_task"]),
            "0" + _ok(kids["ok"]),
        ),
        ("seconds per task: mean / max", f"{secs['mean']} / {secs['max']}", ""),
        ("event history per task (JSON)", f"{result['event_kb_per_task']} kB", ""),
        ("service start-up", f"{result['startup_s']} s", ""),
        (
            "shutdown (Ctrl-C)",
            f"exit {result['shutdown']['exit']} after {result['shutdown']['seconds']} s",
            "exit 130",
        ),
        ("errors in the service log", str(len(result["logged_errors"])), ""),
    ]
    lines = [
        f"start: the sample after the warm-up ({f['warmup_tasks']} tasks); ready: before the first",
        "",
        "| figure | value | bound |",
        "|---|---|---|",
    ]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    return "\n".join(lines)


def ordinal(n: int) -> str:
    """1st, 2nd, 3rd, 4th, ..., 11th, 12th, 13th, 21st."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _ok(ok: bool) -> str:
    return " (ok)" if ok else " (VIOLATED)"


# ---------------------------------------------------------------- command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The benchmark's own arguments (the CLI's `bench soak` adds the config arguments)."""
    parser.add_argument("--tasks", type=int, default=100, help="consecutive tasks (100)")
    parser.add_argument(
        "--cancel-every",
        type=int,
        default=10,
        help="cancel every Nth task after a few steps (10; 0: none)",
    )
    parser.add_argument(
        "--steps", type=int, default=40, help="step budget per task (runtime.max_steps; 40)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="CI run: 6 tasks, every 3rd cancelled, 20 steps"
    )
    parser.add_argument(
        "--json",
        dest="json_path",
        type=Path,
        help="write results JSON here, and the markdown report beside it (default: "
        "benchmarks/results/soak-<device>.json; none with --quick)",
    )


def run(args: argparse.Namespace, config: Any, out: Any = None) -> int:
    """Run the soak as the arguments say; prints the report; 0 within the bounds, 1 otherwise."""
    out = out or sys.stdout
    tasks, every, steps = args.tasks, args.cancel_every, args.steps
    if args.quick:
        tasks, every, steps = min(tasks, 6), 3, min(steps, 20)
    if tasks < 2 or every < 0 or steps < CANCEL_AFTER_STEPS + 1:
        print(
            f"error: need --tasks >= 2, --cancel-every >= 0, --steps > {CANCEL_AFTER_STEPS}",
            file=sys.stderr,
        )
        return 2
    print(
        f"soak: {tasks} tasks, "
        + (f"every {ordinal(every)} cancelled after {CANCEL_AFTER_STEPS} steps, " if every else "")
        + f"{steps}-step budget",
        file=out,
        flush=True,
    )
    try:
        result = soak(args, tasks, every, steps, out)
    except SoakError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    table = format_table(result)
    print(f"\n{result['caption']}\n\n{table}\n", file=out)
    for line in result["violations"]:
        print(f"soak: VIOLATION: {line}", file=out)
    print("soak: within the bounds" if result["ok"] else "soak: FAILED", file=out)
    save_results("soak", result, table, args.json_path, args.quick, out)
    return 0 if result["ok"] else 1


def main(argv: Sequence[str] | None = None) -> int:
    return standalone_main("python -m benchmarks.soak", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
