"""TPM checkpoints: what one holds, reading one safely, and the dataset statistics it carries.

Shared by training (`models.tpm.train` writes and resumes them) and export (`models.tpm.export`
reads them), so neither imports the other for it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.tpm.config import TPMConfig
from models.tpm.network import TPMNet


class CheckpointError(ValueError):
    """A file given as a TPM checkpoint is missing, unreadable or something else (one line)."""


@dataclass
class Normaliser:
    """Dataset statistics for the move target and the proprioception (stored in checkpoints)."""

    move_mean: list[float]
    move_std: list[float]
    proprio_mean: list[float]
    proprio_std: list[float]

    @classmethod
    def fit(cls, action: np.ndarray, proprio: np.ndarray) -> Normaliser:
        def stats(x: np.ndarray) -> tuple[list[float], list[float]]:
            return x.mean(0).tolist(), np.maximum(x.std(0), 1e-6).tolist()

        mm, ms = stats(action[:, :3].astype(np.float64))
        pm, ps = stats(proprio.astype(np.float64))
        return cls(mm, ms, pm, ps)

    def tensors(self, device: torch.device) -> dict[str, torch.Tensor]:
        return {
            k: torch.tensor(v, dtype=torch.float32, device=device)
            for k, v in dataclasses.asdict(self).items()
        }


#: checkpoint key: train with every BatchNorm in eval mode (an exported policy's statistics are
#: folded into its convolutions, `models.tpm.onnx_import`; they are not batch statistics)
FROZEN_BN_KEY = "frozen_batchnorm"
#: what every TPM checkpoint holds (`Trainer._save` writes these and more)
CHECKPOINT_KEYS = ("config", "model", "normaliser")


def read_checkpoint(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """The checkpoint dict at `path`, loaded with `weights_only=True`.

    Only tensors and plain Python containers and numbers are unpickled, never code: a checkpoint
    shared by someone else cannot run anything here. (What `Trainer._save` writes is all of that
    kind: state dicts, dataclasses as dicts, numpy generator states as dicts of ints.)
    CheckpointError for a missing file or one that is not a TPM checkpoint.

    A `.onnx` file is an exported policy: its weights are read back into a checkpoint
    (`models.tpm.onnx_import`), so a shipped policy can be fine-tuned (`train --init`).
    """
    from models._loading import first_line

    path = Path(path)
    if not path.is_file():
        what = "a folder, not a checkpoint file" if path.is_dir() else "not found"
        raise CheckpointError(f"{path}: {what}")
    if path.suffix == ".onnx":
        from models.tpm.onnx_import import checkpoint_from_onnx

        return checkpoint_from_onnx(path)
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except EOFError:
        raise CheckpointError(f"{path} is not a TPM checkpoint (empty or cut short)") from None
    except Exception as exc:  # pickle, zip, torch or I/O errors: all mean "not usable"
        raise CheckpointError(f"{path} is not a TPM checkpoint ({first_line(exc)})") from None
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path} is not a TPM checkpoint (it holds a {type(ckpt).__name__})")
    missing = [key for key in CHECKPOINT_KEYS if key not in ckpt]
    if missing:
        raise CheckpointError(
            f"{path} is not a TPM checkpoint (no {', '.join(repr(k) for k in missing)})"
        )
    return ckpt


def network_config(path: str | Path, ckpt: dict[str, Any]) -> TPMConfig:
    try:
        return TPMConfig.from_dict(ckpt["config"])
    except (TypeError, KeyError, ValueError, AttributeError) as exc:
        raise CheckpointError(
            f"{path} is not a TPM checkpoint (its network config does not parse: {exc})"
        ) from None


def load_weights(net: TPMNet, path: str | Path, state: Any) -> None:
    from models._loading import first_line

    try:
        net.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as exc:
        raise CheckpointError(
            f"{path} is not a TPM checkpoint (its weights do not fit its network: "
            f"{first_line(exc)})"
        ) from None


def load_checkpoint(path: str | Path) -> tuple[TPMNet, Normaliser, dict[str, Any]]:
    """A trained network (eval mode, CPU), its normaliser and the whole checkpoint dict.

    CheckpointError (one line) for anything that is not a TPM checkpoint.
    """
    ckpt = read_checkpoint(path)
    net = TPMNet(network_config(path, ckpt), pretrained=False)  # the checkpoint has every weight
    load_weights(net, path, ckpt["model"])
    net.eval()
    try:
        normaliser = Normaliser(**ckpt["normaliser"])
    except TypeError as exc:
        raise CheckpointError(f"{path} is not a TPM checkpoint (normaliser: {exc})") from None
    return net, normaliser, ckpt
