"""The auxiliary object-position head (`train --position-weight`, models.tpm.positions): its
targets from the episodes' metadata, its training beside the policy's heads, and that it stays
out of the exported policy."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
pytest.importorskip("zarr")

from models.tpm.arrays import step_positions  # noqa: E402
from models.tpm.checkpoint import CheckpointError  # noqa: E402
from models.tpm.dataset import DatasetError  # noqa: E402
from models.tpm.export import export_onnx  # noqa: E402
from models.tpm.positions import fit_standardiser, position_loss  # noqa: E402
from models.tpm.train import Trainer  # noqa: E402
from models.tpm.train_settings import TrainSettings  # noqa: E402
from tests.models.test_tpm_pipeline import TINY, _dataset  # noqa: E402


def _with_positions(e: int) -> dict[str, Any]:
    """Episode e's metadata: its pick object where its mask is (the mask moves with e)."""
    return {"seed": e, "positions": {"pick": [0.40 + 0.02 * e, 0.01 * e, 0.03], "place": None}}


def test_steps_take_their_episodes_positions_and_nan_where_none_was_recorded() -> None:
    episodes = [_with_positions(0), {"seed": 1}, _with_positions(2)]
    rows = step_positions(episodes, np.array([2, 3, 6]))
    assert rows.shape == (6, 6) and rows.dtype == np.float32
    np.testing.assert_allclose(rows[0, :3], [0.40, 0.0, 0.03])
    np.testing.assert_allclose(rows[5, :3], [0.44, 0.02, 0.03])
    assert np.isnan(rows[:, 3:]).all() and np.isnan(rows[2]).all()  # no place; no positions
    mean, std = fit_standardiser(rows)
    assert np.isclose(mean[0], (2 * 0.40 + 3 * 0.44) / 5) and mean[3] == 0.0
    assert std[2] == pytest.approx(0.02)  # a constant component: the floor, not 0


def test_the_loss_leaves_unknown_targets_out() -> None:
    pred = torch.zeros(2, 6, requires_grad=True)
    target = torch.full((2, 6), float("nan"))
    target[0, :3] = 2.0
    loss = position_loss(pred, target)
    assert float(loss.detach()) == pytest.approx(4.0)
    assert float(position_loss(pred, torch.full((2, 6), float("nan"))).detach()) == 0.0


def test_a_position_head_trains_beside_the_policy_and_is_not_exported(tmp_path: Path) -> None:
    data = _dataset(tmp_path / "demos.zarr", episodes=6, info=_with_positions)
    settings = TrainSettings(
        epochs=6, batch_size=8, val_fraction=0.2, log_every=2, position_weight=5000.0
    )
    result = Trainer(data, tmp_path / "run", settings, config=TINY).run()
    assert result["steps"] > 0
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    train = [r["position_mse"] for r in rows if r["kind"] == "train"]
    assert train[-1] < 0.7 * train[0]  # it learns where the objects are
    val = [r for r in rows if r["kind"] == "val"][-1]
    assert np.isfinite(val["val_pick_position_err_mm"])
    ckpt = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert ckpt["position_head"] and not any("position" in k for k in ckpt["model"])
    report = export_onnx(tmp_path / "run" / "last.pt", tmp_path / "p.onnx", data, samples=4)
    assert report.max_abs_move_m < 1e-5  # the exported graph is the policy's alone
    resumed = Trainer(data, tmp_path / "run", settings, config=TINY, resume=True)
    head = resumed.position_head
    assert head is not None
    saved = ckpt["position_head"]
    assert all(torch.equal(v, saved[k]) for k, v in head.state_dict().items())
    plain = TrainSettings(epochs=6, batch_size=8, val_fraction=0.2, log_every=2)
    with pytest.raises(CheckpointError, match="resume it with --position-weight"):
        Trainer(data, tmp_path / "run", plain, config=TINY, resume=True)


def test_a_position_weight_without_recorded_positions_is_refused(tmp_path: Path) -> None:
    data = _dataset(tmp_path / "old.zarr")  # episodes from before positions were recorded
    settings = TrainSettings(epochs=1, batch_size=8, val_fraction=0.25, position_weight=1.0)
    with pytest.raises(DatasetError, match="record object positions"):
        Trainer(data, tmp_path / "run", settings, config=TINY)
