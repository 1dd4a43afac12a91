"""`jukelite bench prior`: training throughput (forward + backward + AdamW step) of a randomly
initialised `LevelPrior` of a named shape."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import torch

from jukelite.bench.attention import n_ctx_list
from jukelite.bench.shapes import PRIOR_FLAGS, PRIOR_SHAPES
from jukelite.bench.timing import environment, median_time
from jukelite.prior.model import LevelPrior, PriorConfig
from jukelite.vqvae.model import count_parameters


def prior_shape(name: str, args: argparse.Namespace) -> dict[str, int]:
    """The sizes of shape `name` with any of --width --depth ... --batch given overriding them."""
    if name not in PRIOR_SHAPES:
        raise ValueError(f"unknown prior shape {name!r}; choose from {', '.join(PRIOR_SHAPES)}")
    sizes = dict(PRIOR_SHAPES[name])
    for flag in PRIOR_FLAGS:
        value = getattr(args, flag, None)
        if value is None:
            continue
        if flag == "n_ctx":
            values = n_ctx_list(str(value))
            if len(values) != 1:
                raise ValueError(f"bench prior takes one --n-ctx value, got {value!r}")
            value = values[0]
        sizes[flag] = int(value)
    return sizes


def prior_config(sizes: dict[str, int]) -> PriorConfig:
    return PriorConfig(
        bins=sizes["bins"],
        n_ctx=sizes["n_ctx"],
        width=sizes["width"],
        depth=sizes["depth"],
        heads=sizes["heads"],
        blocks=sizes["blocks"],
        attn_order=2,
        labels=False,
    )


def bench_prior(args: argparse.Namespace) -> dict[str, Any]:
    """Training throughput (forward + backward + AdamW step) of a random LevelPrior per shape."""
    device = torch.device(args.device)
    names = [n.strip() for n in str(args.shape).split(",") if n.strip()]
    if not names:
        raise ValueError("--shape is empty")
    results: dict[str, Any] = {
        "benchmark": "prior",
        **environment(device),
        "repeats": args.repeats,
        "measures": "seconds_per_step: median wall time of one training step (zero_grad, forward "
        "with the bits-per-token loss, backward, AdamW step) on random codes after a warm-up step; "
        "tokens_per_second = batch * n_ctx / seconds_per_step; parameters: trainable, the tied "
        "head counted once; peak_memory_bytes: torch.cuda.max_memory_allocated over the timed "
        "steps (CUDA only, null on CPU)",
        "shapes": [],
    }
    for name in names:
        sizes = prior_shape(name, args)
        config = prior_config(sizes)
        torch.manual_seed(0)
        model = LevelPrior(config).to(device).train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        codes = torch.randint(0, config.bins, (sizes["batch"], config.n_ctx), device=device)
        losses: list[float] = []

        def step(model=model, optimizer=optimizer, codes=codes, losses=losses) -> None:
            optimizer.zero_grad(set_to_none=True)
            loss = model(codes).loss
            loss.backward()
            optimizer.step()
            losses.append(loss.detach())

        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        seconds = median_time(step, device, args.repeats)
        peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
        tokens = sizes["batch"] * config.n_ctx
        results["shapes"].append(
            {
                "shape": name,
                **sizes,
                "attn_order": config.attn_order,
                "labels": config.labels,
                "schedule": [kind.name for kind in model.transformer.schedule],
                "parameters": count_parameters(model),
                "tokens_per_step": tokens,
                "seconds_per_step": seconds,
                "tokens_per_second": tokens / seconds,
                "peak_memory_bytes": peak,
                "last_loss_bits_per_token": float(losses[-1]),
            }
        )
        del model, optimizer
    _prior_table(results)
    return results


def _prior_table(results: dict[str, Any]) -> None:
    print(
        f"prior training step (forward + backward + AdamW) on {results['device']} "
        f"({results['threads']} threads)",
        file=sys.stderr,
    )
    print(
        f"{'shape':>7} {'width':>5} {'depth':>5} {'heads':>5} {'n_ctx':>6} {'batch':>5} "
        f"{'params':>11} {'s/step':>8} {'tokens/s':>9}",
        file=sys.stderr,
    )
    for r in results["shapes"]:
        print(
            f"{r['shape']:>7} {r['width']:>5} {r['depth']:>5} {r['heads']:>5} {r['n_ctx']:>6} "
            f"{r['batch']:>5} {r['parameters']:>11,} {r['seconds_per_step']:>8.3f} "
            f"{r['tokens_per_second']:>9.0f}",
            file=sys.stderr,
        )
