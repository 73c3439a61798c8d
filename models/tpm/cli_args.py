"""Command-line arguments of `python -m agent train / export` (torch-free, so `--help` is fast)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default="cpu", help="network preset: cpu or paper")
    parser.add_argument(
        "--variant", default="ours", help="ours, rgbm_only, single_view or box (ablations)"
    )
    parser.add_argument(
        "--data",
        type=Path,
        action="append",
        default=None,
        help="dataset; repeat to train on several (default data/demos.zarr)",
    )
    parser.add_argument("--out", type=Path, default=None, help="run folder (default runs/tpm/...)")
    parser.add_argument("--epochs", type=int, default=None, help="default 10 (no --minutes)")
    parser.add_argument("--steps", type=int, default=None, help="stop after this many steps")
    parser.add_argument(
        "--minutes",
        type=float,
        default=None,
        help="wall-clock budget: the cosine schedule is fitted to the measured step rate",
    )
    parser.add_argument("--batch-size", type=int, default=24)
    parser.add_argument("--lr", type=float, default=None, help="peak learning rate")
    parser.add_argument("--min-lr", type=float, default=None, help="cosine floor")
    parser.add_argument("--weight-decay", type=float, default=5e-4)
    parser.add_argument("--val-fraction", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    parser.add_argument(
        "--init", type=Path, default=None, help="start from this checkpoint (fine-tuning)"
    )
    parser.add_argument(
        "--shift-px", type=int, default=4, help="random-shift augmentation in pixels (0: off)"
    )


def add_export_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--checkpoint", type=Path, default=Path("runs/tpm/cpu/best.pt"), help="trained network"
    )
    parser.add_argument(
        "--out", type=Path, default=Path("policies/tpm_cpu.onnx"), help="ONNX file to write"
    )
    parser.add_argument(
        "--data", type=Path, default=Path("data/demos.zarr"), help="samples for the parity check"
    )
    parser.add_argument("--samples", type=int, default=32, help="dataset samples to compare")
    parser.add_argument("--opset", type=int, default=17)
