"""`jukelite bench ...`: speed measurements printed as one JSON object (and a table on stderr).

Timings are medians over repeats after a warm-up run, measured with torch's own threads on
the chosen device (CUDA timings synchronise before reading the clock).

- `vqvae`: encode/decode speed of each VQ-VAE level (real-time factor, tokens per second).
- `attention`: forward+backward time and memory of one attention layer per sparse type, with
  each type's ratio to dense (`jukelite.prior.attention_bench.bench_attention`).
- `prior`: training throughput (forward + backward + AdamW step) of a randomly initialised
  `LevelPrior` of a named shape.
- `sample`: sampling speed of random-weight priors (KV-cached vs naive, prefill) and the
  real-time factor of a full render (`jukelite.sample_bench`).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import torch

from jukelite.bundle import device_name, load_vqvae_level, vqvae_levels
from jukelite.vqvae.config import VQVAEConfig
from jukelite.vqvae.model import LevelVQVAE, count_parameters

BENCHMARKS = ("vqvae", "attention", "prior", "sample")

ATTENTION_DEFAULTS = {"n_ctx": "1024,4096,16384", "width": 256, "heads": 2, "block_ctx": 64}

# Prior shapes: unconditioned (labels false), attn_order 2 (row/column/prev-row), the default
# m_attn 0.25 and m_mlp 1.0. `custom` starts from `tiny`; any size flag overrides any shape.
PRIOR_SHAPES: dict[str, dict[str, int]] = {
    "tiny": dict(width=64, depth=4, heads=2, n_ctx=256, blocks=8, bins=256, batch=4),
    "small": dict(width=512, depth=12, heads=4, n_ctx=2048, blocks=32, bins=2048, batch=1),
}
PRIOR_SHAPES["custom"] = dict(PRIOR_SHAPES["tiny"])
PRIOR_FLAGS = ("width", "depth", "heads", "n_ctx", "blocks", "bins", "batch")

_BENCH_EPILOG = """\
benchmarks:
  vqvae      encode/decode speed of each VQ-VAE level (real-time factor, tokens/s);
             uses --model or --recipe, --seconds (default 5), --batch (one value, default 1)
  attention  forward+backward time and memory of one attention layer (batch 1) per attention
             type, and each sparse type's time and memory as a ratio to dense; uses --n-ctx
             (comma list, default 1024,4096,16384), --width (256), --heads (2), --block-ctx (64)
  prior      training throughput of a randomly initialised LevelPrior (forward + backward +
             AdamW step): tokens/s, seconds/step, parameters; uses --shape (comma list, default
             tiny,small) and --width --depth --heads --n-ctx (one value) --blocks --bins --batch,
             each overriding the shape's value (custom starts from tiny)
    shapes: tiny  width 64, depth 4, heads 2, n_ctx 256, blocks 8, bins 256, batch 4
            small width 512, depth 12, heads 4, n_ctx 2048, blocks 32, bins 2048, batch 1
            (both: attn_order 2, no labels)
  sample     sampling speed of priors with random weights, per level and batch size: tokens/s
             of KV-cached sampling (--tokens per window, default min(n_ctx, 512)) and of naive
             sampling (a full forward pass per token, --naive-tokens, default 4), the speedup,
             and the prefill time of a window's primed part (n_ctx - hop tokens); then the
             real-time factor of a full three-level render of --seconds (default 10) through
             the tiny random bundle (skip with --no-render). Uses --shape (comma list of tiny,
             small, custom; default tiny,small): tiny = the three priors of recipes/tiny with
             their conditioning (levels 2, 1, 0); small and custom = one unconditioned prior
             reported as level "any" (custom starts from tiny's sizes above; --width --depth
             --heads --n-ctx --blocks --bins override small and custom); --batch (comma list,
             default 1,8); --dtype (float32, or bf16 for the prior timings)

--device and --repeats apply to all; options a benchmark does not use are ignored.
"""


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = _BENCH_EPILOG
    parser.add_argument("what", choices=BENCHMARKS, help="what to measure (see below)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs (median reported)")
    parser.add_argument("--device", default="cpu", help="torch device")

    vqvae = parser.add_argument_group("vqvae options")
    source = vqvae.add_mutually_exclusive_group()
    source.add_argument(
        "--model", metavar="BUNDLE", help="measure a trained bundle's VQ-VAE levels"
    )
    source.add_argument(
        "--recipe",
        help="measure the (randomly initialised) model of a recipe; "
        "default: the released Jukebox VQ-VAE shape at 44.1 kHz",
    )
    vqvae.add_argument(
        "--seconds",
        type=float,
        default=None,
        help="audio length (vqvae: per item, default 5; sample: of the render, default 10)",
    )
    vqvae.add_argument(
        "--batch",
        default=None,
        metavar="N[,N...]",
        help="items per call (vqvae: one value, default 1; prior: one value, default from "
        "--shape; sample: comma list, default 1,8)",
    )

    shared = parser.add_argument_group("attention and prior options (prior: default from --shape)")
    shared.add_argument(
        "--n-ctx",
        default=None,
        metavar="N[,N...]",
        help="context length(s); attention: comma list, default "
        f"{ATTENTION_DEFAULTS['n_ctx']}; prior: one value",
    )
    shared.add_argument(
        "--width", type=int, help=f"model width (attention default {ATTENTION_DEFAULTS['width']})"
    )
    shared.add_argument(
        "--heads",
        type=int,
        help=f"attention heads (attention default {ATTENTION_DEFAULTS['heads']})",
    )

    attention = parser.add_argument_group("attention options")
    attention.add_argument(
        "--block-ctx",
        type=int,
        default=ATTENTION_DEFAULTS["block_ctx"],
        help="tokens per block row; blocks = n_ctx // block_ctx (default %(default)s)",
    )

    prior = parser.add_argument_group("prior options")
    prior.add_argument(
        "--shape",
        default="tiny,small",
        help=f"comma list of {', '.join(PRIOR_SHAPES)}; each is one entry (default %(default)s)",
    )
    prior.add_argument("--depth", type=int, help="Transformer blocks")
    prior.add_argument("--blocks", type=int, help="attention block rows (must divide n_ctx)")
    prior.add_argument("--bins", type=int, help="codebook size (vocabulary)")

    sample = parser.add_argument_group("sample options (also --shape, --batch, --seconds)")
    sample.add_argument(
        "--tokens",
        type=int,
        help="KV-cached tokens timed per window (default min(n_ctx, 512))",
    )
    sample.add_argument(
        "--naive-tokens", type=int, help="tokens timed with a full pass each (default 4)"
    )
    sample.add_argument(
        "--render",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="time a full render of the tiny random bundle (default: on)",
    )
    sample.add_argument(
        "--dtype",
        choices=("float32", "bf16"),
        default="float32",
        help="weights of the timed priors (the render stays float32; default %(default)s)",
    )
    sample.add_argument(
        "--compile",
        action="store_true",
        help="also time the torch.compile'd static step (compiled tok/s; the one-off compile "
        "is left out) and render with it",
    )


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
    batch = 1 if args.batch is None else args.batch
    source, models = _levels(args, device)
    results: dict[str, Any] = {
        "benchmark": "vqvae",
        "source": source,
        **_environment(device),
        "seconds_per_item": args.seconds,
        "batch": batch,
        "levels": {},
    }
    for model in models:
        rate, hop, channels = model.config.sample_rate, model.hop_length, model.config.channels
        samples = int(args.seconds * rate) // hop * hop
        audio = torch.randn(batch, channels, samples, device=device).clamp(-1, 1) * 0.3
        codes = model.encode(audio)
        audio_seconds = batch * samples / rate
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


def _environment(device: torch.device) -> dict[str, Any]:
    return {
        "device": str(device),
        "device_name": device_name(device),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }


# ---------------------------------------------------------------------- attention
MEMORY_NOTES = {
    "cuda": "peak_bytes: torch.cuda.max_memory_allocated during forward+backward minus what was "
    "allocated before (inputs and weights): the true peak of activations, workspace and "
    "gradients",
    "cpu": "peak_bytes: bytes of the distinct storages autograd saves for backward (a "
    "saved_tensors_hooks tally), since torch keeps no allocator statistics on CPU: the activation "
    "memory a layer holds between forward and backward. It would show an n x n score matrix if "
    "one were kept, but not the transient workspace inside a fused kernel",
}


def _n_ctx_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"--n-ctx takes comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise ValueError(f"--n-ctx takes positive integers, got {text!r}")
    return values


def bench_attention_cli(args: argparse.Namespace) -> dict[str, Any]:
    """Forward+backward of one attention layer per type and n_ctx, with ratios to dense."""
    from jukelite.prior.attention_bench import bench_attention

    def pick(name: str) -> Any:
        value = getattr(args, name, None)
        return ATTENTION_DEFAULTS[name] if value is None else value

    device = torch.device(args.device)
    torch.manual_seed(0)
    raw = bench_attention(
        _n_ctx_list(str(pick("n_ctx"))),
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
        **_environment(device),
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


# ---------------------------------------------------------------------- prior
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
            values = _n_ctx_list(str(value))
            if len(values) != 1:
                raise ValueError(f"bench prior takes one --n-ctx value, got {value!r}")
            value = values[0]
        sizes[flag] = int(value)
    return sizes


def _prior_config(sizes: dict[str, int]):
    from jukelite.prior.model import PriorConfig

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
    from jukelite.prior.model import LevelPrior

    device = torch.device(args.device)
    names = [n.strip() for n in str(args.shape).split(",") if n.strip()]
    if not names:
        raise ValueError("--shape is empty")
    results: dict[str, Any] = {
        "benchmark": "prior",
        **_environment(device),
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
        config = _prior_config(sizes)
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
        seconds = _time(step, device, args.repeats)
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
    if args.what == "sample":
        from jukelite.sample_bench import bench_sample

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
        return bench_vqvae(args)
    if args.what == "attention":
        return bench_attention_cli(args)
    if args.what == "prior":
        return bench_prior(args)
    raise ValueError(f"unknown benchmark {args.what!r}; choose from {BENCHMARKS}")
