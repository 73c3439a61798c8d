"""The training recipe's settings: `TrainSettings` (the paper's defaults), the learning rates per
preset, the warm-up + cosine schedule they follow, and the device and seeding a run sets up.

Kept apart from the loop (`train.Trainer`) so the recipe reads in one place; `train_command` builds
the settings from the command line and the tests from keywords.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import numpy as np
import torch

#: per-preset optimiser defaults: the paper's for `paper` (fine-tuning pretrained trunks); the
#: small `cpu` network trains from scratch, where 5e-5 barely moves it in the steps a CPU affords
LR_DEFAULTS: dict[str, tuple[float, float]] = {
    "paper": (5e-5, 5e-6),
    "cpu": (5e-4, 5e-6),
    "lite": (5e-4, 5e-6),  # its trained part is `cpu`'s, from scratch; the frozen trunk has no lr
}


@dataclass(frozen=True)
class TrainSettings:
    preset: str = "cpu"
    variant: str = "ours"
    epochs: int = 10
    max_steps: int | None = None
    #: wall-clock budget of this invocation's training loop; the schedule's length follows the
    #: measured step rate (speed varies 10x between a GPU, an idle core and a shared one)
    minutes: float | None = None
    batch_size: int = 24
    lr: float | None = None
    min_lr: float | None = None
    weight_decay: float = 5e-4
    #: the loss's weights (`bc_loss`): the paper's 5000 : 5 was chosen for moves in raw metres;
    #: here the move is standardised, which makes its MSE ~1e4-1e5x larger than in metres
    move_weight: float = 5000.0
    gripper_weight: float = 5.0
    warmup_fraction: float = 0.03
    val_fraction: float = 0.1
    repeat: int = 3
    #: random-shift augmentation, pixels (0: off)
    shift_px: int = 4
    #: colour augmentation's strength (`arrays.colour_jitter`; 0: off)
    colour_jitter: float = 0.0
    #: share of training samples whose gripper bit (proprioception) is hidden, i.e. set to its
    #: training mean; 1 hides it always, inference included (`TPMConfig.gripper_input`). Why: a
    #: policy that sees "closed" there learns to stay closed, whatever the pictures show
    gripper_dropout: float = 0.0
    #: the move head's bins (`TPMConfig.move_bins`; 0: regression); None: the --init
    #: checkpoint's, or the preset's. A checkpoint with another head starts with a fresh last layer
    move_bins: int | None = None
    #: weight of the auxiliary object-position loss (`models.tpm.positions`; 0: no such head).
    #: Standardised like the move, so 5000 weighs it as much as the move
    position_weight: float = 0.0
    seed: int = 0
    threads: int = 1
    log_every: int = 50
    device: str = "auto"

    def learning_rates(self) -> tuple[float, float]:
        peak, floor = LR_DEFAULTS.get(self.preset, LR_DEFAULTS["paper"])
        return (
            self.lr if self.lr is not None else peak,
            self.min_lr if self.min_lr is not None else floor,
        )


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def lr_at(step: int, total: int, peak: float, floor: float, warmup: int) -> float:
    """Linear warm-up to `peak`, then cosine decay to `floor` at `total`."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return floor + 0.5 * (peak - floor) * (1 + math.cos(math.pi * progress))
