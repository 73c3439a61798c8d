"""Behaviour cloning of the TPM network on recorded demonstrations (the paper's recipe).

Loss 5000 x MSE(move) + 5 x CE(gripper) (the 1000:1 ratio), AdamW with decoupled weight decay
5e-4, linear warm-up then cosine decay from the peak learning rate to the floor, batch 24. The
move (dx, dy, dz) and the proprioception are standardised with the training split's mean / std,
which the checkpoint stores (export folds them into the ONNX graph). Frames around the first grasp
and each episode's last frames are repeated 3x per epoch (released code). Validation is on whole
held-out episodes. CUDA with mixed precision (fp16 autocast + gradient scaling) when present, the
CPU otherwise; deterministic for a seed on the CPU.

Writes to the output folder: `last.pt` (every epoch, for `--resume`), `best.pt` (lowest validation
loss), `metrics.jsonl` (one JSON object per log interval and per epoch) and `loss.png`.
The settings, their defaults and the learning-rate schedule are `train_settings`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.tpm import distributed
from models.tpm.arrays import (
    Arrays,
    BatchLoader,
    colour_jitter,
    concat_arrays,
    load_arrays,
    random_shift,
    repetition_counts,
    split_episodes,
)
from models.tpm.checkpoint import (
    FROZEN_BN_KEY,
    CheckpointError,
    Normaliser,
    load_checkpoint,
    load_weights,
    network_config,
    read_checkpoint,
)
from models.tpm.config import TPMConfig, preset
from models.tpm.dataset import DatasetError, EpisodeStore
from models.tpm.distributed import Dist
from models.tpm.network import TPMNet, bc_loss, decode_move, normalise_inputs
from models.tpm.positions import (
    PositionHead,
    WithPositions,
    fit_standardiser,
    position_loss,
)
from models.tpm.sources import describe_sources, source_counts
from models.tpm.train_settings import TrainSettings, lr_at, pick_device, seed_everything
from models.types import MASK_CODING


def batch_tensors(
    batch: dict[str, np.ndarray], norm: dict[str, torch.Tensor], device: torch.device
) -> tuple[torch.Tensor, ...]:
    """(images, masks, proprio, move, gripper) network tensors of a loader batch."""
    rgb = torch.from_numpy(batch["rgb"]).to(device)
    mask = torch.from_numpy(batch["mask"]).to(device)
    images, masks = normalise_inputs(rgb, mask)
    proprio = torch.from_numpy(batch["proprio"]).to(device)
    proprio = (proprio - norm["proprio_mean"]) / norm["proprio_std"]
    action = torch.from_numpy(batch["action"]).to(device)
    move = (action[:, :3] - norm["move_mean"]) / norm["move_std"]
    return images, masks, proprio, move, (action[:, 3] > 0.5).long()


def hide_gripper_bits(
    proprio: torch.Tensor, share: float, rng: np.random.Generator
) -> torch.Tensor:
    """Standardised proprioception (B, 4) with the gripper bit of about `share` of the rows set
    to 0, its training mean (`TrainSettings.gripper_dropout`); the other rows unchanged."""
    hide = torch.from_numpy(rng.random(len(proprio)) < share).to(proprio.device)
    out = proprio.clone()
    out[hide, 3] = 0.0
    return out


def adopt_weights(net: TPMNet, config: TPMConfig) -> TPMNet:
    """`net` as a network of `config`, which may differ in its heads (`Trainer`'s check): every
    weight of the same shape is kept; a move head with other bins gets a fresh last layer."""
    if net.config == config:
        return net
    adopted = TPMNet(config, pretrained=False)
    target = adopted.state_dict()
    kept = {k: v for k, v in net.state_dict().items() if target[k].shape == v.shape}
    adopted.load_state_dict(kept, strict=False)
    adopted.train(net.training)
    return adopted


def batch_features(batch: dict[str, np.ndarray], device: torch.device) -> torch.Tensor | None:
    """The cached frozen-trunk features of a batch, if the loader has them."""
    feats = batch.get("rgb_features")
    return None if feats is None else torch.from_numpy(feats).to(device)


class RunFolderError(ValueError):
    """The output folder already holds a training run that this one would overwrite."""


#: what `resume` needs besides the network
RESUME_KEYS = ("optimizer", "scaler", "step", "epoch", "best", "rng")
#: files in a run folder that a new run (not `resume`) would overwrite
RUN_FILES = ("metrics.jsonl", "last.pt", "best.pt")


class Trainer:
    """One training run; `run()` trains to the end (or resumes and continues)."""

    def __init__(
        self,
        data: Path | Sequence[Path],
        out: Path,
        settings: TrainSettings,
        *,
        resume: bool = False,
        init: Path | None = None,
        on_progress: Callable[[dict[str, float]], None] | None = None,
        config: TPMConfig | None = None,
        on_features: Callable[[Path, int, int], None] | None = None,
        dist: Dist | None = None,
    ) -> None:
        """`config` replaces the preset's network (tests train tiny ones).

        `dist`: this process's rank under torchrun (`models.tpm.distributed`; the process group
        started): the training step runs through DistributedDataParallel and only rank 0
        validates, logs and writes.

        `on_features(dataset, done, total)`: progress of computing a frozen trunk's features.

        `init`: start from a trained checkpoint's weights and normaliser with a fresh schedule
        (fine-tuning on a grown dataset, e.g. after a DAgger round); its network must match.
        """
        self.settings = s = settings
        self.dist = dist = dist or Dist()
        self.out = out
        self.on_progress = on_progress
        self.on_features = on_features
        if not resume:  # before anything is read or written: refuse to overwrite a run
            found = [name for name in RUN_FILES if (out / name).exists()]
            if found:
                raise RunFolderError(
                    f"{out} already holds a training run ({', '.join(found)}): add --resume to "
                    "continue it, or train into another --out"
                )
        torch.set_num_threads(s.threads)
        seed_everything(s.seed)
        self.device = distributed.start(dist, pick_device(s.device))
        self.config = config or preset(s.preset, s.variant)
        start = load_checkpoint(init) if init is not None else None  # before the datasets
        head = self.config  # whose move head: --move-bins, else --init's, else the preset's
        if s.move_bins is None and start is not None:
            head = start[0].config
        self.config = dataclasses.replace(
            self.config,
            # hidden always: at inference too, inside the network
            gripper_input=self.config.gripper_input and s.gripper_dropout < 1,
            move_bins=head.move_bins if s.move_bins is None else s.move_bins,
            move_bin_range=head.move_bin_range,
        )
        if start is not None:
            # the gripper bit and the move head's bins change no weight but the head's last
            # layer: a network that differs only there fine-tunes into this one
            head_fields = ("gripper_input", "move_bins", "move_bin_range")
            kept = {k: getattr(self.config, k) for k in head_fields}
            if dataclasses.replace(start[0].config, **kept) != self.config:
                raise CheckpointError(
                    f"{init} holds another network ({start[0].config.name!r}) than "
                    f"{self.config.name!r} (--preset / --variant)"
                )
        paths = [Path(data)] if isinstance(data, str | Path) else [Path(p) for p in data]
        if start is not None:  # its weights, and the statistics they were trained with
            self.net = adopt_weights(start[0], self.config).to(self.device)
        else:
            self.net = TPMNet(self.config).to(self.device)
        loaded = [self._load(path) for path in paths]
        arrays = concat_arrays([a for a, _ in loaded])
        cached = [f for _, f in loaded if f is not None]
        self.features: np.ndarray | None = np.concatenate(cached) if cached else None
        sources = source_counts(EpisodeStore(p, read_only=True) for p in paths)
        self.data_info = {
            "path": ", ".join(map(str, paths)),
            "episodes": len(arrays.episode_ends),
            "steps": len(arrays),
            "sources": {k: {"episodes": e, "steps": n} for k, (e, n) in sources.items()},
        }
        self.sources = describe_sources(sources)
        train_idx, val_idx = split_episodes(arrays, s.val_fraction, s.seed)
        self.init = str(init) if init else None
        # an exported policy's BatchNorm statistics are folded into its convolutions; they are
        # not batch statistics, so training keeps them (models.tpm.onnx_import)
        self.frozen_batchnorm = bool(start is not None and start[2].get(FROZEN_BN_KEY))
        if start is not None:
            self.normaliser = start[1]
        else:
            self.normaliser = Normaliser.fit(arrays.action[train_idx], arrays.proprio[train_idx])
        self.norm = self.normaliser.tensors(self.device)
        counts = repetition_counts(arrays, train_idx, repeat=s.repeat)
        self.train = BatchLoader(
            arrays,
            train_idx,
            s.batch_size,
            seed=s.seed,
            counts=counts,
            features=self.features,
            shard=(dist.rank, dist.world),
        )
        self.val = (
            BatchLoader(arrays, val_idx, 64, seed=s.seed, shuffle=False, features=self.features)
            if len(val_idx)
            else None
        )
        self.position_head: PositionHead | None = None
        if s.position_weight > 0:
            self._start_positions(arrays, train_idx)
        # each rank its own augmentation draws (rank 0 those of a one-process run)
        self._aug_rng = np.random.default_rng([s.seed, 3, dist.rank] if dist.rank else [s.seed, 3])
        self.peak, self.floor = s.learning_rates()
        trained = [p for p in self.net.parameters() if p.requires_grad]  # not a frozen trunk
        if self.position_head is not None:
            trained += list(self.position_head.parameters())
        self.opt = torch.optim.AdamW(trained, lr=self.peak, weight_decay=s.weight_decay)
        self.total = len(self.train) * s.epochs
        if s.max_steps is not None:
            self.total = min(self.total, s.max_steps)
        self.cap = self.total  # `minutes` may shorten the schedule, never lengthen it
        self.warmup = max(1, int(self.total * s.warmup_fraction))
        self.amp = self.device.type == "cuda"
        if self.amp:
            torch.backends.cudnn.benchmark = True  # fixed input sizes: pick the fastest kernels
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.step = 0
        self.epoch = 0
        self.best = math.inf
        self.elapsed = 0.0
        if resume and (out / "last.pt").is_file():
            self._restore(out / "last.pt")
        # what validation calls; a training step calls it through `model` (data-parallel or not)
        self.trained_module = (
            self.net if self.position_head is None else WithPositions(self.net, self.position_head)
        )
        self.model = distributed.wrap(self.trained_module, dist, self.device)
        if dist.main:
            out.mkdir(parents=True, exist_ok=True)

    def _start_positions(self, arrays: Arrays, train_idx: np.ndarray) -> None:
        """The auxiliary position head (`models.tpm.positions`) and its targets' statistics."""
        targets = arrays.positions[train_idx] if arrays.positions is not None else None
        if targets is None or not np.isfinite(targets).any():
            raise DatasetError(
                "--position-weight needs episodes that record object positions (`collect` "
                "writes them since 2026-12-03); none of the training episodes in "
                f"{self.data_info['path']} does"
            )
        mean, std = fit_standardiser(targets)
        self.position_mean = torch.from_numpy(mean).to(self.device)
        self.position_std = torch.from_numpy(std).to(self.device)
        self.position_head = PositionHead(self.net.joint_dim).to(self.device)

    def _position_targets(self, batch: dict[str, np.ndarray]) -> torch.Tensor:
        """A batch's positions, standardised (NaN where unknown)."""
        raw = torch.from_numpy(batch["positions"]).to(self.device)
        return (raw - self.position_mean) / self.position_std

    def _load(self, path: Path) -> tuple[Arrays, np.ndarray | None]:
        """One dataset in RAM, checked against the network's views and size, views selected;
        with a frozen shared trunk, its features of every frame too (`models.tpm.features`)."""
        store = EpisodeStore(path, read_only=True)
        if tuple(store.views)[: len(self.config.views)] != self.config.views or (
            store.image_size != self.config.image_size
        ):
            raise DatasetError(
                f"{path}: views {store.views} at {store.image_size} px do not fit preset "
                f"{self.config.name!r} ({self.config.views} at {self.config.image_size} px)"
            )
        arrays = load_arrays(store, mask_mode=self.config.mask_mode)
        if self.config.views != store.views:  # single view: keep the first views only
            keep = [store.views.index(v) for v in self.config.views]
            arrays = dataclasses.replace(arrays, rgb=arrays.rgb[:, keep], mask=arrays.mask[:, keep])
        if self.net.shared_rgb is None:
            return arrays, None
        from models.tpm import features

        progress = self.on_features
        report = None if progress is None else lambda i, n: progress(path, i, n)
        if not self.dist.main:  # rank 0 computes and caches the features; the others read them
            distributed.barrier(self.dist)
        cached = features.cached(path, self.net, arrays.rgb, device=self.device, on_progress=report)
        if self.dist.main:
            distributed.barrier(self.dist)
        return arrays, cached

    # ------------------------------------------------------------------ loop

    def _fit_budget(self, started: float, first_step: int) -> None:
        """With `minutes`: shorten the schedule to what the measured step rate fits in the budget.

        Re-estimated at every step, so the cosine decay ends with the budget even when the machine
        gets busier or quieter; once the budget is spent the run stops where it is.
        """
        budget = self.settings.minutes
        done = self.step - first_step
        if budget is None or done < 1:
            return
        spent = time.monotonic() - started
        remaining = budget * 60 - spent
        fits = self.step + max(0, int(remaining / (spent / done)))
        # every rank must stop at the same step: rank 0's estimate sets them all
        fits = distributed.agree(fits, self.dist, self.device)
        self.total = min(self.cap, max(self.step, fits))
        self.warmup = min(self.warmup, max(1, int(self.total * self.settings.warmup_fraction)))

    def run(self) -> dict[str, Any]:
        s = self.settings
        started, first_step = time.monotonic(), self.step
        while self.step < self.total:
            t0 = time.monotonic()
            self._train_mode()
            sums: dict[str, float] = {}  # means over the log interval
            for batch in self.train.epoch():
                if self.step >= self.total:
                    break
                parts = {**self._train_step(batch), "batches": 1.0}
                for k, v in parts.items():
                    sums[k] = sums.get(k, 0.0) + v
                self.step += 1
                self._fit_budget(started, first_step)
                if self.step % s.log_every == 0 or self.step == self.total:
                    n = sums.pop("batches")
                    row = {k: v / n for k, v in sums.items()}
                    sums = {}
                    self._log(
                        {
                            "kind": "train",
                            "step": self.step,
                            "epoch": self.epoch,
                            "lr": self.opt.param_groups[0]["lr"],
                            **row,
                        }
                    )
            self.elapsed += time.monotonic() - t0
            self.epoch += 1
            if not self.dist.main:
                continue  # rank 0 validates and writes; the next step's all-reduce waits for it
            val = self.validate()
            self._log(
                {
                    "kind": "val",
                    "step": self.step,
                    "epoch": self.epoch,
                    "elapsed_s": round(self.elapsed, 1),
                    **val,
                }
            )
            if val.get("loss", math.inf) < self.best or self.val is None:
                self.best = val.get("loss", math.inf)
                self._save(self.out / "best.pt")
            self._save(self.out / "last.pt")
        if self.dist.main:
            plot_losses(self.out / "metrics.jsonl", self.out / "loss.png")
        return {
            "steps": self.step,
            "epochs": self.epoch,
            "best_val_loss": self.best,
            "elapsed_s": round(self.elapsed, 1),
        }

    def _train_step(self, batch: dict[str, np.ndarray]) -> dict[str, float]:
        for group in self.opt.param_groups:
            group["lr"] = lr_at(self.step, self.total, self.peak, self.floor, self.warmup)
        batch["rgb"], batch["mask"] = random_shift(
            batch["rgb"], batch["mask"], self.settings.shift_px, self._aug_rng
        )
        batch["rgb"] = colour_jitter(batch["rgb"], self.settings.colour_jitter, self._aug_rng)
        images, masks, proprio, move, grip = batch_tensors(batch, self.norm, self.device)
        if 0 < self.settings.gripper_dropout < 1:
            proprio = hide_gripper_bits(proprio, self.settings.gripper_dropout, self._aug_rng)
        feats = batch_features(batch, self.device)
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp):
            outputs = self.model(images, masks, proprio, feats)
        loss, parts = self._loss(*outputs[:2], move, grip)
        if self.position_head is not None:
            aux = position_loss(outputs[2], self._position_targets(batch))
            loss = loss + self.settings.position_weight * aux
            parts["position_mse"] = float(aux.detach())
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.opt)
        self.scaler.update()
        return parts

    def _loss(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        s = self.settings
        centres = self.net.bin_centres if self.config.move_bins else None
        return bc_loss(
            *tensors,
            move_weight=s.move_weight,
            gripper_weight=s.gripper_weight,
            bin_centres=centres,
        )

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        if self.val is None:
            return {}
        self.net.eval()
        totals = {"loss": 0.0, "mse": 0.0, "ce": 0.0, "gripper_acc": 0.0, "move_err_mm": 0.0}
        n = 0
        pick_err_mm, pick_n = 0.0, 0
        std = self.norm["move_std"]
        for batch in self.val.epoch():
            images, masks, proprio, move, grip = batch_tensors(batch, self.norm, self.device)
            feats = batch_features(batch, self.device)
            with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp):
                outputs = self.trained_module(images, masks, proprio, feats)
            move_pred, logits = outputs[:2]
            _, parts = self._loss(move_pred, logits, move, grip)
            if self.position_head is not None:  # how far the predicted pick object is (mm)
                pred = outputs[2].float()[:, :3] * self.position_std[:3]
                target = self._position_targets(batch)[:, :3] * self.position_std[:3]
                known = torch.isfinite(target).all(dim=1)
                pick_err_mm += float((pred - target)[known].norm(dim=1).sum()) * 1000
                pick_n += int(known.sum())
            b = len(grip)
            for k in ("loss", "mse", "ce"):
                totals[k] += parts[k] * b
            totals["gripper_acc"] += float((logits.argmax(1) == grip).float().sum())
            err = ((decode_move(self.net, move_pred) - move) * std).norm(dim=1) * 1000
            totals["move_err_mm"] += float(err.sum())
            n += b
        out = {f"val_{k}" if k != "loss" else "loss": v / n for k, v in totals.items()}
        if pick_n:
            out["val_pick_position_err_mm"] = pick_err_mm / pick_n
        return out

    # ------------------------------------------------------------------ state

    def _log(self, row: dict[str, Any]) -> None:
        if not self.dist.main:
            return
        with (self.out / "metrics.jsonl").open("a") as f:
            f.write(json.dumps(row) + "\n")
        if self.on_progress is not None:
            self.on_progress({**row, "total": self.total})

    def _train_mode(self) -> None:
        self.net.train()
        if self.frozen_batchnorm:
            for module in self.net.modules():
                if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                    module.eval()

    def _save(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        torch.save(
            {
                "config": dataclasses.asdict(self.config),
                # the masks' values it was trained on (the dataset decodes with this coding);
                # export writes it into the ONNX metadata, where OnnxTPMPolicy checks it
                "mask_coding": MASK_CODING.to_json(),
                "model": self.net.state_dict(),
                # training-only (`models.tpm.positions`): kept for --resume, never exported
                "position_head": (
                    None if self.position_head is None else self.position_head.state_dict()
                ),
                "normaliser": dataclasses.asdict(self.normaliser),
                "optimizer": self.opt.state_dict(),
                "scaler": self.scaler.state_dict(),
                "step": self.step,
                "epoch": self.epoch,
                "best": self.best,
                "elapsed_s": self.elapsed,
                "total": self.total,
                "settings": dataclasses.asdict(self.settings),
                "data": self.data_info,
                "world_size": self.dist.world,  # data-parallel processes (batch x world a step)
                "init": self.init,
                FROZEN_BN_KEY: self.frozen_batchnorm,
                "rng": {
                    "torch": torch.get_rng_state(),
                    "numpy": self.train._rng.bit_generator.state,
                    "augment": self._aug_rng.bit_generator.state,
                },
            },
            tmp,
        )
        tmp.replace(path)  # a crash mid-save never leaves a torn checkpoint

    def _restore(self, path: Path) -> None:
        ckpt = read_checkpoint(path, map_location=self.device)
        if network_config(path, ckpt) != self.config:
            raise CheckpointError(
                f"{path} holds another network ({ckpt['config'].get('name')!r}) than "
                f"{self.config.name!r}: resume with its --preset / --variant"
            )
        missing = [k for k in RESUME_KEYS if k not in ckpt]
        if missing:
            raise CheckpointError(f"{path} cannot be resumed (no {', '.join(missing)})")
        saved_head = ckpt.get("position_head")
        if (saved_head is None) != (self.position_head is None):
            had = "with" if saved_head is not None else "without"
            raise CheckpointError(
                f"{path} was trained {had} the position head: resume it {had} --position-weight"
            )
        load_weights(self.net, path, ckpt["model"])
        if self.position_head is not None and saved_head is not None:
            self.position_head.load_state_dict(saved_head)
        self.opt.load_state_dict(ckpt["optimizer"])
        self.scaler.load_state_dict(ckpt["scaler"])
        self.step, self.epoch, self.best = ckpt["step"], ckpt["epoch"], ckpt["best"]
        self.frozen_batchnorm = bool(ckpt.get(FROZEN_BN_KEY, False))
        self.elapsed = ckpt.get("elapsed_s", 0.0)
        self.normaliser = Normaliser(**ckpt["normaliser"])
        self.norm = self.normaliser.tensors(self.device)
        torch.set_rng_state(ckpt["rng"]["torch"].cpu())  # map_location moved it to the GPU
        self.train._rng.bit_generator.state = ckpt["rng"]["numpy"]
        if "augment" in ckpt["rng"] and self.dist.main:  # rank 0's; the others keep their own
            self._aug_rng.bit_generator.state = ckpt["rng"]["augment"]


def plot_losses(metrics: Path, out: Path) -> None:
    """The training and validation loss against steps, as a PNG (skipped without matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    fig, ax = plt.subplots(figsize=(6, 4))
    for kind, style in (("train", "-"), ("val", "o-")):
        pts = [(r["step"], r["loss"]) for r in rows if r["kind"] == kind and "loss" in r]
        if pts:
            ax.plot(*zip(*pts, strict=True), style, label=kind)
    ax.set_xlabel("step")
    ax.set_ylabel("5000 MSE + 5 CE")
    ax.set_yscale("log")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
