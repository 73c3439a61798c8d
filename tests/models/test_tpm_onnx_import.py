"""Reading an exported policy back into a trainable network (`train --init POLICY.onnx`).

Real exports through the same exporter as `export`, real ONNX Runtime sessions, real training
steps; the network is the tests' tiny one except for the shipped policy's own check.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

from models.tpm.checkpoint import (  # noqa: E402
    FROZEN_BN_KEY,
    CheckpointError,
    Normaliser,
    load_checkpoint,
)
from models.tpm.export import INPUTS, PolicyGraph  # noqa: E402
from models.tpm.network import TPMNet  # noqa: E402
from models.tpm.onnx_import import _export as export_like_a_policy  # noqa: E402
from models.tpm.onnx_import import random_feed  # noqa: E402
from models.tpm.train import Trainer  # noqa: E402
from models.tpm.train_settings import TrainSettings  # noqa: E402
from tests.models.test_tpm_pipeline import TINY, _dataset  # noqa: E402

SHIPPED = Path(__file__).resolve().parents[2] / "policies" / "tpm_cpu.onnx"
NORMALISER = Normaliser(
    [0.001, -0.002, -0.004], [0.006, 0.005, 0.007], [0.45, 0.0, 0.3, 0.4], [0.1] * 4
)


def _trained_looking(config=TINY) -> TPMNet:
    """A network whose BatchNorms are not the identity (as after training), so folding matters."""
    net = TPMNet(config, pretrained=False).eval()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.3)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
    return net


def _export(net: TPMNet, path: Path, config=TINY) -> Path:
    """`net` written as `export` writes a policy (the import's own writer)."""
    export_like_a_policy(net, NORMALISER, dataclasses.asdict(config), path)
    return path


def _outputs(net: TPMNet, normaliser: Normaliser, feed: dict[str, np.ndarray]) -> np.ndarray:
    graph = PolicyGraph(net, normaliser).eval()
    with torch.no_grad():
        move, logits = graph(*(torch.from_numpy(feed[k]) for k in INPUTS))
    return np.concatenate([move.numpy().ravel() / 0.006, logits.numpy().ravel()])


def test_an_exported_network_reads_back_to_the_same_function(tmp_path: Path) -> None:
    source = _trained_looking()
    path = _export(source, tmp_path / "policy.onnx")
    net, normaliser, ckpt = load_checkpoint(path)
    assert ckpt[FROZEN_BN_KEY] is True and ckpt["imported_from"] == str(path)
    for key, value in dataclasses.asdict(NORMALISER).items():  # stored as float32
        np.testing.assert_allclose(getattr(normaliser, key), value, rtol=1e-6)
    rng = np.random.default_rng(7)
    for _ in range(3):
        feed = random_feed(net, rng)
        np.testing.assert_allclose(
            _outputs(net, normaliser, feed), _outputs(source, NORMALISER, feed), atol=2e-4
        )
    # not a copy of the source's state: the BatchNorms were folded into the convolutions
    bn = next(m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert torch.equal(bn.weight, torch.ones_like(bn.weight))


def test_fine_tuning_an_exported_policy_keeps_batchnorm_statistics(tmp_path: Path) -> None:
    """The folded statistics are not batch statistics: training leaves them as they are (also
    after a resume), while the weights do move."""
    path = _export(_trained_looking(), tmp_path / "policy.onnx")
    data = _dataset(tmp_path / "demos.zarr")
    settings = TrainSettings(epochs=1, batch_size=8, val_fraction=0.25, log_every=2)
    tuned = Trainer(data, tmp_path / "tuned", settings, config=TINY, init=path)
    before = {k: v.clone() for k, v in tuned.net.state_dict().items()}
    tuned.run()
    after = torch.load(tmp_path / "tuned" / "last.pt", weights_only=True)
    assert after[FROZEN_BN_KEY] is True and after["init"] == str(path)
    stats = [k for k in before if k.endswith(("running_mean", "running_var"))]
    assert stats and all(torch.equal(before[k], after["model"][k]) for k in stats)
    weights = [k for k in before if k.endswith("conv1.weight")]
    assert any(not torch.equal(before[k], after["model"][k]) for k in weights)
    more = TrainSettings(epochs=2, batch_size=8, val_fraction=0.25, log_every=2)
    resumed = Trainer(data, tmp_path / "tuned", more, config=TINY, resume=True)
    assert resumed.frozen_batchnorm


def test_files_that_are_not_readable_policies_get_one_line(tmp_path: Path) -> None:
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00not a model")
    with pytest.raises(CheckpointError, match=r"junk\.onnx is not an ONNX file"):
        load_checkpoint(junk)

    plain = tmp_path / "plain.onnx"
    model = onnx.load(str(_export(_trained_looking(), tmp_path / "p.onnx")))
    del model.metadata_props[:]
    onnx.save(model, str(plain))
    with pytest.raises(CheckpointError, match="not a TPM policy \\(no tpm_config metadata\\)"):
        load_checkpoint(plain)

    # a graph of another network under this network's config: its weights cannot be placed
    other = dataclasses.replace(TINY, heads=4)
    lying = _export(_trained_looking(other), tmp_path / "other.onnx", config=other)
    model = onnx.load(str(lying))
    for prop in model.metadata_props:
        if prop.key == "tpm_config":
            prop.value = prop.value.replace('"heads": 4', '"heads": 2')
    onnx.save(model, str(lying))
    with pytest.raises(CheckpointError, match="cannot read its weights back") as caught:
        load_checkpoint(lying)
    assert "\n" not in str(caught.value)


@pytest.mark.skipif(not SHIPPED.is_file(), reason="the shipped policy is not in this checkout")
def test_the_shipped_policy_reads_back_exactly() -> None:
    net, normaliser, ckpt = load_checkpoint(SHIPPED)
    session = ort.InferenceSession(str(SHIPPED), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(3)
    for _ in range(3):
        feed = random_feed(net, rng)
        move, logits = session.run(None, feed)
        mine = _outputs(net, normaliser, feed)
        np.testing.assert_allclose(mine[:3] * 0.006, move.ravel(), atol=1e-5)
        np.testing.assert_allclose(mine[3:], logits.ravel(), atol=1e-4)
    stored = {p.key: p.value for p in onnx.load(str(SHIPPED)).metadata_props}
    assert ckpt["mask_coding"] == stored.get("mask_coding")  # None: exported before it was stored
