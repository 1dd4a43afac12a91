"""`jukelite bench ...`: speed measurements printed as one JSON object (and a table on stderr).

Timings are medians over repeats after a warm-up run, measured with torch's own threads on
the chosen device (CUDA timings synchronise before reading the clock).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import torch

from jukelite.bundle import load_vqvae_level, vqvae_levels
from jukelite.vqvae.config import VQVAEConfig
from jukelite.vqvae.model import LevelVQVAE, count_parameters

BENCHMARKS = ("vqvae",)


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("what", choices=BENCHMARKS, help="what to measure")
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--model", metavar="BUNDLE", help="measure a trained bundle's VQ-VAE levels"
    )
    source.add_argument(
        "--recipe",
        help="measure the (randomly initialised) model of a recipe; "
        "default: the released Jukebox VQ-VAE shape at 44.1 kHz",
    )
    parser.add_argument("--seconds", type=float, default=5.0, help="audio length per item")
    parser.add_argument("--batch", type=int, default=1, help="items per call")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs (median reported)")
    parser.add_argument("--device", default="cpu", help="torch device")


def _time(fn: Callable[[], Any], device: torch.device, repeats: int) -> float:
    def synced() -> None:
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    synced()  # warm-up: allocator, kernels, caches
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        synced()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


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
    source, models = _levels(args, device)
    results: dict[str, Any] = {
        "benchmark": "vqvae",
        "source": source,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "seconds_per_item": args.seconds,
        "batch": args.batch,
        "levels": {},
    }
    for model in models:
        rate, hop, channels = model.config.sample_rate, model.hop_length, model.config.channels
        samples = int(args.seconds * rate) // hop * hop
        audio = torch.randn(args.batch, channels, samples, device=device).clamp(-1, 1) * 0.3
        codes = model.encode(audio)
        audio_seconds = args.batch * samples / rate
        tokens = codes.numel()
        encode_s = _time(partial(model.encode, audio), device, args.repeats)
        decode_s = _time(partial(model.decode, codes), device, args.repeats)
        results["levels"][str(model.level)] = {
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
    _table(results)
    return results


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


def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    if args.what == "vqvae":
        return bench_vqvae(args)
    raise ValueError(f"unknown benchmark {args.what!r}; choose from {BENCHMARKS}")
