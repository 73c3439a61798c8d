"""`train` under torchrun: two gloo processes on this CPU learn as one process does.

Real torchrun, real process group (gloo) and DistributedDataParallel; the data are the tests'
small synthetic demonstrations (`test_tpm_pipeline._dataset`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("zarr")
pytest.importorskip("onnxruntime")

from models.tpm.checkpoint import load_checkpoint  # noqa: E402
from models.tpm.export import export_onnx  # noqa: E402
from models.tpm.onnx_policy import OnnxTPMPolicy  # noqa: E402
from tests.models.test_tpm_pipeline import _dataset  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
TORCHRUN = Path(sys.executable).with_name("torchrun")
HELPER = ROOT / "tests" / "models" / "_ddp_train.py"


def _run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return done


def _rows(out: Path, kind: str) -> list[dict]:
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


def test_two_gloo_processes_follow_the_loss_curve_of_one(tmp_path: Path) -> None:
    """The same global batch (16 = 1 x 16 = 2 x 8) on the same data: the same steps, validation
    losses within 10% epoch by epoch, one metrics file (rank 0's), a checkpoint `export` reads."""
    data = _dataset(tmp_path / "demos.zarr", episodes=8, steps=24)
    one, two = tmp_path / "one", tmp_path / "two"
    _run([sys.executable, str(HELPER), str(data), str(one), "3", "16"])
    _run([str(TORCHRUN), "--standalone", "--nproc-per-node", "2", str(HELPER), str(data),
          str(two), "3", "8"])  # fmt: skip
    val_one, val_two = _rows(one, "val"), _rows(two, "val")
    assert [r["step"] for r in val_one] == [r["step"] for r in val_two]  # 3 epochs, no duplicates
    for a, b in zip(val_one, val_two, strict=True):
        assert abs(a["loss"] - b["loss"]) < 0.1 * a["loss"], (a["loss"], b["loss"])
    for out in (one, two):  # both learn: the last validation beats the first training interval
        assert _rows(out, "val")[-1]["loss"] < _rows(out, "train")[0]["loss"]
    ckpt = torch.load(two / "best.pt", map_location="cpu", weights_only=False)
    assert ckpt["world_size"] == 2 and not any(k.startswith("module.") for k in ckpt["model"])
    net, _, _ = load_checkpoint(two / "best.pt")
    onnx = tmp_path / "two.onnx"
    export_onnx(two / "best.pt", onnx, data, samples=2)
    assert OnnxTPMPolicy(onnx).image_size == net.config.image_size


def test_torchrun_runs_the_train_command_within_its_budget(tmp_path: Path) -> None:
    """`torchrun -m agent train` with a time budget: rank 0 reports and writes, both stop at the
    same step (the budget's schedule comes from rank 0), the checkpoints resume as usual."""
    data = _dataset(tmp_path / "demos.zarr", episodes=4, steps=12, size=96)
    out = tmp_path / "run"
    args = ["-m", "agent", "train", "--data", str(data), "--out", str(out), "--minutes", "0.1",
            "--batch-size", "4", "--val-fraction", "0.25"]  # fmt: skip
    done = _run([str(TORCHRUN), "--standalone", "--nproc-per-node", "2", *args])
    assert done.stdout.count("trained ") == 1 and "x 2 processes" in done.stdout
    ckpt = load_checkpoint(out / "best.pt")
    assert ckpt[0].config.name == "cpu"
    assert {p.name for p in out.iterdir()} >= {"best.pt", "last.pt", "metrics.jsonl", "loss.png"}
