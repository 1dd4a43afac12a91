"""`jukelite bench WHAT`: the arguments of every benchmark, and the command."""

from __future__ import annotations

import argparse

from jukelite.bench.shapes import ATTENTION_DEFAULTS, BENCHMARKS, PRIOR_SHAPES
from jukelite.cli.common import UsageError, add_verbosity, parse_device, print_json

EPILOG = """\
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
             and the prefill time of a window's primed part (n_ctx - hop tokens); parallel
             (masked) upsamplers report codes/s of one window in the bundle's decoding steps,
             and each autoregressive tiny upsampler is timed next to a parallel twin of its
             size; every bundle level reports its real-time factor (RTF). Then the RTF of a
             full three-level render of --seconds (default 10) through the tiny random
             bundle and through its parallel twin (skip with --no-render). With --model, the
             priors and the render are that bundle's. Uses --shape (comma list of tiny,
             small, custom; default tiny,small): tiny = the three priors of recipes/tiny with
             their conditioning (levels 2, 1, 0); small and custom = one unconditioned prior
             reported as level "any" (custom starts from tiny's sizes above; --width --depth
             --heads --n-ctx --blocks --bins override small and custom); --batch (comma list,
             default 1,8); --dtype (float32, or bf16 for the prior timings)
  gpu        the GPU check, one table (Markdown, on stderr): SDPA and xformers attention against
             float64; sampling tokens/s of a 1b_lyrics-shaped top prior and a level-1 upsampler
             (random weights, bf16 on CUDA) at batch 1 and 8, with and without CUDA graphs; 3
             sharded (FSDP) training steps of a 1B-shaped prior in one process, with peak memory;
             the Jukebox VQ-VAE's real-time factor at 44.1 kHz. --tiny shrinks every shape (how
             it runs on a CPU); scripts/gpu_check.sh runs it on a GPU

--device and --repeats apply to all; options a benchmark does not use are ignored.
"""


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    parser.add_argument("what", choices=BENCHMARKS, help="what to measure (see below)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs (median reported)")
    parser.add_argument("--device", default="cpu", help="torch device")
    add_verbosity(parser, "no notes (the table on stderr stays)")

    vqvae = parser.add_argument_group("vqvae options")
    source = vqvae.add_mutually_exclusive_group()
    source.add_argument(
        "--model", metavar="BUNDLE",
        help="measure a trained bundle: its VQ-VAE levels (vqvae), or its priors, each "
        "decoded as the bundle says, and its render (sample)"
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


    gpu = parser.add_argument_group("gpu options")
    gpu.add_argument("--tiny", action="store_true",
                     help="tiny shapes of the same kinds: the check in seconds on a CPU")

    juke = parser.add_argument_group("jukebox-import options")
    juke.add_argument("--preset", choices=("1b_lyrics", "5b", "5b_lyrics"), default="1b_lyrics",
                      help="model set whose top prior is written and imported (default "
                      "%(default)s; 5b sizes need 20+ GB of memory and disk)")
    juke.add_argument("--import-dtypes", default="float32,float16", metavar="D,...",
                      help="bundle dtypes to import to (default %(default)s)")
    juke.add_argument("--sample-seconds", type=float, default=0.0, metavar="S",
                      help="also sample S seconds of the top level from the imported bundle")
    juke.add_argument("--total-seconds", type=float, default=60.0, metavar="S",
                      help="song length the sampled seconds belong to (default %(default)s)")
    juke.add_argument("--hps", metavar="FILE",
                      help="hparams overrides of the preset (e.g. smaller shapes for a check)")
    juke.add_argument("--workdir", metavar="DIR",
                      help="where checkpoints and bundles go (default: a new temp folder; "
                      "about 3x the checkpoint size is written)")


def cmd_bench(args: argparse.Namespace) -> int:
    from jukelite.bench import run_benchmark

    args.device = str(parse_device(args.device))
    try:
        results = run_benchmark(args)
    except ValueError as exc:  # a flag value the benchmark cannot use
        raise UsageError(str(exc)) from exc
    print_json(results)
    return 0
