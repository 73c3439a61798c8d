"""Faults through the Runtime (issue 12, section 2): the run folder itself fails (cannot be
written, the disk fills mid-run, the video encoder dies) or must survive a crash (unique folders,
atomic summary and config).

Every test checks (a) the cause in one line, (b) the arm told to stop before the episode's events
ended, (c) a complete run folder: see tests/faults_helpers.py. Faults are injected at the narrowest
boundary: the recorder's one write to its event log (`RunRecorder._append`, raising ENOSPC as a full
disk would), the video encoder's `add`, and `json.dump` for the atomic writes. The rest is real.
"""

from __future__ import annotations

import errno
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import pytest

from agent import RunFolderError, Runtime
from agent.events import Event, Outcome
from agent.recording import RunRecorder, VideoWriter, new_run_folder, write_json_atomic
from tests.conftest import make_config
from tests.faults_helpers import (
    REQUEST,
    VIDEO,
    StopSpy,
    agent_proc,
    check_run_folder,
    collect,
    only_fault,
    read_events,
    spying,
    stopped_before,
)


# ------------------------------------------------------------- a run folder that cannot be written
@pytest.mark.parametrize("where", ["a file", "under a file", "/proc"])
def test_a_runs_dir_that_cannot_be_written_is_one_line_and_exit_2(
    tmp_path: Path, where: str
) -> None:
    """Checked before the runtime starts: nothing moves, one line, exit 2, no folder left."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    runs_dir = {
        "a file": blocker,
        "under a file": blocker / "runs",
        "/proc": Path("/proc/agent-runs-test"),
    }[where]
    started = time.monotonic()
    proc = agent_proc("run", REQUEST, "--runs-dir", str(runs_dir), cwd=tmp_path)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot write the run folder "), err
    assert "Traceback" not in err and "ExceptionGroup" not in err
    assert not out
    assert time.monotonic() - started < 60  # refused before loading the world and models
    assert blocker.read_text() == "x"


@pytest.mark.asyncio
async def test_an_unwritable_run_dir_is_refused_before_anything_moves(tmp_path: Path) -> None:
    """execute() checks the run folder before the world is touched; the error leaves `async with
    Runtime` as itself (not an ExceptionGroup), and a folder holding a run is not reused."""
    config = make_config(tmp_path, "runtime.max_steps=5")
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    spy: dict[str, StopSpy] = {}
    async with Runtime(config, parts_factory=spying(spy)) as runtime:
        before = runtime.parts.robot.state().ee_pos.copy()
        with pytest.raises(RunFolderError, match=r"cannot write the run folder .*Not a directory"):
            await runtime.execute(REQUEST, run_dir=blocker / "run").__anext__()
        assert not runtime.busy and spy["robot"].stop_times == []
        assert np.allclose(runtime.parts.robot.state().ee_pos, before, atol=1e-3)
        # the runtime goes on: a run, then the same folder again, refused before anything moves
        folder = tmp_path / "run"
        events = await collect(runtime, run_dir=folder)
        assert events[-1].outcome.steps == 5  # type: ignore[attr-defined]
        with pytest.raises(RunFolderError, match="already holds a run"):
            await runtime.execute(REQUEST, run_dir=folder).__anext__()
        assert not runtime.busy
        check_run_folder(folder, events)
    with pytest.raises(RunFolderError):  # uncaught in the body: it leaves as itself
        async with Runtime(config) as runtime:
            await collect(runtime, run_dir=blocker / "run")


def _recording_fault_went_on(events: list[Event], spy: StopSpy, cause: str) -> Outcome:
    """A non-fatal sink Fault naming `cause`; the episode ran 20 steps, then the arm stopped."""
    assert cause in only_fault(events, "record", fatal=False).message
    outcome = events[-1].outcome  # type: ignore[attr-defined]
    assert outcome.status == "failure" and "step budget" in outcome.reason
    assert outcome.steps == 20 and outcome.stop == "ok"
    stopped_before(events, spy)
    return outcome


async def _recorded_episode(tmp_path: Path, folder: Path) -> tuple[list[Any], dict[str, StopSpy]]:
    """A 20-step recorded episode (video on) into `folder`, with the arm's stop calls spied."""
    config = make_config(tmp_path, VIDEO, "runtime.max_steps=20")
    spy: dict[str, StopSpy] = {}
    async with Runtime(config, parts_factory=spying(spy)) as runtime:
        with anyio.fail_after(90):
            events = await collect(runtime, run_dir=folder)
    return events, spy


@pytest.mark.asyncio
async def test_a_full_disk_mid_run_is_a_fault_and_the_episode_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk, simulated at the recorder's one write to its event log (`_append` raises
    OSError(ENOSPC) from the 12th event on): a non-fatal Fault, recording stops, the episode runs
    to its end with the arm stopped, and what was written stays whole."""
    written = 11
    real_append = RunRecorder._append
    calls = {"n": 0}

    def append(self: RunRecorder, data: bytes) -> None:
        calls["n"] += 1
        if calls["n"] > written:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_append(self, data)

    monkeypatch.setattr(RunRecorder, "_append", append)
    folder = tmp_path / "run"
    events, spy = await _recorded_episode(tmp_path, folder)
    outcome = _recording_fault_went_on(events, spy["robot"], "No space left on device")
    # the log holds the first 11 events, each whole; the summary the outcome and the error
    summary = check_run_folder(folder)
    assert read_events(folder) == events[:written]
    assert Outcome.model_validate(summary["outcome"]) == outcome
    assert "No space left on device" in summary["recording_error"]


@pytest.mark.asyncio
async def test_a_failing_video_encoder_is_a_fault_and_the_episode_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The video sink fails after 4 frames (`VideoWriter.add` raises BrokenPipeError, as a dead
    encoder's pipe does): a non-fatal Fault, the events go on being logged, the video keeps its
    4 frames, playable."""
    real_add = VideoWriter.add

    def add(self: VideoWriter, image: Any) -> None:
        if self.frames >= 4:
            raise BrokenPipeError(errno.EPIPE, os.strerror(errno.EPIPE))
        real_add(self, image)

    monkeypatch.setattr(VideoWriter, "add", add)
    folder = tmp_path / "run"
    events, spy = await _recorded_episode(tmp_path, folder)
    _recording_fault_went_on(events, spy["robot"], "Broken pipe")
    summary = check_run_folder(folder, events)
    assert summary["video_frames"] == 4 and "Broken pipe" in summary["recording_error"]


# ------------------------------------------------------------------------------------- run folders
def test_two_runs_in_the_same_second_get_their_own_folders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The folder is claimed when it is named: 12 threads at once, one second, 12 folders."""
    monkeypatch.setattr("agent.recording._stamp", lambda: "20260101-120000")
    folders: list[Path] = []
    barrier = threading.Barrier(12)

    def claim() -> None:
        barrier.wait()
        folders.append(new_run_folder(tmp_path / "runs", REQUEST))

    threads = [threading.Thread(target=claim) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(folders)) == 12 and all(f.is_dir() for f in folders)
    names = sorted(f.name for f in folders)
    assert "20260101-120000-i-spilled-the-milk" in names
    assert "20260101-120000-i-spilled-the-milk-12" in names


def test_summary_and_config_are_written_whole_or_not_at_all(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crash in the middle of writing (json.dump writes half, then fails) leaves the old file,
    or none, and no temporary file."""
    real_dump = json.dump

    def dump_half_then_fail(obj: Any, fp: Any, **kwargs: Any) -> None:
        fp.write(json.dumps(obj, **kwargs)[:20])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    path = tmp_path / "summary.json"
    write_json_atomic(path, {"outcome": "old"})
    monkeypatch.setattr("agent.recording.json.dump", dump_half_then_fail)
    with pytest.raises(OSError, match="No space left"):
        write_json_atomic(path, {"outcome": "new"})
    assert json.loads(path.read_text()) == {"outcome": "old"}
    with pytest.raises(OSError):
        write_json_atomic(tmp_path / "absent.json", {"x": 1})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]

    # config.json: the run folder is refused whole (no config, no event log begun)
    config = make_config(tmp_path)
    with pytest.raises(RunFolderError, match="No space left"):
        RunRecorder(tmp_path / "run", config)
    assert list((tmp_path / "run").iterdir()) == []

    # summary.json: finish() reports the failure in the log and does not raise
    monkeypatch.setattr("agent.recording.json.dump", real_dump)
    recorder = RunRecorder(tmp_path / "run", config)
    monkeypatch.setattr("agent.recording.json.dump", dump_half_then_fail)
    recorder.finish(Outcome(status="cancelled", success=None, reason="x", stop="ok"))
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["config.json", "events.jsonl"]
