"""The rerun live view and `view`: real sim runs, real .rrd files read back with rerun's own API.

One short sim run (the scripted expert, 96 px views) with `--rrd` is shared by the tests that
read its recording and replay its folder; the web viewer is served for real on 127.0.0.1 ports.
"""

from __future__ import annotations

import collections
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import anyio
import numpy as np
import pytest

from agent.channels import Latest
from agent.display import RunDisplay
from agent.live_view import PERCEPT_BACKLOG, LiveView, ViewError, open_stream
from agent.messages import PerceptMsg
from tests.agent.test_cli import EXPERT, ROOT, SMALL, agent, one_line_error

# the view extra (make setup installs it; where every test must run, a skip is a failure)
RrdReader = pytest.importorskip("rerun.chunk").RrdReader

REQUEST = "I spilled the milk"


def entity_rows(rrd: Path) -> dict[str, int]:
    """Rows logged per entity path (static ones included), read with rerun's RrdReader."""
    counts: collections.Counter[str] = collections.Counter()
    for chunk in RrdReader(rrd).stream():
        counts[chunk.entity_path] += chunk.num_rows
    return dict(counts)


def column(rrd: Path, entity: str, name: str) -> list:
    """Every value of one component column of one entity, in the order logged."""
    values: list = []
    for chunk in RrdReader(rrd).stream():
        if chunk.entity_path == entity:
            batch = chunk.to_record_batch()
            if name in batch.schema.names:
                values += batch.column(name).to_pylist()
    return values


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A finished run folder written by `run --rrd` (exit 0: the expert succeeds)."""
    tmp = tmp_path_factory.mktemp("live")
    proc = agent(
        "run", REQUEST, *SMALL, *EXPERT, "--no-video", "--quiet", "--rrd",
        "--runs-dir", str(tmp / "runs"), cwd=tmp, timeout=240,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    (folder,) = (tmp / "runs").iterdir()
    return folder


def steps_of(folder: Path) -> list[dict]:
    lines = (folder / "events.jsonl").read_text().splitlines()
    return [e for e in map(json.loads, lines) if e["kind"] == "step"]


def test_run_with_rrd_writes_every_entity_with_plausible_counts(run_dir):
    rrd = run_dir / "recording.rrd"
    rows = entity_rows(rrd)
    steps = steps_of(run_dir)
    n = len(steps)
    assert n == json.loads((run_dir / "summary.json").read_text())["outcome"]["steps"] > 10
    for view in ("front", "side"):  # a frame per percept, each with its masks and boxes
        frames = rows[f"/cameras/{view}/rgb"]  # about one percept per step: the act loop's
        assert n // 2 <= frames <= 2 * n  # drops and the view's own (if it lags) move it a bit
        assert rows[f"/cameras/{view}/masks"] == rows[f"/cameras/{view}/boxes"] == frames
    for entity in ("/robot/ee", "/robot/ee_path", "/robot/gripper_closed"):
        assert rows[entity] == n  # every step: events are never dropped
    for stage in ("perceive", "act", "command", "total"):
        assert rows[f"/latency_ms/{stage}"] == n
    assert rows["/action/move"] == n + 1  # and the series names, static
    assert rows["/cameras"] == 1  # the annotation context: pick and place classes
    # the path ends where the arm ended, point for point
    path = column(rrd, "/robot/ee_path", "LineStrips3D:strips")[-1][0]
    assert len(path) == n
    assert np.allclose(path[-1], steps[-1]["ee_pos"], atol=1e-5)
    # the masks carry both classes; the boxes are labelled with role and object
    masks = column(rrd, "/cameras/front/masks", "SegmentationImage:buffer")
    assert {0, 1, 2} <= set(np.concatenate([np.asarray(m[0]) for m in masks]).tolist())
    labels = {x for row in column(rrd, "/cameras/front/boxes", "Boxes2D:labels") for x in row}
    assert {"pick: sponge", "place: user"} <= labels
    texts = [t[0] for t in column(rrd, "/events", "TextLog:text")]
    assert any(t.startswith("started 'I spilled the milk'") for t in texts)
    assert any(t.startswith("success: ") for t in texts)
    chunk = next(c for c in RrdReader(rrd).stream() if c.entity_path == "/robot/ee")
    assert {"capture", "step"} <= set(chunk.timeline_names)


@pytest.mark.parametrize("from_events", [False, True])
def test_view_replays_a_run_folder_into_an_rrd(run_dir, tmp_path, from_events):
    out = tmp_path / "replay.rrd"
    args = ["view", str(run_dir), "--save", str(out)] + (["--from-events"] if from_events else [])
    proc = agent(*args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"wrote {out}"
    rows, n = entity_rows(out), len(steps_of(run_dir))
    assert rows["/robot/ee"] == rows["/latency_ms/total"] == n
    if from_events:  # the event log has no images
        assert not any(k.startswith("/cameras/front") for k in rows)
        assert rows["/events"] >= 7  # started, reasoned, 4 detected, finished
    else:  # the recording as it was
        original = entity_rows(run_dir / "recording.rrd")
        assert {k: v for k, v in rows.items() if k != "/__properties"} == {
            k: v for k, v in original.items() if k != "/__properties"
        }


@pytest.mark.parametrize(
    ("make", "args", "expected"),
    [
        (lambda tmp: tmp / "nope", [], "no run folder at"),
        (lambda tmp: tmp, [], "holds neither recording.rrd nor events.jsonl"),
    ],
)
def test_view_bad_folder_is_one_line_and_exit_2(tmp_path, make, args, expected):
    proc = agent("view", str(make(tmp_path)), "--save", str(tmp_path / "x.rrd"), cwd=tmp_path)
    assert proc.returncode == 2
    assert expected in one_line_error(proc)


def test_native_view_without_a_display_says_what_to_use(run_dir, tmp_path, monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    proc = agent("view", str(run_dir), cwd=tmp_path)
    assert proc.returncode == 2
    assert "no display here for the native viewer" in one_line_error(proc)


def test_missing_rerun_names_the_extra_before_anything_moves(tmp_path):
    """rerun-sdk is installed here: a module named `rerun` that fails to import stands in for
    its absence (the narrowest fake: the import itself), first on the path."""
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "rerun.py").write_text("raise ImportError('No module named rerun')\n")
    env = {**os.environ, "MUJOCO_GL": "egl", "PYTHONPATH": f"{fake}:{ROOT}"}
    proc = subprocess.run(
        [sys.executable, "-m", "agent", "run", REQUEST, "--rrd", "--runs-dir", "runs"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "pip install 'tpm-agent[view]'" in one_line_error(proc)
    assert not (tmp_path / "runs").exists()  # checked before the run folder is made


def free_port_pair() -> int:
    """A port p with p and p + 1 free on every interface (the web viewer and its data)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("0.0.0.0", 0))
            port = s.getsockname()[1]
        if port < 65534:
            with socket.socket() as t:
                try:
                    t.bind(("0.0.0.0", port + 1))
                except OSError:
                    continue
            return port
    raise RuntimeError("no two free ports in a row")


def test_web_view_serves_the_viewer_and_refuses_a_taken_port():
    port = free_port_pair()
    rec, url = open_stream(rrd=None, mode="web", port=port)
    try:
        assert url is not None and f":{port}/?url=rerun%2Bhttp" in url
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as page:
            assert page.status == 200 and b"<html" in page.read().lower()
        with socket.create_connection(("127.0.0.1", port + 1), timeout=5):
            pass  # the data (gRPC) server listens
        with pytest.raises(ViewError, match=f"port {port} is in use"):
            open_stream(rrd=None, mode="web", port=port)
    finally:
        rec.disconnect()


def test_a_bare_view_before_the_request_says_where_it_goes(tmp_path):
    proc = agent("run", "--view", REQUEST, cwd=tmp_path)
    assert proc.returncode == 2
    assert "a bare --view goes after the request" in one_line_error(proc)


def test_run_with_a_taken_view_port_is_one_line_before_anything_moves(tmp_path):
    port = free_port_pair()
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", port + 1))
        taken.listen()
        proc = agent(
            "run", REQUEST, "--view", "web", "--view-port", str(port), "--runs-dir", "runs",
            cwd=tmp_path,
        )  # fmt: skip
    assert proc.returncode == 2
    assert f"port {port + 1} is in use" in one_line_error(proc)
    assert not (tmp_path / "runs").exists()


def test_the_observer_never_blocks_and_counts_what_it_drops():
    """A stalled logger (the worker thread blocked) must not hold the event loop's calls."""
    import rerun as rr

    rec = rr.RecordingStream("test")  # no sink: nothing leaves the process
    view = LiveView(rec)
    stall, entered = threading.Event(), threading.Event()

    class Stalled:
        def percept(self, msg: PerceptMsg) -> None:
            entered.set()
            stall.wait(10)

        def note(self, text: str, *, warn: bool = False) -> None:
            pass

    view._log = Stalled()  # type: ignore[assignment]
    msg = PerceptMsg(percept=None, t_capture=0.0, t_done=0.0, perceive_ms=0.0)  # type: ignore[arg-type]
    view.percept(msg)
    assert entered.wait(5)
    t0 = time.perf_counter()
    for _ in range(50):
        view.percept(msg)
    assert time.perf_counter() - t0 < 0.05
    assert view.dropped["percepts"] == 50 - PERCEPT_BACKLOG
    stall.set()
    view.close()


def test_a_watcher_sees_values_without_hiding_drops():
    async def scenario() -> None:
        channel: Latest[int] = Latest("x")
        watcher = channel.watcher()
        channel.publish(1)
        assert await watcher.next(timeout=1) == 1
        channel.publish(2)  # 1 was only watched, never taken: it counts as dropped
        assert channel.dropped == 1
        assert await watcher.next(timeout=1) == 2
        assert watcher.poll() is None

    anyio.run(scenario)


def test_the_live_panel_shows_step_of_budget_elapsed_and_a_bar(tmp_path):
    from rich.console import Console

    from agent.events import Started, Step

    display = RunDisplay(REQUEST, tmp_path, live=False, budget=(600, 180.0))
    display._err = Console(stderr=False, record=True, width=100)
    display.update(Started(episode="e", t=0.0, request=REQUEST, profile="sim", scene_objects=[]))
    step = Step(
        episode="e", t=1.0, index=86, executed=True, move=(0.0, 0.0, 0.0),
        gripper_closed=False, ee_pos=(0.1, 0.2, 0.3), latency_ms={"total": 100.0},
    )  # fmt: skip
    display.update(step)
    console = Console(record=True, width=100)
    console.print(display._render())
    text = console.export_text()
    assert "step 86 of 600" in text
    assert "s of 180 s" in text
    assert "━" in text  # the bar
