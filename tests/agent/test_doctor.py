"""`doctor`'s table as a user reads it: piped into a file, escaped, quiet, with sources to fetch.

The report is the real one of this machine (`python -m agent doctor` in a subprocess, stdout a
pipe, as `> file` makes it); the rendering test feeds rows that this machine may not produce
(a missing extra) to the same table code.
"""

from __future__ import annotations

import io
import subprocess
import sys

import pytest
from rich.console import Console

from agent.display import plain_console
from agent.doctor import Check, render


@pytest.mark.timeout(120)
def test_doctor_piped_to_a_file_is_whole_lines_without_warnings(tmp_path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "agent", "doctor"],
        capture_output=True,
        text=True,
        timeout=110,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Warning" not in proc.stderr, proc.stderr  # MobileSAM's timm notices are silenced
    lines = proc.stdout.splitlines()
    assert lines[0] == "tpm-agent doctor"
    rows = {line.split("│")[2].strip(): line for line in lines if line.count("│") == 6}
    # one line per check, nothing wrapped at 80 columns: the whole path and the whole source
    assert "policies/tpm_cpu.onnx (in use)" in rows["policy.onnx"]
    assert max(len(line) for line in lines) > 120
    sam = rows.get("sam.checkpoint", "")
    if "missing" in sam:
        assert "download it from https://dl.fbaipublicfiles.com/segment_anything/" in sam
        assert "download it there" not in proc.stdout
    assert "TrackerCSRT, TrackerKCF, TrackerMIL" in rows["opencv trackers"]


def test_square_brackets_in_a_row_are_text_not_markup() -> None:
    """rich reads "[kinect]" as a style tag and drops it unless the cell is Text."""
    out = io.StringIO()
    checks = [
        Check(
            "camera", "pyk4a", False, "No module named 'pyk4a'", "pip install 'tpm-agent[kinect]'"
        ),
        Check("device", "azure kinect cameras", False, "then pip install 'tpm-agent[kinect]' (x)"),
        Check("sim", "mujoco", True, "[bold]4.0.0[/bold]"),
    ]
    render(checks, "sim", True, Console(file=out, width=400))
    text = out.getvalue()
    assert text.count("pip install 'tpm-agent[kinect]'") == 2
    assert "[bold]4.0.0[/bold]" in text
    assert "sim profile: ready" in text


def test_mobile_sams_import_warnings_are_silenced_and_others_are_not() -> None:
    """In a fresh interpreter with every warning shown: importing MobileSAM (timm's deprecated
    paths, TinyViT names registered twice) prints nothing; a warning of our own still shows."""
    code = (
        "import warnings; from models._loading import import_quietly; "
        "import_quietly('mobile_sam'); warnings.warn('our own', FutureWarning)"
    )
    proc = subprocess.run(
        [sys.executable, "-W", "always", "-c", code], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    warned = [line for line in proc.stderr.splitlines() if "Warning:" in line]
    assert len(warned) == 1 and "FutureWarning: our own" in warned[0], proc.stderr


def test_a_piped_console_keeps_a_long_line_whole(capsys: pytest.CaptureFixture) -> None:
    """The run summary's console too (agent.display): stdout is a pipe under pytest."""
    line = "dropped (overwritten before use): " + ", ".join(f"frames/v{i} {i}" for i in range(30))
    plain_console().print(line)
    assert capsys.readouterr().out == line + "\n"
