"""Fully sharded training (`train.parallel: fsdp`) with FSDP2 and sharded checkpoints.

DDP keeps a whole copy of the weights, gradients, AdamW state and EMA on every device: about
20 bytes per parameter, 100 GB for a 5B prior before any activation. FSDP2 (`fully_shard`) keeps
1/N of each on each of N devices and gathers one Transformer block's weights at a time for its
forward and backward. The weights stay float32 masters; on CUDA with bf16 the gathered copies are
bf16 and gradients are reduced in float32.

A sharded checkpoint is a folder `step_XXXXXXXX.dcp` written by `torch.distributed.checkpoint`:
each rank writes its own shards, rank 0 adds `state.pt` (step, data position, scheduler, RNG,
recipe). All ranks write into `step_XXXXXXXX.dcp.partial` and rank 0 renames it when every rank
is done, so a kill never leaves a half-written checkpoint under a checkpoint name. The checkpoint
can be read back by any number of processes, so one process can turn it into a bundle.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from jukelite.prior.model import Block
from jukelite.train.checkpoint import (
    CHECKPOINT_FORMAT,
    SHARDED_STATE_FILE,
    checkpoint_path,
    prune_checkpoints,
)
from jukelite.train.distributed import DistributedContext

PARTIAL_SUFFIX = ".partial"


def shard_model(model: nn.Module, ctx: DistributedContext, bf16: bool) -> nn.Module:
    """Shard `model` in place: one FSDP unit per Transformer block, the rest in the root unit.

    The model may still be on the CPU: each rank keeps only its shard, moved to `ctx.device`.
    `bf16` gathers the weights in bfloat16 for compute and reduces gradients in float32."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    blocks = [module for module in model.modules() if isinstance(module, Block)]
    if not blocks:
        raise ValueError(
            f"train.parallel=fsdp shards Transformer blocks, and {type(model).__name__} has none; "
            "train it with train.parallel=ddp"
        )
    mesh = init_device_mesh(ctx.device.type, (dist.get_world_size(),))
    policy = MixedPrecisionPolicy(
        param_dtype=torch.bfloat16 if bf16 else None,
        reduce_dtype=torch.float32 if bf16 else None,
    )
    for block in blocks:
        fully_shard(block, mesh=mesh, mp_policy=policy)
    fully_shard(model, mesh=mesh, mp_policy=policy)
    return model


def release_gathered(model: nn.Module) -> None:
    """Drop the gathered weights a forward pass without backward leaves behind.

    FSDP keeps the root unit's weights gathered after its forward, for the backward that
    normally follows. After evaluation none follows: the root would keep its gathered copy
    (of the EMA weights, swapped in for evaluation) and the next training step would run on
    it instead of the raw weights."""
    model.reshard()  # type: ignore[operator]


def set_gradient_sync(model: nn.Module, sync: bool) -> None:
    """Skip the gradient reduce-scatter on all but the last micro-batch of an accumulation."""
    model.set_requires_gradient_sync(sync)  # type: ignore[operator]


def full_norm(norm: torch.Tensor) -> torch.Tensor:
    """`clip_grad_norm_` of sharded gradients returns a DTensor; its value is the whole norm."""
    return norm.full_tensor() if hasattr(norm, "full_tensor") else norm


def full_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """The whole state dict on rank 0's CPU (empty on other ranks); every rank must call it."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(
        model, options=StateDictOptions(full_state_dict=True, cpu_offload=True)
    )


def unsharded_copy(model: nn.Module) -> nn.Module | None:
    """A plain model holding the whole weights on rank 0's CPU, for export (None elsewhere).

    Every rank must call it. The copy is built anew from the model's config, as a bundle's
    prior is, without drawing on the global RNG that training goes on with."""
    from torch.distributed.fsdp import FSDPModule

    weights = full_weights(model)
    if dist.get_rank() != 0:
        return None
    plain_class = next(c for c in type(model).__mro__
                       if issubclass(c, nn.Module) and not issubclass(c, FSDPModule))
    with torch.random.fork_rng(devices=[]), torch.device("cpu"):
        copy = plain_class(model.config)
    copy.load_state_dict(weights)
    return copy


def _tensor_state(model: nn.Module, optimizer: torch.optim.Optimizer,
                  ema: dict[str, torch.Tensor] | None) -> dict[str, Any]:
    from torch.distributed.checkpoint.state_dict import get_state_dict

    weights, optimizer_state = get_state_dict(model, optimizer)
    state: dict[str, Any] = {"model": weights, "optimizer": optimizer_state}
    if ema is not None:
        state["ema"] = ema
    return state


def save_sharded_checkpoint(
    directory: Path, step: int, model: nn.Module, optimizer: torch.optim.Optimizer,
    ema: dict[str, torch.Tensor] | None, state: dict[str, Any], keep: int,
) -> Path:
    """Write this step's sharded checkpoint (every rank calls it); prune to the newest `keep`.

    `ema` is the EMA's sharded shadow weights; `state` the rest, which rank 0 writes."""
    import torch.distributed.checkpoint as dcp

    from jukelite.fileio import atomic_path

    target = checkpoint_path(directory, step, sharded=True)
    partial = target.with_name(target.name + PARTIAL_SUFFIX)
    if dist.get_rank() == 0:
        directory.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(partial, ignore_errors=True)  # left by a run killed while saving
    dist.barrier()
    dcp.save(_tensor_state(model, optimizer, ema), checkpoint_id=str(partial))
    if dist.get_rank() == 0:
        with atomic_path(partial / SHARDED_STATE_FILE) as tmp:
            torch.save({"format": CHECKPOINT_FORMAT, "step": step, "sharded": True, **state}, tmp)
        if target.exists():  # the same step saved again (a stop right after a periodic save)
            shutil.rmtree(target)
        partial.rename(target)
        prune_checkpoints(directory, keep)
    dist.barrier()
    return target


def load_sharded_tensors(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer,
                         ema: dict[str, torch.Tensor] | None) -> None:
    """Load the weights, optimizer state and EMA of a sharded checkpoint into this rank's
    shards, whatever number of processes wrote it."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import set_state_dict

    state = _tensor_state(model, optimizer, ema)
    dcp.load(state, checkpoint_id=str(path))
    set_state_dict(model, optimizer, model_state_dict=state["model"],
                   optim_state_dict=state["optimizer"])


def read_whole_weights(path: Path, model: nn.Module, ema: bool) -> dict[str, torch.Tensor]:
    """The whole weights of a sharded checkpoint in this one process, without its optimizer
    state: the EMA's when `ema`, else the raw ones. `model` (plain, unsharded) gives the keys
    and shapes; its own weights are not changed."""
    import torch.distributed.checkpoint as dcp

    weights = {key: value.detach().clone() for key, value in model.state_dict().items()}
    wanted: dict[str, Any] = {"model": weights}
    if ema:
        wanted["ema"] = {name: param.detach().float().clone()
                         for name, param in model.named_parameters() if param.requires_grad}
    with warnings.catch_warnings():  # one process reading on purpose, not a setup mistake
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        dcp.load(wanted, checkpoint_id=str(path), no_dist=True)
    if ema:
        weights.update({name: value.to(weights[name].dtype)
                        for name, value in wanted["ema"].items()})
    return weights
