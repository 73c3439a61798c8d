"""`python -m agent bench soak` and `python -m benchmarks.soak`: start the service, run the
tasks one after another, check the end state, print and write the result.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import secrets
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks._cli import (
    add_json_argument,
    save_results,
    standalone_main,
)
from benchmarks.machine import machine_info
from benchmarks.soak.report import build_result, format_table, ordinal
from benchmarks.soak.service import (
    Client,
    SoakError,
    logged_errors,
    running_service,
    sample_process,
    service_command,
)
from benchmarks.soak.tasks import (
    CANCEL_AFTER_STEPS,
    TaskRecord,
    check_run_folder,
    request_for,
    run_task,
)


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
    add_json_argument(parser, "soak", "report")


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
    doc = sys.modules["benchmarks.soak"].__doc__
    return standalone_main("python -m benchmarks.soak", doc, add_arguments, run, argv)
