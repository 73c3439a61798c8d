"""Read a TPM policy exported to ONNX back into a trainable network (fine-tuning a shipped policy).

A user who has only the shipped `policies/tpm_cpu.onnx` (no training checkpoint is distributed
with it) and records demonstrations on their own table wants to fine-tune that policy, not train
one from scratch. The ONNX file holds every weight, but not under the network's names: the legacy
exporter folds each BatchNorm into the convolution before it and stores some matrices transposed,
under generated names (`onnx::Conv_1234`).

How the weights are found without depending on those names: a fresh network of the file's config
(its `tpm_config` metadata) is given distinct random values in every parameter and exported the
same way. Its graph has the same nodes in the same order as the file's (same exporter, same
network), so walking both graphs side by side pairs each initializer of the file with one of the
fresh export, and the fresh export's values say which parameter it came from (as is, or
transposed). Folded convolutions get their weight and bias back, and the BatchNorm after them is
set to the identity with the folded bias as its shift (mean 0, variance 1 - eps, scale 1): the
network computes exactly what the file computes. Those statistics are not the batch statistics a
training step would see, so the checkpoint asks training to keep BatchNorm statistics frozen
(`FROZEN_BN_KEY`), which is also the usual way to fine-tune on small batches.

The result is checked, not trusted: the rebuilt network is exported again and ONNX Runtime must
give the same outputs as the original file on random inputs, or the import fails.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from models.tpm.checkpoint import FROZEN_BN_KEY, CheckpointError, Normaliser, network_config
from models.tpm.network import TPMNet

#: tolerance of the import's parity check (float32 arithmetic in another order)
PARITY_ATOL = 1e-4
_NORMALISER = ("move_mean", "move_std", "proprio_mean", "proprio_std")


def checkpoint_from_onnx(path: str | Path) -> dict[str, Any]:
    """A checkpoint dict (as `read_checkpoint` returns) rebuilt from a TPM policy ONNX file.

    CheckpointError (one line) for a file that is not a TPM policy this code can rebuild.
    """
    import onnx
    from onnx import numpy_helper

    path = Path(path)
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # protobuf or I/O errors: all mean "not a policy file"
        raise CheckpointError(f"{path} is not an ONNX file ({type(exc).__name__})") from None
    meta = {p.key: p.value for p in model.metadata_props}
    if "tpm_config" not in meta:
        raise CheckpointError(f"{path} is not a TPM policy (no tpm_config metadata)")
    config_dict = json.loads(meta["tpm_config"])
    config = network_config(path, {"config": config_dict})
    weights = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    missing = [k for k in _NORMALISER if k not in weights]
    if missing:
        raise CheckpointError(f"{path} is not a TPM policy (no {', '.join(missing)} in its graph)")
    normaliser = Normaliser(**{k: weights[k].astype(float).tolist() for k in _NORMALISER})

    net = TPMNet(config, pretrained=False).eval()
    tags = _tag_parameters(net)
    with tempfile.TemporaryDirectory() as tmp:
        fresh_path = Path(tmp) / "fresh.onnx"
        _export(net, normaliser, config_dict, fresh_path)
        fresh = onnx.load(str(fresh_path))
    pairs = _paired_initializers(path, fresh, model)
    fresh_weights = {i.name: numpy_helper.to_array(i) for i in fresh.graph.initializer}
    state = _rebuild_state(path, net, tags, fresh_weights, pairs, weights)
    net.load_state_dict(state)
    ckpt = {
        "config": config_dict,
        "model": net.state_dict(),
        "normaliser": dataclasses.asdict(normaliser),
        "mask_coding": meta.get("mask_coding"),
        "imported_from": str(path),
        FROZEN_BN_KEY: True,
    }
    _check_parity(path, net, normaliser, config_dict)
    return ckpt


def _tag_parameters(net: TPMNet) -> dict[str, torch.Tensor]:
    """Give every parameter distinct random values; BatchNorm the identity (so folding is exact)."""
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, nn.BatchNorm2d):
                mean, var = module.running_mean, module.running_var
                assert mean is not None and var is not None  # TPMNet's track running stats
                mean.zero_()
                var.fill_(1.0 - module.eps)
                module.weight.fill_(1.0)
        for name, p in net.named_parameters():
            if name.endswith(".weight") and _is_batchnorm(net, name):
                continue  # kept at 1: a folded conv's weight is then the conv's own
            p.copy_(torch.randn(p.shape, generator=gen))
    return {name: p.detach().clone() for name, p in net.named_parameters()}


def _is_batchnorm(net: nn.Module, param_name: str) -> bool:
    module = net.get_submodule(param_name.rsplit(".", 1)[0])
    return isinstance(module, nn.BatchNorm2d)


def _export(net: TPMNet, normaliser: Normaliser, config: dict[str, Any], path: Path) -> None:
    """`net` written the way `export` writes a policy (the same exporter, the same graph)."""
    from models.tpm.export import INPUTS, PolicyGraph, write_policy_onnx

    feed = random_feed(net, np.random.default_rng(0))
    example = tuple(torch.from_numpy(feed[k]) for k in INPUTS)
    write_policy_onnx(PolicyGraph(net, normaliser).eval(), example, path, {"config": config})


def _paired_initializers(path: Path, fresh: Any, model: Any) -> dict[str, str]:
    """fresh export's initializer name -> the file's, through the nodes that read them.

    Node names come from module paths (`/net/views.0/fusion/...`), so they are the same in both
    exports; the order of the nodes is not (the exporter's topological order varies).
    """
    fresh_values, file_values = _weight_names(fresh), _weight_names(model)
    readers = {n.name: n for n in model.graph.node if any(x in file_values for x in n.input)}
    pairs: dict[str, str] = {}
    for node in fresh.graph.node:
        if node.op_type == "Identity" or not any(x in fresh_values for x in node.input):
            continue
        other = readers.get(node.name)
        if other is None or other.op_type != node.op_type or len(other.input) != len(node.input):
            raise CheckpointError(
                f"{path}: its graph is not the one this version exports for its network config "
                f"(no node {node.name!r} of that kind; exported by another version of tpm-agent "
                "or torch?): cannot read its weights back"
            )
        for x, y in zip(node.input, other.input, strict=True):
            if x in fresh_values and y in file_values:
                pairs[fresh_values[x]] = file_values[y]
    return pairs


def _weight_names(model: Any) -> dict[str, str]:
    """Every name a node reads a stored tensor by -> that initializer's name.

    The exporter stores equal tensors once and gives the others an Identity node of the first
    (an untrained LayerNorm's ones and zeros, say).
    """
    names = {i.name: i.name for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Identity" and node.input[0] in names:
            names[node.output[0]] = names[node.input[0]]
    return names


def _rebuild_state(
    path: Path,
    net: TPMNet,
    tags: dict[str, torch.Tensor],
    fresh: dict[str, np.ndarray],
    pairs: dict[str, str],
    weights: dict[str, np.ndarray],
) -> dict[str, torch.Tensor]:
    state = {k: v.clone() for k, v in net.state_dict().items()}
    found: set[str] = set()
    for fresh_name, file_name in pairs.items():
        value = weights[file_name]
        own = fresh_name.removeprefix("net.")  # PolicyGraph holds the network as `net`
        if fresh_name.startswith("net.") and own in state:  # stored under its own name
            state[own] = torch.from_numpy(value.copy())
            found.add(own)
            continue
        match = _which_parameter(fresh[fresh_name], tags)
        if match is None:
            continue  # a constant of the graph, not a weight
        name, transposed = match
        state[name] = torch.from_numpy((value.T if transposed else value).copy())
        found.add(name)
    # a folded BatchNorm's scale stays 1 (`_tag_parameters`); every other parameter must be found
    kept = {n for n in tags if n.endswith(".weight") and _is_batchnorm(net, n)}
    lost = [name for name in tags if name not in found and name not in kept]
    if lost:
        raise CheckpointError(
            f"{path}: {len(lost)} weights not found in the file (first: {lost[0]}); cannot read "
            "its weights back"
        )
    return state


def _which_parameter(value: np.ndarray, tags: dict[str, torch.Tensor]) -> tuple[str, bool] | None:
    """(parameter name, stored transposed) whose tagged values `value` is, or None."""
    if value.dtype != np.float32:
        return None
    for name, tag in tags.items():
        t = tag.numpy()
        if t.size != value.size or t.size < 2:
            continue
        if t.shape == value.shape and np.allclose(t, value, rtol=1e-5, atol=1e-6):
            return name, False
        if t.ndim == 2 and t.T.shape == value.shape and np.allclose(t.T, value, rtol=1e-5):
            return name, True
    return None


def _check_parity(path: Path, net: TPMNet, normaliser: Normaliser, config: dict[str, Any]) -> None:
    """The rebuilt network, exported again, must compute what the file computes."""
    from models.tpm.export import INPUTS, OUTPUTS, cpu_session

    original = cpu_session(path)
    with tempfile.TemporaryDirectory() as tmp:
        again_path = Path(tmp) / "again.onnx"
        _export(net, normaliser, config, again_path)
        again = cpu_session(again_path)
    rng = np.random.default_rng(0)
    worst = 0.0
    for _ in range(4):
        feed = random_feed(net, rng)
        a = original.run(list(OUTPUTS), {k: feed[k] for k in INPUTS})
        b = again.run(list(OUTPUTS), {k: feed[k] for k in INPUTS})
        worst = max(worst, *(float(np.abs(x - y).max()) for x, y in zip(a, b, strict=True)))
    if worst > PARITY_ATOL:
        raise CheckpointError(
            f"{path}: the network rebuilt from its weights differs from the file by {worst:.2e} "
            "(cannot read its weights back)"
        )


def random_feed(net: TPMNet, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """One random input of `net`'s shapes (batch 1), as a policy file takes it."""
    c = net.config
    v, s = len(c.views), c.image_size
    mask = rng.choice(np.array([0.0, 0.5, 1.0], dtype=np.float32), size=(1, v, s, s))
    return {
        "rgb": rng.integers(0, 256, size=(1, v, s, s, 3), dtype=np.uint8),
        "mask": mask.astype(np.float32),
        "proprio": (rng.normal(size=(1, 4)) * 0.1 + [0.5, 0.0, 0.3, 0.0]).astype(np.float32),
    }
