"""train -> export -> act: a tiny network trained for a few steps, exported, checked for ONNX
parity on dataset samples, then driving the simulated arm through the real Runtime."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
pytest.importorskip("zarr")

from agent import Finished, Runtime, Step  # noqa: E402
from models.tpm.config import BackboneSpec, preset  # noqa: E402
from models.tpm.dataset import EpisodeStore  # noqa: E402
from models.tpm.export import ExportError, export_onnx  # noqa: E402
from models.tpm.onnx_policy import OnnxTPMPolicy  # noqa: E402
from models.tpm.train import Trainer, hide_gripper_bits  # noqa: E402
from models.tpm.train_settings import TrainSettings, lr_at  # noqa: E402
from models.types import MASK_CODING, Observation  # noqa: E402
from tests.conftest import make_config  # noqa: E402

SIZE = 32
TINY = dataclasses.replace(
    preset("cpu"),
    name="tiny",
    image_size=SIZE,
    rgb_backbone=BackboneSpec("basic", (1, 1, 1), width=4),
    mask_backbone=BackboneSpec("basic", (1, 1, 1), width=4),
    fuse_channels=8,
    d_model=16,
    heads=2,
    proprio_dim=16,
    head_hidden=16,
    cbam_reduction=4,
)


def _dataset(
    path: Path,
    episodes: int = 4,
    steps: int = 12,
    size: int = SIZE,
    info: Callable[[int], dict[str, Any]] = lambda e: {"seed": e},
) -> Path:
    rng = np.random.default_rng(0)
    store = EpisodeStore(path, views=("front", "side"), image_size=size, create=True)
    for e in range(episodes):
        store.begin_episode(info(e))
        for i in range(steps):
            mask = np.zeros((2, size, size), np.float32)
            mask[:, 4 + e : 10 + e, 6:12] = 1.0
            mask[:, 20:26, 18:28] = 0.5
            store.add_step(
                rng.integers(0, 256, (2, size, size, 3), dtype=np.uint8),
                mask,
                np.array([0.45, 0.01 * e, 0.3 - 0.01 * i, float(i > 6)], np.float32),
                np.array([0.005, -0.002 * e, -0.008, float(i > 5)], np.float32),
            )
        store.end_episode(success=True)
    return path


#: the shared training run's settings; colour augmentation on, so that determinism and resuming
#: cover its random draws too
AUGMENTED = {
    "epochs": 2,
    "batch_size": 8,
    "val_fraction": 0.25,
    "log_every": 2,
    "colour_jitter": 0.5,
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("tpm")
    data = _dataset(root / "demos.zarr")
    out = root / "run"
    settings = TrainSettings(**AUGMENTED)
    result = Trainer(data, out, settings, config=TINY).run()
    assert result["steps"] > 0 and result["epochs"] == 2
    return data, out


def test_training_writes_checkpoints_metrics_and_curve(trained: tuple[Path, Path]) -> None:
    _, out = trained
    assert (out / "best.pt").is_file() and (out / "last.pt").is_file()
    assert (out / "loss.png").stat().st_size > 1000
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert {"train", "val"} <= {r["kind"] for r in rows}
    val = [r for r in rows if r["kind"] == "val"][-1]
    assert 0.0 <= val["val_gripper_acc"] <= 1.0 and val["loss"] > 0
    ckpt = torch.load(out / "best.pt", weights_only=True)
    assert len(ckpt["normaliser"]["move_std"]) == 3 and ckpt["config"]["name"] == "tiny"
    assert ckpt["settings"]["colour_jitter"] == 0.5


def test_training_is_deterministic_and_resumes(trained: tuple[Path, Path], tmp_path: Path) -> None:
    data, out = trained
    settings = TrainSettings(**AUGMENTED)
    again = Trainer(data, tmp_path / "again", settings, config=TINY)
    again.run()
    a = torch.load(out / "last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "again" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    # resume: one epoch, then continue to two in a new Trainer, same weights as straight through
    half = TrainSettings(**AUGMENTED)
    first = Trainer(data, tmp_path / "resumed", half, config=TINY)
    first.total = len(first.train)  # stop after the first epoch, as a crash would
    first.run()
    second = Trainer(data, tmp_path / "resumed", half, config=TINY, resume=True)
    assert second.step == len(first.train) and second.epoch == 1
    second.run()
    c = torch.load(tmp_path / "resumed" / "last.pt", weights_only=True)
    assert c["step"] == second.total


def test_time_budget_fits_the_schedule(trained: tuple[Path, Path], tmp_path: Path) -> None:
    """`minutes`: a run whose step cap would take far longer stops near its budget, with the
    cosine schedule fitted to the measured rate (its last steps at the learning-rate floor)."""
    data, _ = trained
    budget_s = 3.0
    settings = TrainSettings(
        epochs=100_000, minutes=budget_s / 60, batch_size=8, val_fraction=0.25, log_every=2
    )
    trainer = Trainer(data, tmp_path / "budget", settings, config=TINY)
    result = trainer.run()
    assert trainer.step < trainer.cap  # the budget ended it, not the epochs
    assert budget_s * 0.5 < result["elapsed_s"] < budget_s * 3
    metrics = (tmp_path / "budget" / "metrics.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in metrics]
    lrs = [r["lr"] for r in rows if r["kind"] == "train"]
    peak, _ = settings.learning_rates()
    assert max(lrs) > 0.5 * peak and lrs[-1] < 0.1 * peak


def test_train_refuses_a_budget_that_is_not_positive(tmp_path: Path, capsys) -> None:
    from agent.cli import main

    assert main(["train", "--minutes", "0", "--data", str(tmp_path / "none.zarr")]) == 2
    assert "error: --minutes: must be > 0, got 0" in capsys.readouterr().err
    assert main(["train", "--colour-jitter", "1.5", "--data", str(tmp_path / "none.zarr")]) == 2
    assert "error: --colour-jitter: must be between 0 and 1, got 1.5" in capsys.readouterr().err


def test_learning_rate_schedule() -> None:
    assert lr_at(0, 100, 5e-5, 5e-6, 10) == pytest.approx(5e-6)
    assert lr_at(9, 100, 5e-5, 5e-6, 10) == pytest.approx(5e-5)
    assert lr_at(100, 100, 5e-5, 5e-6, 10) == pytest.approx(5e-6)


def test_export_parity_and_policy(trained: tuple[Path, Path], tmp_path: Path) -> None:
    data, out = trained
    onnx = tmp_path / "tiny.onnx"
    report = export_onnx(out / "best.pt", onnx, data, samples=6)
    assert report.samples == 6 and report.gripper_agree == 1.0
    assert report.max_abs_move_m < 1e-5
    import onnx as onnx_lib

    model = onnx_lib.load(str(onnx))
    assert model.opset_import[0].version >= 17
    policy = OnnxTPMPolicy(onnx, providers=["tensorrt", "cuda", "cpu"])
    assert policy.provider == "CPUExecutionProvider" and policy.image_size == SIZE
    assert policy.mask_coding == MASK_CODING  # the coding round-trips through the metadata
    obs = Observation(
        images={v: np.zeros((96, 96, 3), np.uint8) for v in ("front", "side")},
        masks={v: np.zeros((96, 96), np.float32) for v in ("front", "side")},
        proprio=np.array([0.45, 0.0, 0.3, 0.0]),
    )
    action = policy.act(obs)
    assert action.move.shape == (3,) and np.isfinite(action.move).all()
    assert 0.0 <= action.info["p_closed"] <= 1.0


def test_export_fails_on_a_dataset_that_does_not_fit(
    trained: tuple[Path, Path], tmp_path: Path
) -> None:
    _, out = trained
    other = EpisodeStore(
        tmp_path / "other.zarr", views=("front", "side"), image_size=16, create=True
    )
    del other
    with pytest.raises(ExportError, match="px"):
        export_onnx(out / "best.pt", tmp_path / "x.onnx", tmp_path / "other.zarr")
    assert not (tmp_path / "x.onnx").exists()


@pytest.mark.asyncio
async def test_runtime_acts_with_the_exported_policy(
    trained: tuple[Path, Path], tmp_path: Path
) -> None:
    data, out = trained
    onnx = tmp_path / "tiny.onnx"
    export_onnx(out / "best.pt", onnx, data, samples=2)
    config = make_config(
        tmp_path,
        "models.policy=tpm",
        f'policy.onnx="{onnx}"',
        "models.reasoner=rules",
        "runtime.max_steps=4",
    )
    events = []
    async with Runtime(config) as runtime:
        assert runtime.parts.policy.name == "tpm"
        with anyio.fail_after(60):
            async for event in runtime.execute("give me the sponge"):
                events.append(event)
    steps = [e for e in events if isinstance(e, Step)]
    finished = events[-1]
    assert isinstance(finished, Finished)
    assert len(steps) >= 4 and any(s.executed for s in steps)
    assert finished.outcome.status == "failure" and "step budget" in finished.outcome.reason


def test_training_can_start_from_a_checkpoint(trained: tuple[Path, Path], tmp_path: Path) -> None:
    """`--init`: the weights and normaliser of a trained run, a fresh schedule from step 0."""
    data, out = trained
    settings = TrainSettings(epochs=1, batch_size=8, val_fraction=0.25, log_every=2)
    tuned = Trainer(data, tmp_path / "tuned", settings, config=TINY, init=out / "best.pt")
    start = torch.load(out / "best.pt", weights_only=True)
    state = tuned.net.state_dict()
    assert tuned.step == 0 and all(torch.equal(state[k], start["model"][k]) for k in state)
    assert dataclasses.asdict(tuned.normaliser) == start["normaliser"]
    tuned.run()
    saved = torch.load(tmp_path / "tuned" / "last.pt", weights_only=True)
    assert saved["init"] == str(out / "best.pt") and saved["step"] == len(tuned.train)
    other = dataclasses.replace(TINY, d_model=32)
    with pytest.raises(ValueError, match="another network"):
        Trainer(data, tmp_path / "bad", settings, config=other, init=out / "best.pt")


def test_training_reads_several_datasets_as_one(trained: tuple[Path, Path], tmp_path: Path) -> None:
    """Expert demonstrations and DAgger rounds stay in their own stores; training joins them."""
    data, _ = trained
    more = _dataset(tmp_path / "more.zarr", episodes=3, steps=5)
    settings = TrainSettings(epochs=1, batch_size=8, val_fraction=0.25)
    both = Trainer([data, more], tmp_path / "both", settings, config=TINY)
    assert both.data_info["episodes"] == 4 + 3 and both.data_info["steps"] == 4 * 12 + 3 * 5
    assert str(more) in both.data_info["path"]
    ends = both.train.arrays.episode_ends
    assert list(ends[-3:]) == [48 + 5, 48 + 10, 48 + 15]  # the second store's episodes, offset


def test_a_hidden_gripper_bit_stays_hidden_in_the_exported_policy(
    trained: tuple[Path, Path], tmp_path: Path
) -> None:
    """`--gripper-dropout 1` fine-tunes a policy that saw the bit into one that never does: the
    network config says so, and the exported policy acts the same for an open and a closed hand."""
    data, out = trained
    settings = TrainSettings(epochs=1, batch_size=8, val_fraction=0.25, gripper_dropout=1.0)
    blind = Trainer(data, tmp_path / "blind", settings, config=TINY, init=out / "best.pt")
    assert blind.config.gripper_input is False and blind.net.config.gripper_input is False
    blind.run()

    def acts(checkpoint: Path) -> list[np.ndarray]:
        onnx = tmp_path / f"{checkpoint.parent.name}.onnx"
        export_onnx(checkpoint, onnx, data, samples=2)
        policy = OnnxTPMPolicy(onnx)
        rng = np.random.default_rng(1)
        images = {v: rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8) for v in TINY.views}
        masks = {v: np.zeros((SIZE, SIZE), np.float32) for v in TINY.views}
        moves = []
        for closed in (0.0, 1.0):
            obs = Observation(images, masks, np.array([0.45, 0.0, 0.3, closed]))
            action = policy.act(obs)
            moves.append(np.append(action.move, action.info["p_closed"]))
        return moves

    seeing = acts(out / "best.pt")
    assert not np.allclose(seeing[0], seeing[1])  # the bit moves the policy that sees it
    hidden = acts(tmp_path / "blind" / "best.pt")
    np.testing.assert_array_equal(hidden[0], hidden[1])


def test_gripper_dropout_hides_the_bit_in_about_its_share_of_rows() -> None:
    proprio = torch.ones(2000, 4)
    hidden = hide_gripper_bits(proprio, 0.3, np.random.default_rng(0))
    share = float((hidden[:, 3] == 0).float().mean())
    assert 0.25 < share < 0.35
    assert torch.equal(hidden[:, :3], proprio[:, :3]) and torch.equal(proprio, torch.ones(2000, 4))


def test_a_binned_move_head_fine_tunes_exports_and_acts(
    trained: tuple[Path, Path], tmp_path: Path
) -> None:
    """`--move-bins`: a regression policy fine-tunes into a binned head (its other weights kept,
    a fresh last layer), trains, exports with parity and drives the policy API."""
    data, out = trained
    settings = TrainSettings(epochs=1, batch_size=8, val_fraction=0.25, move_bins=9)
    binned = Trainer(data, tmp_path / "binned", settings, config=TINY, init=out / "best.pt")
    start = torch.load(out / "best.pt", weights_only=True)["model"]
    state = binned.net.state_dict()
    head = [k for k in state if k.startswith("move_head.") and state[k].shape != start[k].shape]
    assert binned.config.move_bins == 9
    assert sorted(head) == ["move_head.6.bias", "move_head.6.weight"]
    assert all(torch.equal(state[k], start[k]) for k in state if k not in head)
    result = binned.run()
    assert result["steps"] > 0
    row = json.loads((tmp_path / "binned" / "metrics.jsonl").read_text().splitlines()[-1])
    assert np.isfinite(row["val_move_err_mm"])
    onnx = tmp_path / "binned.onnx"
    report = export_onnx(tmp_path / "binned" / "best.pt", onnx, data, samples=4)
    assert report.max_abs_move_m < 1e-5 and report.gripper_agree == 1.0
    policy = OnnxTPMPolicy(onnx)
    obs = Observation(
        images={v: np.zeros((SIZE, SIZE, 3), np.uint8) for v in TINY.views},
        masks={v: np.zeros((SIZE, SIZE), np.float32) for v in TINY.views},
        proprio=np.array([0.45, 0.0, 0.3, 0.0]),
    )
    assert policy.act(obs).move.shape == (3,)
    again = Trainer(data, tmp_path / "again", settings, config=TINY, init=onnx)  # read back
    assert again.config.move_bins == 9


def test_a_binned_move_takes_one_mode_not_their_average() -> None:
    """Two equally likely bins far apart (a "down" and a "rise" label): the decoded move is one of
    them, where a regression would give their mean, zero."""
    from models.tpm.network import TPMNet, decode_move

    net = TPMNet(dataclasses.replace(TINY, move_bins=7, move_bin_range=3.0), pretrained=False)
    logits = torch.full((1, 3, 7), -20.0)  # centres -3 -2 -1 0 1 2 3
    logits[0, :, 1] = logits[0, :, 5] = 5.0  # -2 and +2 std
    logits[0, 2, :] = -20.0
    logits[0, 2, 3], logits[0, 2, 4] = 2.0, 2.0  # 0 and 1: a mode between two bins
    move = decode_move(net, logits.view(1, 21))
    assert abs(abs(float(move[0, 0])) - 2.0) < 1e-4 and abs(abs(float(move[0, 1])) - 2.0) < 1e-4
    assert float(move[0, 2]) == pytest.approx(0.5, abs=1e-4)
