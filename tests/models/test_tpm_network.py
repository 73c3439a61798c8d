"""The TPM network: output shapes for every preset and variant, the loss, seeded determinism."""

from __future__ import annotations

import dataclasses

import pytest

torch = pytest.importorskip("torch")

from models.tpm.config import PRESETS, VARIANTS, TPMConfig, preset  # noqa: E402
from models.tpm.network import ResNetTrunk, TPMNet, bc_loss, normalise_inputs  # noqa: E402

torch.set_num_threads(1)


def _inputs(config: TPMConfig, batch: int = 2) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(0)
    v, s = len(config.views), config.image_size
    rgb = torch.randint(0, 256, (batch, v, s, s, 3), generator=g, dtype=torch.uint8)
    mask = torch.zeros(batch, v, s, s)
    mask[:, :, : s // 4, : s // 4] = 1.0
    mask[:, :, -s // 4 :, -s // 4 :] = 0.5
    images, masks = normalise_inputs(rgb, mask)
    return images, masks, torch.randn(batch, 4, generator=g)


@pytest.mark.parametrize("variant", VARIANTS)
def test_cpu_variants_output_shapes(variant: str) -> None:
    config = preset("cpu", variant)
    net = TPMNet(config).eval()
    with torch.no_grad():
        move, logits = net(*_inputs(config))
    assert move.shape == (2, 3) and logits.shape == (2, 2)
    assert torch.isfinite(move).all() and torch.isfinite(logits).all()
    assert (net.views[0].rgb is None) == (variant == "rgbm_only")
    assert len(net.views) == (1 if variant == "single_view" else 2)


def test_paper_preset_matches_the_released_code() -> None:
    config = PRESETS["paper"]
    assert config.rgb_backbone.out_channels == 1024 and config.mask_backbone.out_channels == 256
    assert config.rgb_backbone.torchvision_name == "resnet50"
    assert config.tokens_per_view == 196 and config.d_model == 512
    net = TPMNet(config).eval()
    with torch.no_grad():
        move, logits = net(*_inputs(config, batch=1))
    assert move.shape == (1, 3) and logits.shape == (1, 2)


def test_trunk_is_stride_16_and_mask_channel_is_orthogonal() -> None:
    config = preset("cpu")
    trunk = ResNetTrunk(config.mask_backbone, in_channels=4)
    out = trunk(torch.zeros(1, 4, 96, 96))
    assert out.shape == (1, config.mask_backbone.out_channels, 6, 6)
    extra = trunk.conv1.weight[:, 3].reshape(trunk.conv1.out_channels, -1)
    gram = extra @ extra.T  # 16 rows of 49: orthonormal rows
    assert torch.allclose(gram, torch.eye(len(gram)), atol=1e-5)


def test_loss_weights_mse_1000_times_ce() -> None:
    move = torch.tensor([[1.0, 0.0, 0.0]])
    target = torch.zeros(1, 3)
    logits = torch.tensor([[0.0, 0.0]])
    total, parts = bc_loss(move, logits, target, torch.tensor([1]))
    assert parts["mse"] == pytest.approx(1 / 3)
    assert parts["ce"] == pytest.approx(float(torch.log(torch.tensor(2.0))))
    assert total.item() == pytest.approx(5000 * parts["mse"] + 5 * parts["ce"], rel=1e-6)
    assert 5000 / 5 == 1000


def test_same_seed_same_network_and_gradients() -> None:
    config = dataclasses.replace(preset("cpu", "single_view"), image_size=32)

    def one_step(seed: int) -> list[torch.Tensor]:
        torch.manual_seed(seed)
        net = TPMNet(config)
        move, logits = net(*_inputs(config))
        loss, _ = bc_loss(move, logits, torch.zeros(2, 3), torch.tensor([0, 1]))
        loss.backward()
        return [p.grad.clone() for p in net.parameters() if p.grad is not None]

    a, b, c = one_step(1), one_step(1), one_step(2)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(torch.equal(x, y) for x, y in zip(a, c, strict=True))


def test_config_round_trips_through_json() -> None:
    import json

    config = preset("cpu", "box")
    assert TPMConfig.from_dict(json.loads(config.to_json())) == config
    with pytest.raises(ValueError, match="allowed"):
        preset("cpu", "nope")


def test_normalised_images_are_contiguous_nchw() -> None:
    """Permuting HWC pixels gives a channels-last view; the network must get plain NCHW (the
    oneDNN AVX2 crash in the test below needs channels-last inputs)."""
    images, masks, _ = _inputs(preset("cpu"))
    assert images.is_contiguous() and masks.is_contiguous()
    assert not images[:, 0].is_contiguous(memory_format=torch.channels_last)


#: the product's training step (batch_tensors -> forward -> loss -> backward) on the tests' tiny
#: network, whose width-4 trunks have 4 -> 8 channel 1x1 stride-2 downsample convolutions
_TRAIN_STEPS = """
import numpy as np, torch
from models.tpm.network import TPMNet, bc_loss
from models.tpm.checkpoint import Normaliser
from models.tpm.train import batch_tensors
from tests.models.test_tpm_pipeline import SIZE, TINY
torch.set_num_threads(1)
torch.manual_seed(0)
rng = np.random.default_rng(0)
net = TPMNet(TINY)
opt = torch.optim.AdamW(net.parameters())
b, v = 8, len(TINY.views)
batch = {
    "rgb": rng.integers(0, 256, (b, v, SIZE, SIZE, 3), dtype=np.uint8),
    "mask": (rng.random((b, v, SIZE, SIZE)) > 0.8).astype(np.float32),
    "proprio": rng.random((b, 4), dtype=np.float32),
    "action": rng.random((b, 4), dtype=np.float32),
}
norm = Normaliser.fit(batch["action"], batch["proprio"]).tensors(torch.device("cpu"))
for _ in range(30):
    images, masks, proprio, move, grip = batch_tensors(dict(batch), norm, torch.device("cpu"))
    loss, _ = bc_loss(*net(images, masks, proprio), move, grip)
    opt.zero_grad()
    loss.backward()
    opt.step()
print("trained")
"""


def test_training_a_narrow_trunk_survives_onednn_avx2_kernels() -> None:
    """Regression for a native crash, so it runs in a child process (a heap corruption would take
    pytest down with it). torch 2.14.1's oneDNN, with AVX2 as its best ISA (AMD EPYC family 25
    here), corrupts the heap computing the weight gradient of a 1x1 stride-2 convolution whose
    channels-last input has fewer than 8 channels. `DNNL_MAX_CPU_ISA=AVX2` makes a machine with
    AVX-512 take the same kernels, so this test catches a regression on every x86 CI machine.
    Before the fix (channels-last inputs) the child died with SIGABRT or SIGSEGV."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {**os.environ, "DNNL_MAX_CPU_ISA": "AVX2", "OMP_NUM_THREADS": "1"}
    child = subprocess.run(
        [sys.executable, "-c", _TRAIN_STEPS],
        cwd=Path(__file__).resolve().parents[2],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert child.returncode == 0 and "trained" in child.stdout, (
        f"training child exited {child.returncode}: {child.stderr[-2000:]}"
    )
