"""Service hardening (issue 12, section 5): the retention of run folders, for real.

After a recorded task the served app (tests.service_helpers.serve_hardened, output.keep_runs=2)
deletes the oldest run folders beyond the limit; `python -m agent run` bounds the runs folder
too; and prune_run_folders on its own, by count and by bytes.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx

from agent.recording import UNFINISHED_GRACE_S, prune_run_folders
from tests.conftest import SMALL
from tests.service_helpers import (
    OTHER,
    Served,
    agent_cli,
    start,
    wait_finished,
)

#: conftest.served: the service with small limits a test can reach
SERVICE = "hardened"


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
    task = start(client, {"request": OTHER, "record": True})
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
