"""`bench expert`: the scripted expert on drawn tasks in the real MuJoCo world, counted per cell."""

from __future__ import annotations

import json
from pathlib import Path

from agent.cli import main


def test_bench_runs_the_expert_and_counts_every_cell(tmp_path: Path, capsys) -> None:
    out = tmp_path / "expert.json"
    assert main(["bench", "expert", "--tasks", "2", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "| skill | standard seen | standard unseen |" in text
    assert "expert: " in text and "/2 succeeded" in text
    trials = json.loads(out.read_text())["trials"]
    assert [(t["split"], t["setting"]) for t in trials] == [
        ("seen", "standard"),
        ("unseen", "standard"),
    ]
    assert [t["seed"] for t in trials] == [0, 1]  # the demonstration seeds `collect` draws first


def test_bench_refuses_held_out_seeds(capsys) -> None:
    assert main(["bench", "expert", "--tasks", "2", "--seed", "9000"]) == 2
    assert "held-out" in capsys.readouterr().err
