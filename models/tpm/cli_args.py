"""Command-line arguments of `python -m agent train / export / interpolate` (torch-free, so
`--help` is fast).

Also the argparse types every verb uses for numbers with a range: a value out of range is refused
while the arguments are parsed, before anything runs or is written.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path

from models.tpm.config import PRESETS, VARIANTS


def move_bins(text: str) -> int:
    """An argparse type for `--move-bins`: 0 (regression) or at least 3 bins."""
    value = int_in(0)(text)
    if 0 < value < 3:
        raise argparse.ArgumentTypeError(f"must be 0 (regression) or at least 3, got {value}")
    return value


def int_in(low: int | None = None, high: int | None = None) -> Callable[[str], int]:
    """An argparse type: a whole number in [low, high] (either bound may be open)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if (low is not None and value < low) or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be {_range(low, high)}, got {value}")
        return value

    parse.__name__ = "int"  # argparse names the type in some messages
    return parse


def float_in(
    low: float | None = None, high: float | None = None, *, above: bool = False
) -> Callable[[str], float]:
    """An argparse type: a finite number in [low, high]; `above`: strictly more than `low`."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        too_low = low is not None and (value <= low if above else value < low)
        too_high = high is not None and value > high
        if not math.isfinite(value) or too_low or too_high:
            bound = f"> {low:g}" if above and high is None else _range(low, high)
            raise argparse.ArgumentTypeError(f"must be {bound}, got {text}")
        return value

    parse.__name__ = "float"
    return parse


def _range(low: float | None, high: float | None) -> str:
    if low is not None and high is not None:
        return f"between {low:g} and {high:g}"
    return f">= {low:g}" if low is not None else f"<= {high:g}"


#: shared argparse types (see int_in / float_in)
positive_int = int_in(1)
non_negative_int = int_in(0)
positive_float = float_in(0.0, above=True)
non_negative_float = float_in(0.0)
fraction = float_in(0.0, 1.0)


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default="cpu", choices=list(PRESETS), help="network preset")
    parser.add_argument(
        "--variant", default="ours", choices=list(VARIANTS), help="the network or an ablation"
    )
    parser.add_argument(
        "--data",
        type=Path,
        action="append",
        default=None,
        help="dataset; repeat to train on several (default data/demos.zarr)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="run folder (default runs/tpm/...); one that holds a run needs --resume",
    )
    parser.add_argument(
        "--epochs", type=positive_int, default=None, help="default 10 (no --minutes)"
    )
    parser.add_argument(
        "--steps", type=positive_int, default=None, help="stop after this many steps"
    )
    parser.add_argument(
        "--minutes",
        type=positive_float,
        default=None,
        help="wall-clock budget: the cosine schedule is fitted to the measured step rate",
    )
    parser.add_argument("--batch-size", type=positive_int, default=24)
    parser.add_argument("--lr", type=positive_float, default=None, help="peak learning rate")
    parser.add_argument("--min-lr", type=non_negative_float, default=None, help="cosine floor")
    parser.add_argument("--weight-decay", type=non_negative_float, default=5e-4)
    parser.add_argument(
        "--move-weight",
        type=positive_float,
        default=5000.0,
        help="loss weight of the standardised move's MSE (the paper's 5000)",
    )
    parser.add_argument(
        "--gripper-weight",
        type=positive_float,
        default=5.0,
        help="loss weight of the gripper's cross-entropy (the paper's 5)",
    )
    parser.add_argument(
        "--val-fraction", type=fraction, default=0.1, help="share of episodes held out (0..1)"
    )
    parser.add_argument("--seed", type=non_negative_int, default=0)
    parser.add_argument("--threads", type=positive_int, default=1, help="torch CPU threads")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    parser.add_argument(
        "--init",
        type=Path,
        default=None,
        help="start from this checkpoint (fine-tuning): a run's .pt, or an exported policy's "
        ".onnx such as policies/tpm_cpu.onnx (BatchNorm statistics then stay frozen)",
    )
    parser.add_argument(
        "--shift-px",
        type=non_negative_int,
        default=4,
        help="random-shift augmentation in pixels (0: off)",
    )
    parser.add_argument(
        "--colour-jitter",
        type=fraction,
        default=0.0,
        metavar="STRENGTH",
        help="colour augmentation: hue, saturation, brightness, contrast and light colour per "
        "image, ranges scaled by STRENGTH in 0..1 (1: hue up to 180 degrees; 0: off)",
    )
    parser.add_argument(
        "--gripper-dropout",
        type=fraction,
        default=0.0,
        metavar="SHARE",
        help="hide the proprioception's gripper bit (set it to its mean) in this share of "
        "training samples; 1: the network never sees it, at inference either (0: off)",
    )
    parser.add_argument(
        "--move-bins",
        type=move_bins,
        default=None,
        metavar="K",
        help="the move head classifies each component into K bins instead of regressing it "
        "(0: regression; default: --init's head, else regression)",
    )
    parser.add_argument(
        "--position-weight",
        type=non_negative_float,
        default=0.0,
        metavar="W",
        help="also train a head that predicts where the pick object and the place target are "
        "(from the positions `collect` records), loss weight W (5000 weighs it like the move; "
        "0: off); the head is for training only and is not exported",
    )


def add_export_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--checkpoint", type=Path, default=Path("runs/tpm/cpu/best.pt"), help="trained network"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("policies/tpm_cpu.onnx"),
        help="ONNX file to write (default: the shipped policy); an existing one needs --force",
    )
    parser.add_argument("--force", action="store_true", help="replace the --out file if it exists")
    parser.add_argument(
        "--data", type=Path, default=Path("data/demos.zarr"), help="samples for the parity check"
    )
    parser.add_argument(
        "--samples", type=positive_int, default=32, help="dataset samples to compare"
    )
    parser.add_argument("--opset", type=int, default=17)


def add_interpolate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("a", type=Path, help="policy A (.onnx or a training checkpoint .pt)")
    parser.add_argument(
        "b", type=Path, help="policy B, fine-tuned from A (its mask coding is kept)"
    )
    parser.add_argument(
        "--alpha",
        type=float_in(0.0, 1.0),
        required=True,
        help="weight of B: 0 gives A, 1 gives B; choose it with `eval --split validation`",
    )
    parser.add_argument("--out", type=Path, required=True, help="ONNX file to write")
    parser.add_argument("--force", action="store_true", help="replace the --out file if it exists")
