"""An auxiliary training target: where the task's objects are (`train --position-weight`).

Why: the shipped policy's typical miss is a grasp 2.5-8 cm beside the object, repeated on a retry
at the same spot (policies/TRAINING.md, "grasp retry"): it reads which way to move from the
pictures, not where the object is. Behaviour cloning only rewards the direction of each 1 cm step,
and near the object many directions are nearly as good. A second head, trained beside the move
and gripper heads on the same features, regresses the pick object's and the place target's
positions (their box centres in the robot base frame, recorded by `collect` in each episode's
metadata as `positions`), so the features must carry both.

The head is a training device only: it is not part of `TPMNet` and never reaches a checkpoint's
network or the exported ONNX graph (`Trainer` saves it beside the network, for `--resume`).
Episodes recorded before `collect` wrote positions have none: their steps train the policy's
heads only (NaN targets, left out of this loss).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from models.tpm.network import TPMNet

#: the episode metadata's roles, in the target's order: (pick x, y, z, place x, y, z)
ROLES = ("pick", "place")
POSITION_WIDTH = 3 * len(ROLES)
#: a component whose spread is smaller (m) is standardised by this instead (a fixed target)
MIN_STD_M = 0.02


def episode_positions(info: Mapping[str, Any]) -> np.ndarray:
    """(6,) float32: an episode's recorded positions, NaN for a role it lacks."""
    recorded = info.get("positions") or {}
    out = np.full(POSITION_WIDTH, np.nan, dtype=np.float32)
    for i, role in enumerate(ROLES):
        xyz = recorded.get(role)
        if xyz is not None:
            out[3 * i : 3 * i + 3] = np.asarray(xyz, dtype=np.float32).reshape(3)
    return out


def unknown_positions(steps: int) -> np.ndarray:
    """(steps, 6) float32 NaN: steps of episodes that recorded no positions."""
    return np.full((steps, POSITION_WIDTH), np.nan, dtype=np.float32)


def fit_standardiser(positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-component mean and std (float32, (6,)) of the finite targets among `positions`
    (a component with none: mean 0, std `MIN_STD_M`)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # "mean of empty slice": handled below
        mean = np.nan_to_num(np.nanmean(positions, axis=0))
        std = np.nanstd(positions, axis=0)
    std = np.where(np.isfinite(std) & (std > MIN_STD_M), std, MIN_STD_M)
    return mean.astype(np.float32), std.astype(np.float32)


class PositionHead(nn.Module):
    """The joint features -> the standardised positions (B, 6): one hidden layer, so that the
    features, not the head, must hold the answer."""

    def __init__(self, joint_dim: int, hidden: int = 128) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(joint_dim, hidden), nn.LeakyReLU(), nn.Linear(hidden, POSITION_WIDTH)
        )

    def forward(self, joint: torch.Tensor) -> torch.Tensor:
        return self.mlp(joint)


class WithPositions(nn.Module):
    """`net` and a `PositionHead` as one module (one forward pass, so data-parallel training
    synchronises both): (move, gripper logits, positions)."""

    def __init__(self, net: TPMNet, head: PositionHead) -> None:
        super().__init__()
        self.net = net
        self.head = head

    def forward(
        self,
        images: torch.Tensor,
        masks: torch.Tensor,
        proprio: torch.Tensor,
        rgb_features: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        joint = self.net.encode(images, masks, proprio, rgb_features)
        return self.net.move_head(joint), self.net.gripper_head(joint), self.head(joint)


def position_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the finite targets (standardised); 0 when a batch has none."""
    known = torch.isfinite(target)
    if not bool(known.any()):
        return pred.sum() * 0.0  # keeps the graph (every parameter gets a gradient, of zero)
    return nn.functional.mse_loss(pred.float()[known], target[known])
