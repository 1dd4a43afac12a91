"""`jukelite bench vqvae`: encode/decode speed of each VQ-VAE level (real-time factor, tokens/s)."""

from __future__ import annotations

import argparse
import sys
from functools import partial
from typing import Any

import torch

from jukelite.bench.timing import environment, median_time
from jukelite.bundle import load_vqvae_level, vqvae_levels
from jukelite.vqvae.config import VQVAEConfig
from jukelite.vqvae.model import LevelVQVAE, count_parameters


def _levels(args: argparse.Namespace, device: torch.device) -> tuple[str, list[LevelVQVAE]]:
    if args.model:
        return args.model, [
            load_vqvae_level(args.model, lv, device) for lv in vqvae_levels(args.model)
        ]
    if args.recipe:
        from jukelite.recipes import load_recipe

        recipe = load_recipe(args.recipe)
        config, source = recipe.model, args.recipe
    else:
        config, source = VQVAEConfig(sample_rate=44100), "jukebox VQ-VAE shape (random weights)"
    torch.manual_seed(0)
    models = [LevelVQVAE(config, level).to(device).eval() for level in range(config.levels)]
    return source, models


@torch.no_grad()
def bench_vqvae(args: argparse.Namespace) -> dict[str, Any]:
    """Encode and decode speed per level: real-time factor and tokens per second."""
    device = torch.device(args.device)
    batch = 1 if args.batch is None else args.batch
    source, models = _levels(args, device)
    results: dict[str, Any] = {
        "benchmark": "vqvae",
        "source": source,
        **environment(device),
        "seconds_per_item": args.seconds,
        "batch": batch,
        "levels": {},
    }
    for model in models:
        results["levels"][str(model.level)] = time_level(model, args.seconds, batch, device,
                                                         args.repeats)
    _table(results)
    return results


@torch.no_grad()
def time_level(model: LevelVQVAE, seconds: float, batch: int, device: torch.device,
               repeats: int) -> dict[str, Any]:
    """Encode and decode time of one level on `batch` items of random audio of about
    `seconds` (a whole number of codes, at least one): real-time factor and tokens/s."""
    rate, hop, channels = model.config.sample_rate, model.hop_length, model.config.channels
    samples = max(hop, int(seconds * rate) // hop * hop)
    audio = torch.randn(batch, channels, samples, device=device).clamp(-1, 1) * 0.3
    codes = model.encode(audio)
    audio_seconds = batch * samples / rate
    tokens = codes.numel()
    encode_s = median_time(partial(model.encode, audio), device, repeats)
    decode_s = median_time(partial(model.decode, codes), device, repeats)
    return {
        "hop_length": hop,
        "parameters": count_parameters(model),
        "tokens": tokens,
        "encode_seconds": encode_s,
        "encode_realtime_factor": encode_s / audio_seconds,
        "encode_tokens_per_second": tokens / encode_s,
        "decode_seconds": decode_s,
        "decode_realtime_factor": decode_s / audio_seconds,
        "decode_tokens_per_second": tokens / decode_s,
    }


def _table(results: dict[str, Any]) -> None:
    print(
        f"{results['source']} on {results['device']} ({results['threads']} threads), "
        f"batch {results['batch']} x {results['seconds_per_item']} s; "
        "RTF = compute time / audio time (below 1 is faster than real time)",
        file=sys.stderr,
    )
    print(
        f"{'level':>5} {'hop':>5} {'enc RTF':>9} {'enc tok/s':>11} "
        f"{'dec RTF':>9} {'dec tok/s':>11}",
        file=sys.stderr,
    )
    for level, r in results["levels"].items():
        print(
            f"{level:>5} {r['hop_length']:>5} {r['encode_realtime_factor']:>9.3f} "
            f"{r['encode_tokens_per_second']:>11.0f} {r['decode_realtime_factor']:>9.3f} "
            f"{r['decode_tokens_per_second']:>11.0f}",
            file=sys.stderr,
        )
