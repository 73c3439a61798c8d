"""scripts/collect_train_parallel.py: collectors stopped at their budget, the summary it writes.

Collection and training themselves are the real commands (tested in test_collect_tpm and
test_tpm_pipeline); this checks the orchestration: one store per process, every process stopped
with SIGTERM when the budget is spent, each store reported, and no training without data.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_collectors_stop_at_their_budget_and_are_reported(tmp_path: Path) -> None:
    out = tmp_path / "job"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "collect_train_parallel.py"), "--out", str(out),
         "--collectors", "2", "--collect-minutes", "0.1", "--variants", "", "--seed-base", "4200"],
        capture_output=True, text=True, timeout=180, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "collected 0 episodes" in proc.stdout  # 6 s is too short for one episode
    summary = json.loads((out / "summary.json").read_text())
    rows = summary["collect"]
    assert [Path(r["store"]).name for r in rows] == ["c00.zarr", "c01.zarr"]
    assert all(r["exit"] == -15 for r in rows)  # stopped by SIGTERM, not finished or crashed
    assert "train" not in summary  # nothing collected, nothing to train on
    for k in range(2):
        log = (out / "logs" / f"collect-{k:02d}.log").read_text()
        assert "Traceback" not in log
