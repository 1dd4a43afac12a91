"""Forward+backward time and memory of each sparse attention type vs dense, per context length.

What "memory" means depends on the device:
- CUDA: `torch.cuda.max_memory_allocated` during forward+backward, minus what was allocated
  before (inputs and weights), i.e. the true peak of activations, workspace and gradients.
- CPU: torch has no allocator statistics there, so we report the bytes of the distinct storages
  autograd saves for backward (a `saved_tensors_hooks` tally). That is the activation memory a
  layer holds between forward and backward: it would show an n x n score matrix if one were kept,
  but not the transient workspace inside a fused kernel.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence

import torch

from jukelite.prior.attention import AttnType, SparseAttention

BENCH_TYPES = (AttnType.DENSE, AttnType.ROW, AttnType.COLUMN, AttnType.PREV_ROW)


def _saved_bytes(fn: Callable[[], torch.Tensor]) -> tuple[torch.Tensor, int]:
    """Run `fn` and tally the bytes of distinct storages saved for backward."""
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return out, sum(storages.values())


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_attention(
    n_ctx_list: Sequence[int] = (1024, 4096, 16384),
    width: int = 256,
    heads: int = 2,
    block_ctx: int = 64,
    device: str | torch.device = "cpu",
    repeats: int = 3,
    types: Sequence[AttnType] = BENCH_TYPES,
    dtype: torch.dtype = torch.float32,
) -> dict:
    """Time forward+backward of one attention layer (batch 1, n_state = width) per type and n_ctx.

    `blocks = n_ctx // block_ctx` (Jukebox keeps block_ctx 64 and grows the row count). Returns
    {"device", "width", "heads", "block_ctx", "dtype", "memory", "results": [{"type", "n_ctx",
    "blocks", "time_s" (median of `repeats` after one warm-up), "peak_bytes"}]}.
    """
    device = torch.device(device)
    results = []
    for n_ctx in n_ctx_list:
        if n_ctx % block_ctx:
            raise ValueError(f"n_ctx {n_ctx} is not a multiple of block_ctx {block_ctx}")
        blocks = n_ctx // block_ctx
        for kind in types:
            layer = SparseAttention(width, width, heads, n_ctx, kind, blocks=blocks)
            layer = layer.to(device=device, dtype=dtype)
            x = torch.randn(1, n_ctx, width, device=device, dtype=dtype, requires_grad=True)
            times, peak = [], 0
            for i in range(repeats + 1):  # the first run warms up kernels and the allocator
                x.grad = None
                layer.zero_grad(set_to_none=True)
                _sync(device)
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(device)
                    base = torch.cuda.memory_allocated(device)
                began = time.perf_counter()
                out, saved = _saved_bytes(lambda layer=layer, x=x: layer(x))
                out.float().square().mean().backward()
                _sync(device)
                if i:
                    times.append(time.perf_counter() - began)
                if device.type == "cuda":
                    peak = max(peak, torch.cuda.max_memory_allocated(device) - base)
                else:
                    peak = max(peak, saved)
                del out
            results.append(
                {
                    "type": kind.name,
                    "n_ctx": n_ctx,
                    "blocks": blocks,
                    "time_s": statistics.median(times),
                    "peak_bytes": int(peak),
                }
            )
    memory = (
        "cuda max_memory_allocated above inputs+weights"
        if device.type == "cuda"
        else "bytes of storages saved for backward"
    )
    return {
        "device": str(device),
        "width": width,
        "heads": heads,
        "block_ctx": block_ctx,
        "dtype": str(dtype).removeprefix("torch."),
        "memory": memory,
        "results": results,
    }
