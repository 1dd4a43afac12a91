"""`jukelite bench ...`: speed measurements printed as one JSON object (and a table on stderr).

Timings are medians over repeats after a warm-up run, measured with torch's own threads on
the chosen device (CUDA timings synchronise before reading the clock).

- `vqvae` (vqvae.py): encode/decode speed of each VQ-VAE level (real-time factor, tokens/s).
- `attention` (attention.py): forward+backward time and memory of one attention layer per
  sparse type, with each type's ratio to dense.
- `prior` (prior.py): training throughput of a randomly initialised `LevelPrior` of a shape.
- `sample` (sample.py): sampling speed of random-weight priors (KV-cached vs naive, prefill)
  and the real-time factor of a full render.
- `jukebox-import` (jukebox_import.py): time and peak memory of importing a released-size
  Jukebox checkpoint (random weights), and sampling the imported bundle.
- `gpu` (gpu.py): the one-job GPU check: attention backends against float64, Jukebox-shaped
  sampling with and without CUDA graphs, sharded training steps, VQ-VAE real-time factor.
"""

from __future__ import annotations

import argparse
from typing import Any

from jukelite.bench.shapes import BENCHMARKS


def _one_batch(text: Any) -> int | None:
    """--batch for the benchmarks that take a single size."""
    if text is None:
        return None
    try:
        value = int(str(text).strip())
    except ValueError:
        raise ValueError(f"--batch takes one integer here, got {text!r}") from None
    if value < 1:
        raise ValueError(f"--batch must be >= 1, got {value}")
    return value


def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    if args.what == "jukebox-import":
        from jukelite.bench.jukebox_import import bench_jukebox_import

        return bench_jukebox_import(args)
    if args.what == "gpu":
        from jukelite.bench.gpu import bench_gpu

        return bench_gpu(args)
    if args.what == "sample":
        from jukelite.bench.sample import bench_sample

        return bench_sample(args)
    # --batch is text (sample takes a list) and --seconds defaults per benchmark
    seconds = getattr(args, "seconds", None)
    args = argparse.Namespace(
        **{
            **vars(args),
            "batch": _one_batch(getattr(args, "batch", None)),
            "seconds": 5.0 if seconds is None else seconds,
        }
    )
    if args.what == "vqvae":
        from jukelite.bench.vqvae import bench_vqvae

        return bench_vqvae(args)
    if args.what == "attention":
        from jukelite.bench.attention import run_attention_bench

        return run_attention_bench(args)
    if args.what == "prior":
        from jukelite.bench.prior import bench_prior

        return bench_prior(args)
    raise ValueError(f"unknown benchmark {args.what!r}; choose from {BENCHMARKS}")
