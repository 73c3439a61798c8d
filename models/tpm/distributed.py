"""Data-parallel training under `torchrun`: which process this is, and the few collectives used.

`torchrun --nproc-per-node N -m agent train ...` starts N copies of `train`; each reads its rank
from the environment torchrun sets (RANK, WORLD_SIZE, LOCAL_RANK), joins one process group
(NCCL on GPUs, gloo on CPUs) and wraps the network in DistributedDataParallel, which averages
the gradients of every rank's batch in each step. All ranks read the same data and draw the same
shuffled order; rank r takes batches r, r + N, r + 2N... of it (`BatchLoader(shard=...)`), so a
step sees N batches of `--batch-size` and an epoch is N times fewer steps. Only rank 0 validates,
logs and writes checkpoints, which hold the plain network: `export` and `--resume` read them as a
one-process run's. With `--minutes`, rank 0's step-rate estimate sets every rank's schedule
length (`agree`), so all ranks stop at the same step.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch


@dataclass(frozen=True, slots=True)
class Dist:
    """This process's place in a data-parallel run (rank 0 of 1 without torchrun)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Rank 0: the one that validates, logs and writes."""
        return self.rank == 0

    @property
    def parallel(self) -> bool:
        return self.world > 1


def from_env() -> Dist:
    """The rank torchrun gave this process (RANK, WORLD_SIZE, LOCAL_RANK), or a lone process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    return Dist(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))


def start(dist: Dist, device: torch.device) -> torch.device:
    """Join the process group (NCCL on CUDA, gloo otherwise); this rank's device."""
    if not dist.parallel:
        return device
    import torch.distributed as td

    if device.type == "cuda":
        device = torch.device("cuda", dist.local_rank)
        torch.cuda.set_device(device)
    if not td.is_initialized():
        td.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device


def wrap(net: torch.nn.Module, dist: Dist, device: torch.device) -> torch.nn.Module:
    """The module the training step calls: DDP around `net` when parallel, else `net`."""
    if not dist.parallel:
        return net
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(net, device_ids=ids)


def agree(value: int, dist: Dist, device: torch.device) -> int:
    """Rank 0's `value` on every rank (a broadcast; NCCL needs the tensor on the GPU)."""
    if not dist.parallel:
        return value
    import torch.distributed as td

    where = device if device.type == "cuda" else torch.device("cpu")
    tensor = torch.tensor([value], dtype=torch.int64, device=where)
    td.broadcast(tensor, src=0)
    return int(tensor.item())


def barrier(dist: Dist) -> None:
    if dist.parallel:
        import torch.distributed as td

        td.barrier()


def stop(dist: Dist) -> None:
    """Leave the process group (at the end of `train`, whatever happened)."""
    if not dist.parallel:
        return
    import torch.distributed as td

    if td.is_initialized():
        td.destroy_process_group()
