"""`jukelite bench sample`: how fast priors sample, and how long a full render takes.

Sampling speed does not depend on what the weights learned, so every prior here has random
weights: `tiny` is the three priors of `recipes/tiny` (built as a random bundle, with their real
conditioning), `small` and `custom` are unconditioned priors of a `bench prior` shape. Per prior
and batch size it times

- cached: `sample_window` from the window's fixed prefix (empty, or the lyric window of a
  single-stack lyrics prior): one prefill, then one KV-cached step per token;
- naive: a full forward pass over the whole window for every new token (what the KV cache saves);
- prefill: one chunked pass over the primed part of a window (`n_ctx - hop` tokens), the price
  every window after the first pays before its first new token.

A parallel (masked) upsampler is timed instead as `parallel`: one window's new codes (all but
its overlap with the previous window) revealed in the bundle's decoding steps. Each autoregressive
upsampler of the tiny bundle is also timed next to a parallel twin of the same size, so the two
decodings compare at equal model cost; every level reports its real-time factor.

The render times `Jukebox.generate` top-down through the tiny random bundle and through its
parallel twin (upsamplers of `recipes/tiny/prior_*_parallel.yaml`), decode included; with
`--model`, the priors and the render are that bundle's, each level decoded as the bundle says.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from jukelite.bench.prior import prior_config, prior_shape
from jukelite.bench.shapes import SAMPLE_DEFAULTS, SAMPLE_SHAPES, positive_ints
from jukelite.bench.timing import environment, median_time
from jukelite.bundle import DEFAULT_STEPS, Bundle
from jukelite.inference.options import SamplingSettings
from jukelite.inference.parallel import sample_window_parallel
from jukelite.inference.schedule import HOP_FRACTION_TOP, HOP_FRACTION_UPSAMPLER
from jukelite.inference.window import sample_from_logits, sample_window
from jukelite.prior.model import Conditioning, LevelPrior, SongConditions, WindowInputs
from jukelite.vqvae.model import count_parameters

DTYPES = {"float32": torch.float32, "bf16": torch.bfloat16}
SETTINGS = SamplingSettings(temperature=1.0)  # no filters: their cost is not the prior's
RENDER_LYRICS = "la la la, a random song for a random model, la la la"

MEASURES = (
    "tokens_per_second counts every batch item (batch * tokens / seconds). cached: median wall "
    "time of sample_window generating `cached_tokens` positions from the window's start (after "
    "its fixed prefix: none, or the lyric window of a single-stack lyrics prior), caches "
    "allocated inside; naive: one full forward pass over the whole window (seq_len tokens) per "
    "new token, for `naive_tokens` tokens; speedup = cached / naive tokens per second; prefill: "
    "one logits_cached pass over the primed part of a later window, seq_len - hop tokens with "
    "hop = n_ctx * hop_fraction (1/8 for a top prior, 1/2 for an upsampler; `any` is timed as a "
    "top prior). Medians over repeats after a warm-up run. render: one run (no warm-up, after "
    "the timings above) of Jukebox.generate on the tiny random bundle in float32, n_samples 1; "
    "a level's seconds run from the last progress report of the level above (or the start) to "
    "its own last one, so they include loading the prior and conditioning; decode_seconds is "
    "the rest (the VQ-VAE decoder); realtime_factor = wall_seconds / audio_seconds. parallel "
    "(masked upsamplers, and `parallel_twin`: a randomly initialised parallel decoder of an "
    "autoregressive upsampler's size): median wall time of sample_window_parallel completing "
    "one window whose overlap with the previous one (n_ctx - hop codes) is known, in `steps` "
    "passes; codes_per_second counts the new codes of every batch item. A level's "
    "realtime_factor = (its codes per second of audio) / codes_per_second: sampling seconds "
    "per second of audio, per sample, window overheads aside"
)


# ---------------------------------------------------------------------- parsing
def batch_list(text: str | None) -> list[int]:
    """`--batch` as a list of positive sizes (`bench sample` compares several)."""
    return positive_ints(SAMPLE_DEFAULTS["batch"] if text is None else str(text), "--batch")


def _option(args: argparse.Namespace, name: str) -> Any:
    value = getattr(args, name, None)
    return SAMPLE_DEFAULTS[name] if value is None else value


def _shape_names(args: argparse.Namespace) -> list[str]:
    names = [n.strip() for n in str(getattr(args, "shape", None) or "").split(",") if n.strip()]
    unknown = [n for n in names if n not in SAMPLE_SHAPES]
    if unknown:
        raise ValueError(
            f"unknown sample shape(s) {', '.join(unknown)}; choose from {', '.join(SAMPLE_SHAPES)}"
        )
    return names


# ---------------------------------------------------------------------- priors
@dataclass
class PriorCase:
    """One prior to time, and the window overlap it samples with."""

    level: str  # the bundle level, or "any" for a size-only shape
    prior: LevelPrior
    hop_fraction: float
    source: str


def tiny_bundle(directory: str | Path, parallel: bool = False) -> Path:
    """The tiny recipes' VQ-VAE and priors with random weights, written to `directory` (with
    `parallel`, the upsamplers' parallel twins)."""
    from jukelite.bench.random_bundle import build_random_bundle, tiny_recipes

    vqvae_recipe, prior_recipes = tiny_recipes(parallel)
    return build_random_bundle(Path(directory) / "tiny", vqvae_recipe, prior_recipes)


def prior_cases(
    name: str, args: argparse.Namespace, bundle: Path | None, device: torch.device
) -> Iterator[PriorCase]:
    """The priors of shape `name`, one at a time, so only one sits on the device ("tiny" and
    "model": every prior of `bundle`, the tiny random one or --model's)."""
    if name in ("tiny", "model"):
        from jukelite.bundle import load_prior_level, read_manifest

        if bundle is None:
            raise ValueError(f"the {name} shape needs a bundle")
        levels = sorted((int(level) for level in read_manifest(bundle)["priors"]), reverse=True)
        for level in levels:
            fraction = HOP_FRACTION_TOP if level == levels[0] else HOP_FRACTION_UPSAMPLER
            prior = load_prior_level(bundle, level, device)
            source = f"recipes/tiny level {level}" if name == "tiny" else f"{bundle} level {level}"
            yield PriorCase(str(level), prior, fraction, source)
            del prior  # before the next level loads
        return
    sizes = prior_shape(name, argparse.Namespace(**{**vars(args), "batch": None}))
    torch.manual_seed(0)
    prior = LevelPrior(prior_config(sizes)).to(device).eval()
    yield PriorCase("any", prior, HOP_FRACTION_TOP, f"bench prior shape {name}")


def conditioning_kinds(prior: LevelPrior) -> list[str]:
    c = prior.config
    kinds = ["labels"] if c.labels else []
    kinds += ["timing"] if c.timing else []
    kinds += ["upper codes"] if c.upsampler else []
    kinds += [f"lyrics {c.lyrics}"] if c.lyrics != "none" else []
    return kinds


def random_window_inputs(
    prior: LevelPrior, batch: int, generator: torch.Generator
) -> WindowInputs:
    """The first window of a random song inside the prior's timing range (random labels,
    lyrics and upper codes), conditioned as sampling conditions it."""
    c = prior.config

    def randint(high: int, size: int, low: int = 0) -> list[int]:
        return torch.randint(low, max(high, low + 1), (size,), generator=generator).tolist()

    seconds = max(c.min_duration, min(10.0, c.max_duration / 2))  # inside [min, max)
    song = SongConditions(
        total_samples=int(seconds * c.sample_rate),
        artist_id=randint(c.artist_bins, 1)[0],
        genre_ids=tuple(randint(c.genre_bins, c.max_bow_genre_size)),
        lyric_tokens=tuple(randint(c.n_vocab, 4 * c.n_tokens, low=1)),  # 0 is padding
    )
    upper = None
    if c.upsampler:
        upper = torch.randint(0, c.bins, (batch, c.n_ctx // prior.upsample_ratio),
                              generator=generator)
    return prior.window_inputs(song, 1, 0, batch, upper)


def naive_window(
    prior: LevelPrior,
    cond: Conditioning,
    prefix: Tensor,
    new_tokens: int,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Sample `new_tokens` after `prefix` without a cache: one full pass over the whole window
    per token, the logits read at the current position (the reference the cache must match)."""
    c = prior.config
    batch, known = prefix.shape
    tokens = torch.zeros(batch, c.seq_len, dtype=torch.long, device=prefix.device)
    tokens[:, :known] = prefix
    music_from = c.n_vocab if c.lyrics == "single" else 0
    for position in range(known, known + new_tokens):
        logits = prior.logits(tokens, cond)[:, position].float()
        logits[:, :music_from] = float("-inf")
        tokens[:, position] = sample_from_logits(logits, SETTINGS, generator).to(tokens.device)
    return tokens[:, : known + new_tokens]


def prefill(prior: LevelPrior, tokens: Tensor, length: int, cond: Conditioning) -> Tensor:
    """One window's chunked prefill of its first `length` tokens into fresh caches."""
    caches = prior.init_caches(tokens.shape[0])
    return prior.logits_cached(tokens, 0, length, caches, cond)


def _rate(tokens: int, batch: int, seconds: float) -> float:
    return batch * tokens / seconds


def time_sampling(
    prior: LevelPrior,
    batch: int,
    tokens: int,
    naive_tokens: int,
    hop_fraction: float,
    device: torch.device,
    repeats: int,
    compiled: bool = False,
) -> dict[str, Any]:
    """Cached, naive and prefill timings of one prior at one batch size (and the compiled
    static step's, when asked: its one-off compile falls in `_time`'s warm-up run)."""
    c = prior.config
    generator = torch.Generator().manual_seed(batch)
    cond, _, _, prefix = random_window_inputs(prior, batch, generator)
    known = prefix.shape[1]
    cached_tokens = min(tokens, c.n_ctx)
    naive_tokens = min(naive_tokens, c.n_ctx)
    cached_s = median_time(
        partial(sample_window, prior, cond, prefix, SETTINGS, generator,
                length=known + cached_tokens),
        device, repeats,
    )
    naive_s = median_time(
        partial(naive_window, prior, cond, prefix, naive_tokens, generator), device, repeats
    )
    hop = max(1, int(c.n_ctx * hop_fraction))
    primed = c.seq_len - hop  # the lyric prefix (if any) and the overlap with the last window
    window = torch.randint(0, c.bins, (batch, c.seq_len), generator=generator).to(device)
    window[:, :known] = prefix
    prefill_s = median_time(partial(prefill, prior, window, primed, cond), device, repeats)
    cached_tps = _rate(cached_tokens, batch, cached_s)
    naive_tps = _rate(naive_tokens, batch, naive_s)
    extra = {}
    if compiled:
        compiled_s = median_time(
            partial(sample_window, prior, cond, prefix, SETTINGS, generator,
                    length=known + cached_tokens, step="compiled"),
            device, repeats,
        )
        extra["compiled_tokens_per_second"] = _rate(cached_tokens, batch, compiled_s)
    return {
        **extra,
        "batch": batch,
        "cached_tokens": cached_tokens,
        "cached_seconds": cached_s,
        "cached_tokens_per_second": cached_tps,
        "naive_tokens": naive_tokens,
        "naive_seconds": naive_s,
        "naive_tokens_per_second": naive_tps,
        "speedup": cached_tps / naive_tps,
        "prefill_tokens": primed,
        "prefill_seconds": prefill_s,
        "prefill_tokens_per_second": _rate(primed, batch, prefill_s),
    }


@torch.no_grad()
def time_parallel(
    prior: LevelPrior, batch: int, steps: int, hop_fraction: float, device: torch.device,
    repeats: int,
) -> dict[str, Any]:
    """Decoding time of one window of a parallel prior after its overlap with the last one."""
    c = prior.config
    generator = torch.Generator().manual_seed(batch)
    cond = random_window_inputs(prior, batch, generator).cond
    new = max(1, int(c.n_ctx * hop_fraction))
    known = torch.randint(0, c.bins, (batch, c.n_ctx - new), generator=generator).to(device)
    seconds = median_time(
        partial(sample_window_parallel, prior, cond, known, steps, SETTINGS, generator),
        device, repeats)
    return {
        "batch": batch,
        "steps": steps,
        "parallel_codes": new,
        "parallel_seconds": seconds,
        "parallel_codes_per_second": _rate(new, batch, seconds),
    }


def parallel_twin(prior: LevelPrior, device: torch.device, dtype: torch.dtype) -> LevelPrior:
    """A randomly initialised parallel decoder of an autoregressive upsampler's size."""
    torch.manual_seed(0)
    config = dataclasses.replace(prior.config, decoding="parallel")
    return LevelPrior(config).to(device=device, dtype=dtype).eval()


def _with_realtime(timing: dict[str, Any], audio_codes_per_second: float | None) -> dict:
    """`timing` plus its real-time factor, when the level's code rate is known."""
    if audio_codes_per_second is None:
        return timing
    key = ("parallel_codes_per_second" if "parallel_codes_per_second" in timing
           else "cached_tokens_per_second")
    return {**timing, "realtime_factor": audio_codes_per_second / timing[key]}


def time_level(
    case: PriorCase, args: argparse.Namespace, batches: list[int], device: torch.device,
    dtype: torch.dtype, steps: dict[int, int], code_rates: dict[str, float],
) -> dict[str, Any]:
    """Every timing of one prior: autoregressive or parallel as it decodes, and for an
    autoregressive upsampler of the tiny bundle its parallel twin's as well."""
    tokens, naive_tokens = int(_option(args, "tokens")), int(_option(args, "naive_tokens"))
    prior, rate = case.prior, code_rates.get(case.level)
    entry: dict[str, Any] = describe_prior(case)
    entry["audio_codes_per_second"] = rate
    if prior.config.parallel:
        n = steps.get(prior.config.level, DEFAULT_STEPS)
        entry["batches"] = {str(b): _with_realtime(
            time_parallel(prior, b, n, case.hop_fraction, device, args.repeats), rate)
            for b in batches}
        return entry
    compiled = bool(getattr(args, "compile", False))
    entry["batches"] = {str(b): _with_realtime(
        time_sampling(prior, b, tokens, naive_tokens, case.hop_fraction, device, args.repeats,
                      compiled), rate) for b in batches}
    if prior.config.upsampler and case.source.startswith("recipes/tiny"):
        twin = parallel_twin(prior, device, dtype)
        entry["parallel_twin"] = {str(b): _with_realtime(
            time_parallel(twin, b, DEFAULT_STEPS, case.hop_fraction, device, args.repeats),
            rate) for b in batches}
    return entry


def describe_prior(case: PriorCase) -> dict[str, Any]:
    c = case.prior.config
    return {
        "decoding": c.decoding,
        "source": case.source,
        "n_ctx": c.n_ctx,
        "seq_len": c.seq_len,
        "width": c.width,
        "depth": c.depth,
        "heads": c.heads,
        "blocks": c.blocks,
        "bins": c.bins,
        "attn_order": c.attn_order,
        "conditioning": conditioning_kinds(case.prior),
        "parameters": count_parameters(case.prior),
        "hop_fraction": case.hop_fraction,
    }


# ---------------------------------------------------------------------- render
def time_render(
    bundle: str | Path,
    seconds: float,
    device: torch.device,
    artist: str,
    genre: str,
    lyrics: str = RENDER_LYRICS,
    compile: bool = False,
    name: str = "tiny random bundle (recipes/tiny)",
) -> dict[str, Any]:
    """Wall time of one `generate` through every level of `bundle`, split per level.

    Levels run top-down; the progress callback only supplies timestamps (a level ends at its
    last report), and the token counts come from the song's codes, so neither depends on how
    often `generate` reports."""
    import jukelite

    jb = jukelite.load(bundle, device=device, compile=compile)
    last_report: dict[int, float] = {}  # insertion order = the order levels ran in

    def progress(level: int, *_: int) -> None:
        last_report[level] = time.perf_counter()

    start = time.perf_counter()
    song = jb.generate(artist=artist, genre=genre, lyrics=lyrics, seconds=seconds,
                       n_samples=1, seed=0, progress=progress)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    wall = time.perf_counter() - start
    audio_seconds = song.audio.shape[-1] / song.sample_rate
    levels: dict[str, dict[str, Any]] = {}
    previous = start
    for level, end in last_report.items():
        tokens = int(song.codes[level].numel())  # every sample's codes of the level
        levels[str(level)] = {
            "seconds": end - previous,
            "tokens": tokens,
            "tokens_per_second": tokens / (end - previous),
        }
        previous = end
    return {
        "bundle": name,
        "decoding": {str(level): c.decoding
                     for level, c in Bundle.open(bundle).prior_configs.items()},
        "artist": artist,
        "genre": genre,
        "n_samples": 1,
        "seconds_requested": seconds,
        "audio_seconds": audio_seconds,
        "wall_seconds": wall,
        "realtime_factor": wall / audio_seconds,
        "step": jb.step,
        "levels": levels,
        "decode_seconds": start + wall - previous,
    }


# ---------------------------------------------------------------------- benchmark
@torch.no_grad()
def bench_sample(args: argparse.Namespace) -> dict[str, Any]:
    """Cached vs naive sampling speed and prefill per prior and batch, then a timed render."""
    from jukelite.data.synth import ARTISTS, GENRES

    device = torch.device(args.device)
    dtype_name = getattr(args, "dtype", None) or "float32"
    dtype = DTYPES[dtype_name]
    model = getattr(args, "model", None)
    names = ["model"] if model else _shape_names(args)
    batches = batch_list(getattr(args, "batch", None))
    tokens, naive_tokens = int(_option(args, "tokens")), int(_option(args, "naive_tokens"))
    if tokens < 1 or naive_tokens < 1:
        raise ValueError(f"--tokens and --naive-tokens must be >= 1, got {tokens}, {naive_tokens}")
    render = getattr(args, "render", True)
    compiled = bool(getattr(args, "compile", False))
    seconds = float(_option(args, "seconds"))
    if render and not seconds > 0:
        raise ValueError(f"--seconds must be > 0, got {seconds}")
    results: dict[str, Any] = {
        "benchmark": "sample",
        **environment(device),
        "dtype": dtype_name,
        "repeats": args.repeats,
        "batches": batches,
        "tokens": tokens,
        "naive_tokens": naive_tokens,
        "measures": MEASURES,
        "shapes": {},
        "render": None,
        "render_parallel": None,
    }
    with tempfile.TemporaryDirectory(prefix="jukelite-bench-") as tmp:
        bundle = Path(model) if model else (
            tiny_bundle(tmp) if "tiny" in names or render else None)
        info = Bundle.open(bundle) if bundle is not None else None
        steps = info.default_steps if info is not None else {}
        code_rates = {} if info is None else {
            str(level): info.sample_rate / hop for level, hop in info.hop_lengths.items()}
        for name in names:
            levels: dict[str, Any] = {}
            for case in prior_cases(name, args, bundle, device):
                case.prior.to(dtype)
                rates = code_rates if name in ("tiny", "model") else {}
                levels[case.level] = time_level(case, args, batches, device, dtype, steps, rates)
                del case  # the generator's next prior loads after this one is released
            results["shapes"][name] = {"levels": levels}
        if render and model:
            results["render"] = time_render(bundle, seconds, device, *_labels(info),
                                            compile=compiled, name=str(model))
        elif render:
            results["render"] = time_render(bundle, seconds, device, ARTISTS[0], GENRES[0],
                                            compile=compiled)
            parallel = tiny_bundle(Path(tmp) / "parallel", parallel=True)
            results["render_parallel"] = time_render(
                parallel, seconds, device, ARTISTS[0], GENRES[0], compile=compiled,
                name="tiny random bundle, parallel upsamplers (recipes/tiny/*_parallel)")
    sample_table(results)
    return results


def _labels(bundle: Bundle) -> tuple[str, str]:
    """An artist and a genre the bundle knows, for its render."""
    vocabulary = bundle.vocabulary
    if vocabulary is None:
        return "unknown", "unknown"
    artists, genres = vocabulary.known("artist"), vocabulary.known("genre")
    return (artists[0] if artists else "unknown"), (genres[0] if genres else "unknown")


def _rtf(r: dict[str, Any]) -> str:
    value = r.get("realtime_factor")
    return "-" if value is None else f"{value:.2f}"


def sample_table(results: dict[str, Any]) -> None:
    """The readable summary, on stderr so that stdout stays one JSON object."""

    def out(line: str) -> None:
        print(line, file=sys.stderr)

    out(
        f"sampling on {results['device']} ({results['threads']} threads), {results['dtype']}; "
        "tok/s counts every batch item; prefill = the primed part of a later window; "
        "RTF = sampling seconds per second of audio"
    )
    out(
        f"{'shape':>7} {'level':>5} {'batch':>5} {'n_ctx':>6} {'decoding':>14} "
        f"{'codes/s':>10} {'RTF':>7} {'naive tok/s':>11} {'speedup':>8} "
        f"{'prefill ms (tokens)':>20}"
    )
    for name, shape in results["shapes"].items():
        for level, entry in shape["levels"].items():
            head = f"{name:>7} {level:>5}"
            for batch, r in entry["batches"].items():
                if "parallel_codes_per_second" in r:
                    out(f"{head} {batch:>5} {entry['n_ctx']:>6} "
                        f"{'parallel/' + str(r['steps']):>14} "
                        f"{r['parallel_codes_per_second']:>10.1f} {_rtf(r):>7}")
                    continue
                prefill_ms = f"{r['prefill_seconds'] * 1e3:.1f} ({r['prefill_tokens']})"
                compiled = r.get("compiled_tokens_per_second")
                out(
                    f"{head} {batch:>5} {entry['n_ctx']:>6} {'autoregressive':>14} "
                    f"{r['cached_tokens_per_second']:>10.1f} {_rtf(r):>7} "
                    f"{r['naive_tokens_per_second']:>11.2f} "
                    f"{r['speedup']:>7.1f}x {prefill_ms:>20}"
                    + ("" if compiled is None else f"  compiled {compiled:.1f} tok/s")
                )
            for batch, r in entry.get("parallel_twin", {}).items():
                out(f"{head} {batch:>5} {entry['n_ctx']:>6} "
                    f"{'twin par./' + str(r['steps']):>14} "
                    f"{r['parallel_codes_per_second']:>10.1f} {_rtf(r):>7}")
    for key in ("render", "render_parallel"):
        render = results.get(key)
        if render is None:
            continue
        parts = [
            f"level {level} {r['seconds']:.1f} s ({r['tokens_per_second']:.0f} tok/s)"
            for level, r in render["levels"].items()
        ]
        out(
            f"{key.replace('_', ' ')}: {render['audio_seconds']:.2f} s of audio in "
            f"{render['wall_seconds']:.1f} s, RTF {render['realtime_factor']:.2f}; "
            f"{', '.join(parts)}, decode {render['decode_seconds']:.2f} s"
        )
