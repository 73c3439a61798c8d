"""The soak benchmark: its run-folder check, its bounds, and the quick soak CI runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.cli import main
from agent.events import Finished, Outcome, Started, WorldStart
from benchmarks.soak.report import FD_BOUND, RSS_BOUND_MB, bounds, ordinal
from benchmarks.soak.service import Sample
from benchmarks.soak.tasks import CANCEL_AFTER_STEPS, MOVING, check_run_folder, request_for


def _folder(tmp_path: Path, *, reset: bool = True) -> Path:
    """A complete run folder as the recorder writes one (no video)."""
    folder = tmp_path / "run"
    folder.mkdir()
    outcome = Outcome(status="failure", success=False, reason="step budget used up", stop="ok")
    world = WorldStart(reset=reset, scene="sponge, milk carton", seed=0)
    events = [
        Started(episode="e", t=0.0, request="r", profile="sim", scene_objects=[], world=world),
        Finished(episode="e", t=1.0, outcome=outcome),
    ]
    (folder / "events.jsonl").write_text("".join(e.to_json() + "\n" for e in events))
    summary = {
        "outcome": outcome.model_dump(),
        "files": {"events": "events.jsonl", "video": None, "config": "config.json"},
        "video_frames": 0,
        "recording_error": None,
    }
    (folder / "summary.json").write_text(json.dumps(summary))
    (folder / "config.json").write_text("{}")
    return folder


def test_a_complete_run_folder_passes(tmp_path: Path) -> None:
    assert check_run_folder(_folder(tmp_path), "failure") == []


def test_the_run_folder_check_finds_what_is_missing_or_wrong(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    assert check_run_folder(folder, "cancelled") == [
        "events.jsonl ends failure, the service says cancelled"
    ]
    (folder / "video.mp4").write_bytes(b"")
    assert check_run_folder(folder, "failure") == [
        "a video the summary does not name: ['video.mp4']"
    ]
    summary = json.loads((folder / "summary.json").read_text())
    summary["files"]["video"], summary["video_frames"] = "video.mp4", 3
    (folder / "summary.json").write_text(json.dumps(summary))
    assert check_run_folder(folder, "failure")[0].startswith("video.mp4 does not decode")
    lines = (folder / "events.jsonl").read_text().splitlines()
    (folder / "events.jsonl").write_text(lines[0] + "\n")  # cut before Finished
    assert check_run_folder(folder, "failure") == ["events.jsonl does not end with Finished"]
    (folder / "events.jsonl").write_text(lines[0] + "\n{not json\n")
    assert check_run_folder(folder, "failure")[0].startswith("events.jsonl line 2 does not parse")
    (folder / "summary.json").unlink()
    assert check_run_folder(folder, "failure")[0].startswith("summary.json: FileNotFoundError")
    assert check_run_folder(tmp_path / "absent", None) == ["absent: no run folder"]


def test_a_world_that_was_not_reset_is_reported(tmp_path: Path) -> None:
    folder = _folder(tmp_path, reset=False)
    assert check_run_folder(folder, "failure") == ["the sim world was not reset for this task"]


def test_bounds_pass_flat_figures_and_catch_leaks() -> None:
    ready = Sample(rss_mb=1000.0, fds=7, threads=13, children=0)
    flat = [Sample(1050.0 + (i % 3), 7 + (i % 2), 17, 0) for i in range(20)]
    figures = bounds(flat, ready)
    assert figures["warmup_tasks"] == 4
    assert all(figures[k]["ok"] for k in ("rss_mb", "fds", "threads", "children"))
    # one fd, one thread and 2 MB per task, and an encoder left behind once
    leaking = [Sample(1050.0 + 2 * i, 7 + i, 17 + i, int(i == 5)) for i in range(20)]
    figures = bounds(leaking, ready)
    assert figures["rss_mb"]["start"] == 1050.0 + 2 * 3  # after the warm-up (4 tasks)
    assert figures["rss_mb"]["growth"] == 2 * 16 > RSS_BOUND_MB
    assert figures["fds"]["growth"] == 16 > FD_BOUND
    assert not any(figures[k]["ok"] for k in ("rss_mb", "fds", "threads", "children"))
    assert figures["rss_mb"]["slope_per_100_tasks"] == pytest.approx(200.0)


def test_cancelled_tasks_get_requests_that_move_the_arm() -> None:
    for every in (2, 3, 5, 10):
        cancelled = [request_for(i, True, every) for i in range(every - 1, 60, every)]
        assert set(cancelled) == set(MOVING)  # every moving request gets cancelled in turn
    assert [ordinal(n) for n in (1, 2, 3, 4, 10, 11, 12, 13, 21, 22, 101)] == [
        "1st", "2nd", "3rd", "4th", "10th", "11th", "12th", "13th", "21st", "22nd", "101st"
    ]  # fmt: skip


def test_quick_soak_loses_nothing_and_stays_flat(tmp_path: Path) -> None:
    """CI's soak: 6 tasks on one real service, 2 cancelled part-way (about 40 s here)."""
    pytest.importorskip("mujoco")
    pytest.importorskip("uvicorn")
    pytest.importorskip("starlette")
    path = tmp_path / "soak.json"
    assert main(["bench", "soak", "--quick", "--json", str(path)]) == 0
    result = json.loads(path.read_text())
    assert result["ok"] and result["violations"] == [], result["violations"]
    assert result["tasks_run"] == 6 and result["lost"] == 0 and result["incomplete_folders"] == 0
    assert result["cancelled_asked"] == result["cancelled"] == 2
    assert sum(result["outcomes"].values()) == 6
    for task in result["tasks"]:
        assert task["status"] is not None and task["folder_ok"], task
        if task["cancel"]:
            assert task["status"] == "cancelled" and task["steps"] >= CANCEL_AFTER_STEPS
    figures = result["figures"]
    assert figures["fds"]["growth"] <= FD_BOUND
    assert figures["rss_mb"]["growth"] <= RSS_BOUND_MB
    assert figures["children"]["max_after_a_task"] == 0
    assert result["shutdown"]["exit"] == 130
    assert path.with_suffix(".md").read_text().startswith("Soak: 6 consecutive tasks")
