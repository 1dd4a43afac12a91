"""`jukelite bench attention`: forward+backward time and memory of each sparse attention type
vs dense, per context length.

What "memory" means depends on the device:
- CUDA: `torch.cuda.max_memory_allocated` during forward+backward, minus what was allocated
  before (inputs and weights), i.e. the true peak of activations, workspace and gradients.
- CPU: torch has no allocator statistics there, so we report the bytes of the distinct storages
  autograd saves for backward (a `saved_tensors_hooks` tally). That is the activation memory a
  layer holds between forward and backward: it would show an n x n score matrix if one were kept,
  but not the transient workspace inside a fused kernel.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from jukelite.bench.shapes import ATTENTION_DEFAULTS, positive_ints
from jukelite.bench.timing import environment
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


MEMORY_NOTES = {
    "cuda": "peak_bytes: torch.cuda.max_memory_allocated during forward+backward minus what was "
    "allocated before (inputs and weights): the true peak of activations, workspace and "
    "gradients",
    "cpu": "peak_bytes: bytes of the distinct storages autograd saves for backward (a "
    "saved_tensors_hooks tally), since torch keeps no allocator statistics on CPU: the activation "
    "memory a layer holds between forward and backward. It would show an n x n score matrix if "
    "one were kept, but not the transient workspace inside a fused kernel",
}


def n_ctx_list(text: str) -> list[int]:
    return positive_ints(text, "--n-ctx")


def run_attention_bench(args: argparse.Namespace) -> dict[str, Any]:
    """Forward+backward of one attention layer per type and n_ctx, with ratios to dense."""
    def pick(name: str) -> Any:
        value = getattr(args, name, None)
        return ATTENTION_DEFAULTS[name] if value is None else value

    device = torch.device(args.device)
    torch.manual_seed(0)
    raw = bench_attention(
        n_ctx_list(str(pick("n_ctx"))),
        width=pick("width"),
        heads=pick("heads"),
        block_ctx=pick("block_ctx"),
        device=device,
        repeats=args.repeats,
    )
    dense = {r["n_ctx"]: r for r in raw["results"] if r["type"] == "DENSE"}
    for r in raw["results"]:
        ref = dense.get(r["n_ctx"])
        r["time_ratio_vs_dense"] = r["time_s"] / ref["time_s"] if ref else None
        r["memory_ratio_vs_dense"] = (
            r["peak_bytes"] / ref["peak_bytes"] if ref and ref["peak_bytes"] else None
        )
    results: dict[str, Any] = {
        "benchmark": "attention",
        **environment(device),
        "repeats": args.repeats,
        "width": raw["width"],
        "heads": raw["heads"],
        "block_ctx": raw["block_ctx"],
        "dtype": raw["dtype"],
        "batch": 1,
        "measures": "time_s: median wall time of one forward+backward of a SparseAttention layer "
        "(n_state = width, blocks = n_ctx // block_ctx) after a warm-up run; "
        + MEMORY_NOTES["cuda" if device.type == "cuda" else "cpu"]
        + "; *_ratio_vs_dense: this type's figure divided by DENSE's at the same n_ctx",
        "memory": raw["memory"],
        "results": raw["results"],
    }
    _attention_table(results)
    return results


def _attention_table(results: dict[str, Any]) -> None:
    print(
        f"attention forward+backward on {results['device']} ({results['threads']} threads), "
        f"width {results['width']}, heads {results['heads']}, block_ctx {results['block_ctx']}; "
        f"memory = {results['memory']}",
        file=sys.stderr,
    )
    print(
        f"{'n_ctx':>6} {'type':>9} {'time (ms)':>10} {'x dense':>8} {'memory (MB)':>12} "
        f"{'x dense':>8}",
        file=sys.stderr,
    )

    def ratio(value: float | None) -> str:
        return "-" if value is None else f"{value:.3f}"

    for r in results["results"]:
        print(
            f"{r['n_ctx']:>6} {r['type']:>9} {r['time_s'] * 1e3:>10.1f} "
            f"{ratio(r['time_ratio_vs_dense']):>8} {r['peak_bytes'] / 1e6:>12.2f} "
            f"{ratio(r['memory_ratio_vs_dense']):>8}",
            file=sys.stderr,
        )
