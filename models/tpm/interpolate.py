"""Weight-space interpolation of two policies: `(1 - alpha) * A + alpha * B`, written as a policy.

Why: a policy fine-tuned on new data gains there and forgets some of what it knew. The shipped
stage 4 policy is the case in point: fine-tuned from the stage 2 policy on randomised looks, it
moved the new background from about 0 to 30% and lost part of the simulator's default look
(policies/TRAINING.md). Interpolating the weights of a fine-tuned network with those of the network
it started from (WiSE-FT, Wortsman et al., "Robust fine-tuning of zero-shot models", CVPR 2022)
often keeps much of both, because the two lie in one low-loss basin; it costs no training, only an
evaluation per `alpha`, which is why `alpha` is chosen with `eval --split validation`.

Only meaningful for two policies of one architecture, one fine-tuned from the other, with the same
dataset statistics and weights in the same parametrisation. Anything else is refused with one line:
another network config, other normalisers, or BatchNorms folded into the convolutions in one and
not in the other (an exported ONNX file and networks fine-tuned from one hold folded weights; a
checkpoint trained from scratch does not, and averaging the two forms is not averaging functions).

The result is an ONNX file like `export`'s, checked against PyTorch on random inputs, with the mask
coding of B (the side `alpha` weighs) and both sources named in its training metadata.
"""

from __future__ import annotations

import dataclasses
import hashlib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.tpm.checkpoint import FROZEN_BN_KEY, CheckpointError, Normaliser, load_checkpoint
from models.tpm.export import INPUTS, ExportError, PolicyGraph, check_out, write_checked
from models.tpm.network import TPMNet
from models.tpm.onnx_import import random_feed
from models.types import LEGACY_MASK_CODING, MASK_CODING

#: random inputs the written file is checked on against PyTorch
PARITY_SAMPLES = 8


@dataclass(frozen=True)
class LoadedPolicy:
    """A policy file or training checkpoint, read once (reading an ONNX file rebuilds it)."""

    path: Path
    net: TPMNet
    normaliser: Normaliser
    ckpt: dict[str, Any]

    @classmethod
    def load(cls, path: str | Path) -> LoadedPolicy:
        """CheckpointError (one line) for anything that is not a TPM policy or checkpoint."""
        return cls(Path(path), *load_checkpoint(path))


@dataclass(frozen=True)
class Blend:
    """`interpolate`'s network, ready to write, and what the caller should know about it."""

    net: TPMNet
    normaliser: Normaliser
    ckpt: dict[str, Any]
    #: A and B read the mask under different codings (the blend keeps B's)
    codings_differed: bool


@dataclass(frozen=True)
class Written:
    """What `write_blend` wrote."""

    path: Path
    mb: float
    max_move_diff_m: float


def interpolate(a: LoadedPolicy, b: LoadedPolicy, alpha: float) -> Blend:
    """The network `(1 - alpha) * A + alpha * B` (eval mode) with its normaliser and checkpoint.

    CheckpointError (one line) when the two cannot be interpolated (the module's docstring).
    """
    if not 0.0 <= alpha <= 1.0:
        raise CheckpointError(f"alpha must be between 0 and 1, got {alpha:g}")
    # freezing the RGB trunk is a training choice: the function is the same either way
    if _architecture(a.net) != _architecture(b.net):
        raise CheckpointError(
            f"{a.path} and {b.path} are different networks (their configs differ)"
        )
    if not np.allclose(_stats(a.normaliser), _stats(b.normaliser), rtol=1e-6, atol=0):
        raise CheckpointError(
            f"{a.path} and {b.path} were trained with different dataset statistics (normalisers)"
        )
    if bool(a.ckpt.get(FROZEN_BN_KEY)) != bool(b.ckpt.get(FROZEN_BN_KEY)):
        folded = a.path if a.ckpt.get(FROZEN_BN_KEY) else b.path
        raise CheckpointError(
            f"{folded} holds BatchNorms folded into its convolutions and the other does not: "
            "their weights are not in one parametrisation (interpolate two exported .onnx files)"
        )
    state_a = a.net.state_dict()
    state = {
        key: torch.lerp(state_a[key], value, alpha) if value.is_floating_point() else value
        for key, value in b.net.state_dict().items()
    }
    net = TPMNet(b.net.config, pretrained=False)
    net.load_state_dict(state)
    ckpt = {
        "config": dataclasses.asdict(b.net.config),
        "model": state,
        "normaliser": dataclasses.asdict(b.normaliser),
        "mask_coding": _coding(b.ckpt),
        "settings": {"interpolated": {"a": _source(a.path), "b": _source(b.path), "alpha": alpha}},
        FROZEN_BN_KEY: bool(b.ckpt.get(FROZEN_BN_KEY)),
    }
    return Blend(net.eval(), b.normaliser, ckpt, _coding(a.ckpt) != ckpt["mask_coding"])


def write_blend(blend: Blend, out: Path) -> Written:
    """`blend` written to `out` as a policy, checked against PyTorch on random inputs first."""
    graph = PolicyGraph(blend.net, blend.normaliser).eval()
    rng = np.random.default_rng(0)
    feeds = [random_feed(blend.net, rng) for _ in range(PARITY_SAMPLES)]
    batch = {k: np.concatenate([f[k] for f in feeds]) for k in INPUTS}
    _, move_diff, _, _ = write_checked(graph, batch, out, blend.ckpt)
    return Written(out, out.stat().st_size / 1e6, move_diff)


def run_interpolate(args: Any) -> int:
    """`python -m agent interpolate A B --alpha X --out C.onnx` (refuses to replace C unless
    --force)."""
    check_out(args.out, force=args.force)
    torch.set_num_threads(1)
    blend = interpolate(LoadedPolicy.load(args.a), LoadedPolicy.load(args.b), args.alpha)
    try:
        done = write_blend(blend, args.out)
    except ExportError as exc:  # as `export` reports it
        print(f"error: interpolate failed: {exc}", file=sys.stderr)
        return 1
    print(
        f"wrote {done.path} ({done.mb:.1f} MB): {1 - args.alpha:g} x {args.a} + "
        f"{args.alpha:g} x {args.b}; ONNX Runtime vs PyTorch on {PARITY_SAMPLES} random inputs: "
        f"max move difference {done.max_move_diff_m:.1e} m"
    )
    if blend.codings_differed:
        print(
            f"note: the two were trained with different mask codings; {done.path} keeps "
            f"{args.b}'s ({blend.ckpt['mask_coding']})"
        )
    print(
        f"choose alpha on validation seeds: python -m agent eval --split validation --set "
        f"policy.onnx={done.path}"
    )
    return 0


def _architecture(net: TPMNet) -> Any:
    return dataclasses.replace(net.config, freeze_rgb=False)


def _stats(normaliser: Normaliser) -> np.ndarray:
    return np.concatenate([np.asarray(v, dtype=float) for v in dataclasses.astuple(normaliser)])


def _coding(ckpt: dict[str, Any]) -> str:
    """The mask coding a checkpoint's network reads: a policy file without one predates the
    skill-dependent coding (as `OnnxTPMPolicy` reads it); a training checkpoint without one
    was trained on today's."""
    recorded = ckpt.get("mask_coding")
    if recorded:
        return str(recorded)
    return (LEGACY_MASK_CODING if ckpt.get("imported_from") else MASK_CODING).to_json()


def _source(path: str | Path) -> dict[str, str]:
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    return {"path": str(path), "sha256": digest}
