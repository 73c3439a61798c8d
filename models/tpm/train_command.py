"""`python -m agent train`: a Trainer with progress bars, and where its checkpoints went."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from models.tpm import distributed
from models.tpm.distributed import Dist
from models.tpm.train import Trainer
from models.tpm.train_settings import TrainSettings


def run_train(args: Any) -> int:
    """`python -m agent train`: train with a progress bar, print where the checkpoints are.

    Under `torchrun` every process runs this; rank 0 alone shows progress and prints the result
    (`models.tpm.distributed`), and every rank leaves the process group at the end.
    """
    dist = distributed.from_env()
    try:
        return _train(args, dist)
    finally:
        distributed.stop(dist)


def _train(args: Any, dist: Dist) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    # (the CLI's argument types have refused numbers out of range: models.tpm.cli_args)
    # a time budget alone: as many epochs as fit (the budget ends the schedule)
    default_epochs = 10 if args.minutes is None else 100_000
    epochs = args.epochs if args.epochs is not None else default_epochs
    settings = TrainSettings(
        preset=args.preset,
        variant=args.variant,
        epochs=epochs,
        max_steps=args.steps,
        minutes=args.minutes,
        batch_size=args.batch_size,
        lr=args.lr,
        min_lr=args.min_lr,
        weight_decay=args.weight_decay,
        move_weight=args.move_weight,
        gripper_weight=args.gripper_weight,
        val_fraction=args.val_fraction,
        shift_px=args.shift_px,
        colour_jitter=args.colour_jitter,
        gripper_dropout=args.gripper_dropout,
        move_bins=args.move_bins,
        position_weight=args.position_weight,
        seed=args.seed,
        threads=args.threads,
        device=args.device,
    )
    suffix = "" if args.variant == "ours" else f"-{args.variant}"
    out = args.out or Path("runs/tpm") / f"{args.preset}{suffix}"
    columns = (
        TextColumn("train"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
    )
    # the data, --init and the run folder are checked before the progress bar shows; a frozen
    # trunk's features (minutes on a CPU, once per dataset) get a bar of their own, started only
    # when there are features to compute (an error before that prints nothing but itself)
    feature_progress: Progress | None = None
    bars: dict[Path, Any] = {}

    def features_done(dataset: Path, done: int, total: int) -> None:
        nonlocal feature_progress
        if not dist.main:
            return
        if feature_progress is None:
            feature_progress = Progress(TextColumn("{task.description}"), *columns[1:])
            feature_progress.start()
        if dataset not in bars:
            bars[dataset] = feature_progress.add_task(
                f"trunk features of {dataset.name}", total=total, info=""
            )
        feature_progress.update(bars[dataset], completed=done, total=total)

    try:
        trainer = Trainer(
            args.data or [Path("data/demos.zarr")],
            out,
            settings,
            resume=args.resume,
            init=args.init,
            on_features=features_done,
            dist=dist,
        )
    finally:
        if feature_progress is not None:
            feature_progress.stop()
    if not dist.main:  # the other ranks train quietly; rank 0 reports
        trainer.run()
        return 0
    data = trainer.data_info
    print(f"data: {data['episodes']} episodes, {data['steps']} steps: {trainer.sources}")
    with Progress(*columns) as progress:
        bar = progress.add_task("train", total=None, info="")

        def show(row: dict[str, Any]) -> None:
            if row["kind"] == "train":
                info = f"loss {row['loss']:.1f} (mse {row['mse']:.3f}, ce {row['ce']:.3f})"
            else:
                info = (
                    f"epoch {row['epoch']} val loss {row.get('loss', float('nan')):.1f} "
                    f"move err {row.get('val_move_err_mm', float('nan')):.2f} mm "
                    f"gripper acc {row.get('val_gripper_acc', float('nan')):.3f}"
                )
            progress.update(bar, completed=row["step"], total=row["total"], info=info)

        trainer.on_progress = show
        progress.update(bar, total=trainer.total, completed=trainer.step)
        result = trainer.run()
    processes = f" x {dist.world} processes" if dist.parallel else ""
    print(
        f"trained {result['steps']} steps ({result['epochs']} epochs) in "
        f"{result['elapsed_s'] / 60:.1f} min on {trainer.device}{processes}; best validation loss "
        f"{result['best_val_loss']:.2f}; checkpoints {out / 'best.pt'}, {out / 'last.pt'}; "
        f"curve {out / 'loss.png'}"
    )
    return 0
