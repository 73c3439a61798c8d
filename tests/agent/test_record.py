"""`python -m agent record`: an operator's demonstrations into the dataset `train` reads.

Real: the command line in a child process (as a lab runs it), the runtime with the configured
reasoner, ground-truth detector, KCF tracker and segmenter, the MuJoCo world, the dataset on disk
and, for `franka-sim`, the real Franka driver (franky-control's libfranka) against franky-sim on a
loopback address (127.0.0.6: clear of the other Franka tests' .1-.5). The operator is this test at
a real pseudo-terminal (tests/agent/teleop_helpers.py), typing keys as a person would; nothing is
faked. Child processes also keep libfranka's threads out of the test process.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from agent.cli import main
from models.tpm.arrays import load_arrays
from models.tpm.dataset import EpisodeStore
from tests.agent.teleop_helpers import ROOT, Terminal

HOST = "127.0.0.6"
SMALL = [
    "--set", "models.reasoner=rules",
    "--set", "sim.image_width=96",
    "--set", "sim.image_height=96",
    "--set", "output.video=false",
]  # fmt: skip
FRANKA_SIM = ["--profile", "franka-sim", *SMALL, "--set", f'franka.host="{HOST}"']
needs_franky_sim = pytest.mark.skipif(
    not all(importlib.util.find_spec(m) for m in ("franky", "franky_sim", "mujoco")),
    reason="needs franky-control, franky-sim and mujoco",
)


def record(out: Path, *extra: str) -> Terminal:
    return Terminal("record", "give me the sponge", "--out", str(out), *extra)


def signalled(
    out: Path, sig: int, drive: Callable[[Terminal], object], *extra: str
) -> tuple[int, str]:
    """`record` on the sim, driven by `drive`, then sent `sig`: its exit code and its text."""
    term = record(out, *extra, *SMALL)
    try:
        drive(term)
        os.killpg(term.proc.pid, sig)
        return term.wait(30), term.text
    finally:
        term.close()


@needs_franky_sim
@pytest.mark.timeout(300)
def test_franka_sim_records_keeps_the_episode_not_discarded_replays_trains_and_runs_it(tmp_path):
    """Two attempts on franka-sim: the first discarded, the second (3 cm down, 2 cm left, gripper
    closed) kept. The store holds exactly the kept episode with its request, task, notes, verdict
    and source; the recorded moves are the keys typed; train's loader reads it; `--replay 0`
    drives it back on the arm and the hand ends where the demonstration aimed; two training
    steps on it, exported, drive franka-sim for 8 steps (the whole loop, not a good policy)."""
    out = tmp_path / "teleop.zarr"
    term = record(
        out, "--episodes", "1", *FRANKA_SIM,
        "--background", "grey table", "--distractors", "tea box, cup", "--notes", "test rig",
    )  # fmt: skip
    try:
        at = term.demonstrate("ww", verdict="d", timeout=150)
        at = term.expect("attempt 2", after=at)
        at = term.demonstrate("fff", "aa", " ", verdict="k", after=at, settle_s=1.0)
        assert term.wait(60) == 0, term.text[-2000:]
    finally:
        term.close()
    assert "recorded: 1 kept, 1 discarded" in term.text

    store = EpisodeStore(out, read_only=True)
    assert store.n_episodes == 1 and store.attrs["discarded"] == 1
    info = store.episodes[0]
    expected = {
        "source": "teleop",
        "device": "keyboard",
        "profile": "franka-sim",
        "robot": "franka",
        "request": "give me the sponge",
        "skill": "place_near",
        "pick": "sponge",
        "place": "user",
        "background": "grey table",  # the operator's note wins over the simulator's
        "distractors": ["tea box", "cup"],
        "notes": "test rig",
        "verdict": "keep",
    }
    assert {k: info.get(k) for k in expected} == expected
    assert info["length"] == store.n_steps > 5
    actions, proprio = store.array("action"), store.array("proprio")
    assert actions[:, 2].sum() == pytest.approx(-0.03, abs=0.0105)  # three presses of 1 cm
    assert actions[:, 1].sum() == pytest.approx(0.02, abs=0.0105)
    assert actions[:, 0].sum() == 0.0
    assert actions[-1, 3] == 1.0 and actions[0, 3] == 0.0  # the gripper closed on the way
    assert proprio[0, 2] - proprio[:, 2].min() > 0.015  # the arm really went down
    assert store.array("mask").max() > 0  # the tracked sponge (and the user) are in the masks
    arrays = load_arrays(store)
    assert len(arrays) == store.n_steps and arrays.rgb.shape[1:] == (2, 96, 96, 3)

    replay = agent("record", "--replay", "0", "--out", str(out), *FRANKA_SIM)
    assert replay.returncode == 0, replay.stderr[-2000:]
    line = next(x for x in replay.stdout.splitlines() if x.startswith("replayed"))
    off_cm = float(line.split("the hand ended ")[1].split(" cm")[0])
    print(line)
    assert off_cm < 1.5

    # the loop closed: train a few steps on it, export, and let the result drive franka-sim
    ckpt, onnx = tmp_path / "tpm", tmp_path / "lab.onnx"
    trained = agent(
        "train", "--data", str(out), "--steps", "2", "--batch-size", "8", "--out", str(ckpt)
    )
    assert trained.returncode == 0, trained.stderr[-2000:]
    exported = agent(
        "export", "--checkpoint", str(ckpt / "last.pt"), "--out", str(onnx), "--data", str(out)
    )
    assert exported.returncode == 0, exported.stderr[-2000:]
    policy = [
        "--set",
        "models.policy=tpm",
        "--set",
        f'policy.onnx="{onnx}"',
        "--set",
        "runtime.max_steps=8",
    ]
    ran = agent(
        "run",
        "give me the sponge",
        *FRANKA_SIM,
        *policy,
        "--quiet",
        "--runs-dir",
        str(tmp_path / "runs"),
    )
    assert ran.returncode in (0, 1), ran.stderr[-2000:]  # 2 steps of training: it may fail the task
    assert "steps 8 " in ran.stdout, ran.stdout[-2000:]


def agent(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent", *args],
        capture_output=True, text=True, timeout=150, cwd=ROOT,
        env={**os.environ, "MUJOCO_GL": "egl", "PYTHONPATH": str(ROOT)},
    )  # fmt: skip


@pytest.mark.timeout(150)
def test_sim_recorder_stopped_by_ctrl_c_sigterm_or_sigkill_keeps_the_earlier_episodes(tmp_path):
    """The sim profile (our MuJoCo arm). First run: one episode kept, then Ctrl-C (SIGINT, what
    the terminal sends) while the operator drives the second: exit 130 (the arm stopped first),
    the kept episode committed. Second run: SIGTERM at the keep/discard prompt: exit 143, nothing
    added. Third run: killed (SIGKILL) mid-episode: the store keeps the first whole and, reopened,
    says the last was incomplete."""
    out = tmp_path / "teleop.zarr"

    def one_kept_then_mid_episode(term: Terminal) -> None:
        at = term.demonstrate("ss", verdict="k", timeout=90)
        at = term.expect("episode 2 of 2 (attempt 1)", after=at)
        term.expect("recording at", after=at)
        term.type("ww", every=0.2)

    code, text = signalled(out, signal.SIGINT, one_kept_then_mid_episode, "--episodes", "2")
    assert code == 130 and "error: interrupted: the arm was stopped and the drivers closed" in text
    assert EpisodeStore(out, read_only=True).n_episodes == 1

    # SIGTERM (systemd, docker stop) while the operator is asked (no answer comes)
    code, text = signalled(out, signal.SIGTERM, lambda term: term.demonstrate("a", timeout=90))
    assert code == 143 and "error: terminated by SIGTERM: the arm was stopped" in text
    assert EpisodeStore(out, read_only=True).n_episodes == 1

    def mid_episode(term: Terminal) -> None:
        term.expect("recording at", timeout=90)
        term.type("rrr", every=0.2)

    code, _ = signalled(out, signal.SIGKILL, mid_episode)
    assert code == -signal.SIGKILL
    store = EpisodeStore(out)  # opening for writing repairs what the kill left
    assert store.n_episodes == 1 and store.episodes[0]["verdict"] == "keep"
    assert store.recovered is not None and "incomplete" in store.recovered
    assert np.isclose(store.array("action")[:, 0].sum(), -0.02, atol=0.0105)


@pytest.mark.timeout(120)
def test_a_silent_input_device_ends_the_episode_and_stops_the_arm(tmp_path):
    """The deadman rule: nobody types for teleop.deadman_s, so the episode ends as a fault from
    the act loop, the arm is stopped (the safe stop went "ok"), the operator is still asked, and
    `record` exits 1 instead of starting the next episode."""
    out = tmp_path / "teleop.zarr"
    term = record(out, "--episodes", "3", *SMALL, "--set", "teleop.deadman_s=1.5")
    try:
        at = term.expect("recording at", timeout=90)
        at = term.expect("fault (act): the keyboard sent nothing for", after=at, timeout=30)
        at = term.expect("arm stop: ok", after=at)
        term.expect("[k/d/r]", after=at)
        term.type("d\n")
        assert term.wait(30) == 1
    finally:
        term.close()
    assert "stopped after a fault" in term.text
    assert "episode 2 of 3" not in term.text
    store = EpisodeStore(out, read_only=True)
    assert store.n_episodes == 0 and store.attrs["discarded"] == 1


def test_bad_input_is_one_line(tmp_path, capsys):
    """No request, no 3D mouse, a replay of an episode the dataset lacks: one line, exit 2,
    nothing written. (The keyboard without a terminal and an unwritable dataset: below.)"""
    cases = [
        (["record"], "say what is demonstrated"),
        (["record", "give me the sponge", "--set", "teleop.device=spacemouse"], "3D mouse"),
        (["record", "--replay", "0", "--out", str(tmp_path / "none.zarr")], "no dataset at"),
    ]
    for argv, message in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and message in err and "\n" not in err, err
    assert not (tmp_path / "none.zarr").exists()


def test_no_terminal_an_unwritable_dataset_or_a_missing_rig_is_one_line(tmp_path):
    """`record` in a pipe (no terminal to read keys from), --out under a file, and the real
    profile without its cameras: one line each, exit 2, no dataset left behind."""
    env = {**os.environ, "MUJOCO_GL": "egl", "PYTHONPATH": str(ROOT)}
    out = tmp_path / "teleop.zarr"
    piped = subprocess.run(
        [sys.executable, "-m", "agent", "record", "give me the sponge", "--out", str(out)],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60, cwd=ROOT, env=env,
    )  # fmt: skip
    assert piped.returncode == 2
    assert piped.stderr.strip().startswith("error: the keyboard device needs a terminal")
    assert not out.exists()
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    term = record(blocker / "teleop.zarr", *SMALL)
    try:
        assert term.wait(60) == 2
    finally:
        term.close()
    lines = [x for x in term.text.splitlines() if x.strip()]
    assert lines[-1].startswith("error: ") and "a-file" in lines[-1], term.text
    term = record(out, "--profile", "real")  # a lab profile on a machine without its rig
    try:
        assert term.wait(60) == 2
    finally:
        term.close()
    last = [x for x in term.text.splitlines() if x.strip()][-1]
    assert last.startswith("error: camera 'front': no RealSense"), term.text
    assert not out.exists()  # the dataset it created is removed again: nothing was recorded


@pytest.mark.timeout(120)
def test_a_spacemouse_drives_a_recorded_episode(tmp_path, monkeypatch):
    """`record` in this process on the sim profile with teleop.device = "spacemouse": pyspacemouse
    runs for real over the fake HID device of tests/drivers/test_input.py (no 3D mouse here), which
    reports the cap pushed away from the operator for 1.5 s, then the gripper button, then the end
    button. The verdict comes through a pipe on standard input. The kept episode moved +y only."""
    pyspacemouse = pytest.importorskip("pyspacemouse")
    from tests.drivers.test_input import FakeHid, axes_report, buttons_report

    hid = FakeHid()
    opened: list[float] = []
    hid.open = lambda: opened.append(time.monotonic())  # type: ignore[method-assign]

    class Enumeration:
        def find(self, **_: object) -> list[FakeHid]:
            return [hid]

    monkeypatch.setattr(pyspacemouse.api, "Enumeration", Enumeration)
    read, write = os.pipe()
    os.write(write, b"k\n")
    os.close(write)
    monkeypatch.setattr(sys, "stdin", os.fdopen(read))

    def operator() -> None:
        while len(opened) < 2:  # the first opening is record's check, the second the episode
            time.sleep(0.02)
        time.sleep(1.0)  # reasoning and detection
        until = time.monotonic() + 1.5
        while time.monotonic() < until:
            hid.reports.append(axes_report(0, -350, 0))  # HID y points at the operator
            time.sleep(0.05)
        hid.reports.extend([axes_report(0, 0, 0), buttons_report(0b01), buttons_report(0)])
        time.sleep(0.5)
        hid.reports.extend([buttons_report(0b10), buttons_report(0)])

    feeder = threading.Thread(target=operator, daemon=True)
    feeder.start()
    out = tmp_path / "mouse.zarr"
    argv = ["record", "give me the sponge", "--out", str(out), *SMALL]
    assert main([*argv, "--set", "teleop.device=spacemouse"]) == 0
    feeder.join(5)
    store = EpisodeStore(out, read_only=True)
    assert store.n_episodes == 1 and store.episodes[0]["device"] == "spacemouse"
    actions = store.array("action")
    assert actions[:, 1].sum() > 0.1  # ~15 steps of a full deflection at 2 cm
    assert np.abs(actions[:, [0, 2]]).max() == 0.0
    assert actions[-1, 3] == 1.0
