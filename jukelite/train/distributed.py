"""Process-group setup for `torchrun`: one code path for one process or many.

Under torchrun (WORLD_SIZE > 1) we join the group with NCCL on GPUs and gloo on CPUs; a plain
`jukelite train` runs as a single process with no group at all.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistributedContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """`auto` picks this rank's GPU when there is one, else the CPU."""
    if name == "auto":
        return (
            torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
        )
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device '{name}' requested but CUDA is not available on this machine")
    if device.type == "cuda" and device.index is None:
        device = torch.device(f"cuda:{local_rank}")
    return device


def setup_distributed(device_name: str = "auto", need_group: bool = False) -> DistributedContext:
    """Join the torchrun process group if launched by torchrun; otherwise a single process,
    which gets a process group of its own only when `need_group` (sharded training needs one
    even alone)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name, local_rank)
    if (world_size > 1 or need_group) and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        backend = "nccl" if device.type == "cuda" else "gloo"
        if world_size > 1:
            dist.init_process_group(backend=backend)
        else:
            dist.init_process_group(backend=backend, store=dist.HashStore(), rank=0, world_size=1)
    return DistributedContext(rank, world_size, local_rank, device)


def teardown_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
