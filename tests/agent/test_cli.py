"""The CLI as a user runs it: `python -m agent ...` in a subprocess against the real sim world."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SMALL = ["--set", "sim.image_width=96", "--set", "sim.image_height=96"]
EXPERT = ["--set", "models.policy=expert"]  # deterministic success for the output checks


def agent(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MUJOCO_GL": "egl", "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "agent", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    """The run failed with exactly one line on stderr that starts with 'error:'."""
    lines = proc.stderr.strip().splitlines()
    assert "Traceback" not in proc.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["run", "   "], "request is empty"),
        (["run", "I spilled the milk", "--profile", "nope"], "unknown profile 'nope'"),
        (["run", "x", "--set", "models.tracker=foo"], "models.tracker: 'foo' is not allowed"),
        (["run", "x", "--objects", "no/such/catalog.toml"], "--objects: file not found"),
        (["run", "x", "--set", 'sim.objects=["unicorn"]'], "unicorn"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, expected):
    proc = agent(*args, cwd=tmp_path)
    assert proc.returncode == 2
    assert expected in one_line_error(proc)


def test_run_prints_success_latency_table_and_writes_the_run_folder(tmp_path):
    proc = agent(
        "run",
        "I spilled the milk",
        *SMALL,
        *EXPERT,
        "--log-json",
        "--log-level",
        "info",
        cwd=tmp_path,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("SUCCESS: sponge is")
    for stage in ("perceive", "act", "command", "total", "median", "p90", "p99"):
        assert stage in proc.stdout
    # piped (as into a file): no line is wrapped at 80 columns, e.g. the dropped-values line
    dropped = next(line for line in proc.stdout.splitlines() if line.startswith("dropped"))
    assert "frames/front" in dropped and "actions" in dropped, proc.stdout
    folder = Path(proc.stdout.strip().splitlines()[-1].removeprefix("run folder: "))
    folder = folder if folder.is_absolute() else tmp_path / folder
    assert {p.name for p in folder.iterdir()} >= {"events.jsonl", "summary.json", "video.mp4"}
    # --log-json: every log line on stderr is a JSON object; the human notes are not logs
    logs = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith("{")]
    assert any(entry["event"] == "robot stopped" for entry in logs)


def test_run_drives_with_the_shipped_tpm_policy_by_default(tmp_path):
    """No policy named: the shipped ONNX policy drives (found from another working folder), and
    a run that uses up its step budget still ends with the arm stopped."""
    proc = agent(
        "run",
        "I spilled the milk",
        *SMALL,
        "--set",
        "runtime.max_steps=12",
        "--no-video",
        "--log-json",
        "--log-level",
        "info",
        cwd=tmp_path,
        timeout=180,
    )
    logs = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith("{")]
    loaded = [entry for entry in logs if entry["event"] == "tpm policy loaded"]
    assert loaded and loaded[0]["path"].endswith("policies/tpm_cpu.onnx"), proc.stderr
    assert loaded[0]["provider"] == "CPUExecutionProvider"
    assert "robot stopped" in [entry["event"] for entry in logs]
    folder = next((tmp_path / "runs").iterdir())
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["outcome"]["steps"] == 12 and summary["outcome"]["status"] == "failure"
    assert json.loads((folder / "config.json").read_text())["models"]["policy"] == "tpm"


def test_doctor_reports_the_sim_ready(tmp_path):
    proc = agent("doctor", "--json", cwd=tmp_path)
    report = json.loads(proc.stdout)
    assert proc.returncode == 0 and report["sim_ready"] is True
    names = {check["name"]: check for check in report["checks"]}
    assert names["mujoco"]["ok"] and names["opencv trackers"]["ok"]
    assert names["renderer (egl)"]["ok"]
    # the sim profile's policy is the shipped ONNX file: present and counted
    assert names["policy.onnx"]["ok"] and "(in use)" in names["policy.onnx"]["detail"]


def test_config_verb_prints_the_resolved_config(tmp_path):
    proc = agent("config", "--set", "runtime.control_hz=20", cwd=tmp_path)
    assert proc.returncode == 0
    assert json.loads(proc.stdout)["runtime"]["control_hz"] == 20
