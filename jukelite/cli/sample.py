"""`jukelite sample`: generate, continue (--prime), re-upsample (--upsample) or resume a song.

A thin layer over `jukelite.Jukebox`: it turns options into one API call, draws a progress
bar per level (codes per second and ETA) and reports what it wrote.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
from pathlib import Path
from typing import Any

from jukelite.cli.common import (
    UsageError,
    add_song_labels,
    add_verbosity,
    parse_device,
    read_lyrics,
)
from jukelite.logs import get_logger

log = get_logger(__name__)

EPILOG = """\
outputs (OUTDIR):
  level_L/sample_i.wav, .png   each sampled level rendered by its own decoder, with a
                               spectrogram; the top level is written first, as a preview
  codes.safetensors            codes of every level, saved after every window
  song.json                    every setting, seed, label, timing and package version
  alignment/                   with --alignment: alignment.json, sample_i.lrc, sample_i.png

examples:
  jukelite sample --model models/tiny --artist "Mira Vale" --genre ambient \\
      --lyrics-file song.txt --seconds 20 -o out/
  jukelite sample --model models/tiny --artist "Mira Vale" --genre ambient --levels top -o out/
  jukelite sample --model models/tiny --resume out/ --levels all     # then render the rest
  jukelite sample --model models/tiny --prime my_song.wav --prime-seconds 4 --seconds 12 \\
      --artist "Mira Vale" --genre ambient -o continued/
  jukelite sample --model models/tiny --upsample out/codes.safetensors --seed 7 -o again/
"""


def add_sample_arguments(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = EPILOG
    p.add_argument("--model", metavar="BUNDLE",
                   help="model bundle directory (default: the bundled demo model)")
    add_song_labels(p)
    p.add_argument("--seconds", type=float, help="song length in seconds (default 8)")
    p.add_argument("--total-seconds", type=float, metavar="S",
                   help="sample the first --seconds of a song this long: its timing and lyric "
                   "windows condition the priors (Jukebox's total_sample_length_in_seconds; a "
                   "top prior's timing range bounds it; default --seconds)")
    p.add_argument("--n-samples", type=int, default=1, help="songs to sample (default 1)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--temperature", default=None, metavar="T | L=T,...",
                   help="sampling temperature, one value or per level, e.g. 2=0.98,1=0.99,0=0.99 "
                   "(default: the model's own, shown by `jukelite info`, else 0.99)")
    p.add_argument("--guidance", default=None, metavar="S | L=S,...",
                   help="classifier-free guidance scale, one value or per level (1 = none, the "
                   "usual default; 0 = unconditioned; 2-4 push towards the artist, genre and "
                   "lyrics); "
                   "priors trained with train.cond_dropout only; default: the model's own)")
    p.add_argument("--steps", default=None, metavar="N | L=N,...",
                   help="decoding steps per window of parallel upsamplers, one value or per "
                   "level, e.g. 0=8,1=12 (fewer: faster, coarser; default: the model's own, "
                   "shown by `jukelite info`)")
    p.add_argument("--top-k", type=int, default=0, help="keep the k most likely codes (0 = off)")
    p.add_argument("--top-p", type=float, default=0.0, help="nucleus sampling mass (0 = off)")
    p.add_argument("--levels", metavar="top|all|L",
                   help="sample down to this level: 'top' for a quick preview (default all; "
                   "with --resume, what the run asked for)")
    p.add_argument("--max-batch-size", type=int, default=None,
                   help="samples drawn at once; more are drawn in chunks (default all at once)")
    p.add_argument("--prime", metavar="AUDIO", help="continue this song (encoded at every level)")
    p.add_argument("--prime-seconds", type=float,
                   help="how much of --prime to keep (default: all of it)")
    p.add_argument("--upsample", metavar="CODES",
                   help="keep the top level of a codes file and sample the levels below again")
    p.add_argument("--alignment", action="store_true",
                   help="write lyric timings (alignment.json, .lrc, attention picture)")
    p.add_argument("-o", "--output", metavar="OUTDIR", help="output directory")
    p.add_argument("--resume", metavar="OUTDIR", help="continue a stopped run in OUTDIR")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing run in OUTDIR (its WAVs, pictures, codes, song.json "
                   "and alignment/ are removed first; other files are kept)")
    p.add_argument("--device", default="cpu", help="torch device (cpu, cuda, cuda:1, ...)")
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32",
                   help="precision of the priors while sampling (bfloat16 is for GPUs)")
    p.add_argument("--compile", action="store_true",
                   help="run each one-token step under torch.compile (a one-off compile of "
                   "tens of seconds per level, then faster steps)")
    p.add_argument("--cuda-graphs", action="store_true",
                   help="CUDA only: record the one-token step as a CUDA graph once per window "
                   "and replay it for every token (one launch instead of one per kernel; "
                   "combines with --compile)")
    add_verbosity(p)


def _per_level(text: str, flag: str, example: str, valid, rule: str
               ) -> float | dict[int, float]:
    """One number, or LEVEL=VALUE pairs, each passing `valid` (`rule` says what that is)."""
    try:
        if "=" not in text:
            parsed: float | dict[int, float] = float(text)
        else:
            pairs = (part.split("=") for part in text.split(","))
            parsed = {int(level): float(value) for level, value in pairs}
    except ValueError:
        raise UsageError(f"{flag} must be a number or LEVEL=VALUE pairs like {example}; got "
                         f"{text!r}") from None
    values = parsed.values() if isinstance(parsed, dict) else [parsed]
    bad = [value for value in values if not (math.isfinite(value) and valid(value))]
    if bad:
        raise UsageError(f"{flag} {text}: {rule}, got {bad[0]}")
    return parsed


def parse_temperature(text: str) -> float | dict[int, float]:
    """`0.99` -> 0.99; `2=0.98,1=0.99` -> {2: 0.98, 1: 0.99}. Each value must be finite and
    > 0 (`inf` and `nan` parse as floats but would sample noise or fail midway)."""
    return _per_level(text, "--temperature", "2=0.98,1=0.99", lambda v: v > 0,
                      "a temperature must be a finite number > 0")


def parse_guidance(text: str) -> float | dict[int, float]:
    """`3` -> 3.0; `2=3,1=1.5` -> {2: 3.0, 1: 1.5}; finite and >= 0."""
    return _per_level(text, "--guidance", "2=3,1=1.5", lambda v: v >= 0,
                      "a guidance scale must be a finite number >= 0")


def parse_steps(text: str) -> int | dict[int, int]:
    """`8` -> 8; `0=8,1=12` -> {0: 8, 1: 12}; whole numbers >= 1."""
    parsed = _per_level(text, "--steps", "0=8,1=12", lambda v: v >= 1 and float(v).is_integer(),
                        "decoding steps must be a whole number >= 1")
    if isinstance(parsed, dict):
        return {level: int(value) for level, value in parsed.items()}
    return int(parsed)


class LevelBars:
    """One tqdm bar per level, opened when that level starts: codes/s and ETA."""

    def __init__(self, enabled: bool) -> None:
        self.enabled, self.bar, self.level = enabled, None, None

    def __call__(self, level: int, done: int, total: int) -> None:
        if not self.enabled:
            return
        from tqdm.auto import tqdm

        if level != self.level:
            self.close()
            self.level = level
            self.bar = tqdm(total=total, initial=done, desc=f"level {level}", unit="code",
                            dynamic_ncols=True)
        self.bar.update(done - self.bar.n)
        if done >= total:
            self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _check_combinations(args: argparse.Namespace) -> None:
    if args.resume:
        given = [flag for flag, value in (
            ("--artist", args.artist), ("--genre", args.genre), ("--lyrics", args.lyrics),
            ("--lyrics-file", args.lyrics_file), ("--seconds", args.seconds),
            ("--total-seconds", args.total_seconds), ("--guidance", args.guidance),
            ("--steps", args.steps),
            ("--prime", args.prime), ("--upsample", args.upsample), ("-o", args.output),
        ) if value is not None]
        if given:
            raise UsageError(
                f"--resume takes every setting from OUTDIR/song.json; drop {', '.join(given)} "
                "(only --levels, --device, --dtype, --compile, --cuda-graphs and --quiet may "
                "change)"
            )
        return
    if args.output is None:
        raise UsageError("give an output directory with -o OUTDIR (or --resume OUTDIR)")
    if args.prime and args.upsample:
        raise UsageError("--prime and --upsample cannot be combined")
    if args.prime_seconds is not None and not args.prime:
        raise UsageError("--prime-seconds needs --prime AUDIO")
    if args.upsample and args.seconds is not None:
        raise UsageError("--upsample takes the length from the codes; drop --seconds")
    if args.prime and args.seconds is None:
        raise UsageError("--prime needs --seconds: the length of the whole song")
    for flag, value in (("--seconds", args.seconds), ("--total-seconds", args.total_seconds),
                        ("--prime-seconds", args.prime_seconds)):
        if value is not None and not (math.isfinite(value) and value > 0):
            raise UsageError(f"{flag} must be a finite number > 0, got {value}")
    for flag, value, least in (("--n-samples", args.n_samples, 1), ("--seed", args.seed, 0),
                               ("--top-k", args.top_k, 0),
                               ("--max-batch-size", args.max_batch_size, 1)):
        if value is not None and value < least:
            raise UsageError(f"{flag} must be an integer >= {least}, got {value}")
    if not 0.0 <= args.top_p <= 1.0:
        raise UsageError(f"--top-p must be a number in [0, 1] (0 = off), got {args.top_p}")


def _check_output(args: argparse.Namespace) -> None:
    """OUTDIR usable (not a file, writable, room for the WAVs) before the model is loaded; an
    earlier run in it is refused unless --overwrite."""
    from jukelite.fileio import check_output_dir

    if args.resume:
        if not (Path(args.resume) / "song.json").is_file():
            raise UsageError(f"--resume {args.resume}: not a sampling run (it has no song.json)")
        check_output_dir(args.resume, "--resume", overwrite=True)
        return
    check_output_dir(
        args.output, "-o", overwrite=args.overwrite, marker="song.json",
        hint=f"continue it with --resume {args.output} or replace it with --overwrite",
        expected_bytes=_expected_bytes(args),
    )


def _expected_bytes(args: argparse.Namespace) -> int | None:
    """About what a new run writes: a 16-bit WAV per sample and level rendered (pictures and
    codes are small beside them); None when the bundle cannot tell (its own error comes later)."""
    from jukelite.bundle import BundleError, demo_bundle_path, read_manifest

    if args.upsample:
        return None
    try:
        manifest = read_manifest(args.model if args.model is not None else demo_bundle_path())
        rate, channels = int(manifest["sample_rate"]), int(manifest["channels"])
        levels = 1 if args.levels == "top" else len(manifest.get("vqvae", {})) or 1
    except (BundleError, OSError, KeyError, TypeError, ValueError):
        return None
    seconds = 8.0 if args.seconds is None else args.seconds
    return args.n_samples * levels * (math.ceil(seconds * rate) * channels * 2 + 1024)


def _upsample_source(path: Path) -> tuple[dict[int, Any], dict[str, Any]]:
    """Codes to re-upsample and, when the run's song.json lies beside them, its request."""
    from jukelite.inference.codes import load_codes

    codes, _ = load_codes(path)
    song = path.parent / "song.json"
    request = json.loads(song.read_text()).get("request", {}) if song.is_file() else {}
    return codes, request


def cmd_sample(args: argparse.Namespace) -> int:
    import torch

    from jukelite.api import load
    from jukelite.inference.options import check_cuda_graphs

    _check_combinations(args)
    temperature = None if args.temperature is None else parse_temperature(args.temperature)
    device = parse_device(args.device)
    try:
        check_cuda_graphs(args.cuda_graphs, device, "--cuda-graphs")
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    _check_output(args)
    dtype = torch.bfloat16 if args.dtype == "bfloat16" else None
    bars = LevelBars(not args.quiet)
    jb = load(args.model, device, dtype, args.compile, args.cuda_graphs)
    if args.model is None:
        log.info("model: the demo model in %s (`jukelite info` lists its artists and genres)",
                 jb.bundle)
    # what an interrupted run prints (see `jukelite.cli.main`): the run folder is its own
    # checkpoint
    args.resume_hint = shlex.join(["jukelite", "sample", *(["--model", args.model]
                                                           if args.model else []),
                                   "--resume", str(args.resume or args.output)])
    try:
        if args.resume:
            song = jb.resume(args.resume, levels=args.levels, progress=bars)
            out = Path(args.resume)
        else:
            out = Path(args.output)
            song = _start(jb, args, temperature, bars)
    except ValueError as exc:  # bad labels, lengths, settings: say so, no traceback
        raise UsageError(str(exc)) from exc
    finally:
        bars.close()
    _report(song, out)
    return 0


def _start(jb, args: argparse.Namespace, temperature, bars: LevelBars):
    settings = dict(
        seed=args.seed, temperature=temperature, top_k=args.top_k, top_p=args.top_p,
        levels=args.levels or "all", max_batch_size=args.max_batch_size, output_dir=args.output,
        overwrite=args.overwrite, progress=bars, total_seconds=args.total_seconds,
        guidance=None if args.guidance is None else parse_guidance(args.guidance),
        steps=None if args.steps is None else parse_steps(args.steps),
    )
    lyrics = read_lyrics(args)
    if args.upsample:
        codes, previous = _upsample_source(Path(args.upsample))
        return jb.upsample(
            codes,
            artist=args.artist or previous.get("artist", "unknown"),
            genre=args.genre or previous.get("genres", ["unknown"]),
            lyrics=lyrics if lyrics is not None else previous.get("lyrics", ""),
            **settings,
        )
    labels = dict(artist=args.artist or "unknown", genre=args.genre or ["unknown"],
                  lyrics=lyrics or "", alignment=args.alignment, n_samples=args.n_samples)
    if args.prime:
        return jb.continue_(args.prime, seconds=args.seconds, prime_seconds=args.prime_seconds,
                            **labels, **settings)
    return jb.generate(seconds=8.0 if args.seconds is None else args.seconds, **labels,
                       **settings)


def _report(song, out: Path) -> None:
    record = song.record
    for level in sorted(record["levels"], key=int, reverse=True):
        stats = record["levels"][level]
        rate = stats.get("tokens_per_second")
        speed = f", {rate:,.0f} codes/s" if rate else ""
        print(f"level {level}: {stats['tokens']} codes per sample in {stats['seconds']:.1f} s"
              f"{speed} -> {out / f'level_{level}'}")
    print(f"wrote {out} ({record['seconds']:.2f} s x {song.audio.shape[0]} sample(s), "
          f"level {song.level} at {song.sample_rate} Hz)")
