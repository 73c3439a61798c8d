"""`python -m agent train` says how many episodes and steps of each source it read: teleoperated
(`record`), hand-guided (`record --device guiding`), the scripted expert (`collect`) and DAgger
(`collect` with a pilot). Real stores on disk (synthetic frames) and the real CLI entry, trained
for one step of the cpu preset."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("zarr")

from agent.cli import main
from models.tpm.dataset import EpisodeStore
from models.tpm.sources import source_counts
from tests.models.test_tpm_pipeline import _dataset

RECORDED = [{"source": "teleop", "device": "keyboard"}, {"source": "guiding"}] * 2
COLLECTED = [{"seed": 0, "pilot": "expert"}, {"seed": 1, "pilot": "tpm"}, {"seed": 2}]


def test_train_reports_the_episodes_and_steps_of_each_source(tmp_path: Path, capsys) -> None:
    lab = _dataset(tmp_path / "lab.zarr", episodes=4, steps=3, size=96, info=RECORDED.__getitem__)
    sim = _dataset(tmp_path / "sim.zarr", episodes=3, steps=4, size=96, info=COLLECTED.__getitem__)
    counts = source_counts(EpisodeStore(p, read_only=True) for p in (lab, sim))
    assert counts == {"teleop": (2, 6), "guiding": (2, 6), "sim": (2, 8), "dagger": (1, 4)}
    argv = ["train", "--data", str(lab), "--data", str(sim), "--out", str(tmp_path / "run")]
    assert main([*argv, "--steps", "1", "--batch-size", "2", "--val-fraction", "0"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("data: "))
    assert line == (
        "data: 7 episodes, 24 steps: teleop 2 episodes (6 steps), guiding 2 episodes (6 steps), "
        "sim 2 episodes (8 steps), dagger 1 episode (4 steps)"
    )
