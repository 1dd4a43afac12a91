"""`jukelite score`: how likely one level's prior finds a song's codes (bits per token and second).

A thin layer over `Jukebox.score`: it turns an audio file (encoded at the level, and at the level
above for an upsampler) or a codes file into codes, scores them and prints one JSON object.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from jukelite.cli.common import (
    UsageError,
    add_common,
    add_song_labels,
    parse_device,
    print_json,
    read_lyrics,
)
from jukelite.logs import get_logger

log = get_logger(__name__)

EPILOG = """\
prints one JSON object: level, tokens, n, bits_per_token (mean over codes and samples),
bits_per_second, per_sample_bits_per_token and the conditioning used; -o FILE also writes the
log-probability of every code (natural log, one list per sample).

examples:
  jukelite score song.wav --level 2 --artist "Mira Vale" --genre ambient
  jukelite score song.wav --model models/tiny --level 0 --artist "Mira Vale" --genre folk \\
      --total-seconds 30 --offset-seconds 8 -o scores.json
  jukelite score out/codes.safetensors --level 1 --artist "Mira Vale" --genre folk
  jukelite score level0.safetensors --level 0 --upper level1.safetensors
"""


def add_score_arguments(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = EPILOG
    p.add_argument("input", metavar="AUDIO|CODES",
                   help="audio file, or a .safetensors codes file from `encode` or `sample`")
    p.add_argument("--level", type=int, required=True, help="level whose prior scores the codes")
    add_song_labels(p)
    p.add_argument("--total-seconds", type=float,
                   help="length of the whole song (default: where the codes end)")
    p.add_argument("--offset-seconds", type=float,
                   help="where the codes start in the song, rounded to whole codes (default 0)")
    p.add_argument("--upper", metavar="CODES",
                   help="codes file holding the level above (upsamplers; default: the input's)")
    p.add_argument("--max-batch-size", type=int, default=None,
                   help="samples scored at once (default all)")
    p.add_argument("-o", "--output", metavar="FILE",
                   help="also write the JSON with every code's log-probability here")
    p.add_argument("--model", metavar="BUNDLE",
                   help="model bundle directory (default: the bundled demo model)")
    add_common(p, model=False)


def _load_codes_file(path: Path, jb, levels: list[int]) -> dict[int, Any]:
    """The `levels` present in a codes file, refused when made by a different VQ-VAE."""
    from jukelite.inference.codes import CodesError, load_codes

    codes, info = load_codes(path)
    rate = info.get("sample_rate")
    if rate is not None and rate != jb.sample_rate:
        raise CodesError(f"{path} was encoded at {rate} Hz; this bundle runs at "
                         f"{jb.sample_rate} Hz")
    hops = info.get("hop_lengths") or {}
    for level in levels:
        hop = hops.get(str(level))
        if level in codes and hop is not None and hop != jb.hop_lengths[level]:
            raise CodesError(f"{path}: level {level} codes have hop length {hop}, this bundle's "
                             f"level {level} has {jb.hop_lengths[level]}")
    return {level: codes[level] for level in levels if level in codes}


def _inputs(jb, args: argparse.Namespace, level: int, upsampler: bool) -> tuple[Any, Any]:
    """(codes [n, t], upper codes or None) from the input file and --upper."""
    path = Path(args.input)
    if not path.is_file():
        raise UsageError(f"{path} does not exist (give an audio file or a codes file)")
    above = level + 1
    if upsampler and above not in jb.levels:
        raise UsageError(f"level {level} is an upsampler but the bundle has no level {above}")
    levels = [level, above] if upsampler and args.upper is None else [level]
    if path.suffix == ".safetensors":
        found = _load_codes_file(path, jb, levels)
        if level not in found:
            raise UsageError(f"{path} holds no codes of level {level}; encode them with "
                             f"`jukelite encode AUDIO --level {level}` or score the audio")
    else:
        found = jb.encode(path, levels)
    upper = found.get(above)
    if args.upper is not None:
        upper = _load_codes_file(Path(args.upper), jb, [above]).get(above)
        if upper is None:
            raise UsageError(f"--upper {args.upper} holds no codes of level {above}")
    if upsampler and upper is None:
        raise UsageError(f"{path} holds no level {above} codes, which the level {level} "
                         f"upsampler is conditioned on: give them with --upper CODES")
    codes = found[level]
    if upsampler:
        codes, upper = _whole_upper_codes(codes, upper, jb.hop_lengths[above] //
                                          jb.hop_lengths[level], level)
    return codes, upper


def _whole_upper_codes(codes, upper, ratio: int, level: int) -> tuple[Any, Any]:
    """Encoding rounds each level's length up on its own, so audio that is not a whole number
    of upper codes long gives one partial code too many somewhere; keep the whole ones. Codes
    of really different lengths are left for `Jukebox.score` to refuse."""
    whole = codes.shape[1] // ratio
    if upper.shape[1] not in (whole, math.ceil(codes.shape[1] / ratio)):
        return codes, upper
    if whole < 1:
        raise UsageError(f"too short: {codes.shape[1]} level {level} codes make no whole code "
                         f"of level {level + 1} ({ratio} codes)")
    if whole * ratio < codes.shape[1]:
        log.info("scoring the first %d level %d codes (whole codes of level %d)",
                 whole * ratio, level, level + 1)
    return codes[:, : whole * ratio], upper[:, :whole]


def _conditioning(jb, level: int, artist: str, genres: list[str], lyrics: str, total: int,
                  offset: int, upper: Any) -> dict[str, Any]:
    """The names, and the ids the prior read, for the report."""
    from jukelite.bundle import Bundle
    from jukelite.inference.request import song_conditions

    song = song_conditions(Bundle.open(jb.bundle), level, artist, genres, lyrics, total)
    rate = jb.sample_rate
    return {
        "artist": artist, "artist_id": song.artist_id,
        "genres": genres, "genre_ids": [g for g in song.genre_ids if g >= 0],
        "lyrics": lyrics, "lyrics_used": bool(lyrics) and jb.prior_configs[level].lyrics != "none",
        "total_samples": total, "total_seconds": total / rate,
        "offset_samples": offset, "offset_seconds": offset / rate,
        "upper_level": None if upper is None else level + 1,
    }


def cmd_score(args: argparse.Namespace) -> int:
    from jukelite.api import load
    from jukelite.bundle import Bundle
    from jukelite.fileio import check_output_file, write_json_atomic
    from jukelite.inference.score import score_timing

    if args.max_batch_size is not None and args.max_batch_size < 1:
        raise UsageError(f"--max-batch-size must be >= 1, got {args.max_batch_size}")
    device = parse_device(args.device)
    if args.output:
        check_output_file(args.output, "-o")
    lyrics = read_lyrics(args) or ""
    jb = load(args.model, device)
    if args.model is None:
        log.info("model: the demo model in %s (`jukelite info` lists its artists and genres)",
                 jb.bundle)
    level = args.level
    if level not in jb.levels:
        raise UsageError(f"--level must be one of {jb.levels}, got {level}")
    upsampler = jb.prior_configs[level].upsampler
    if args.upper is not None and not upsampler:
        raise UsageError(f"--upper is for upsamplers; the level {level} prior is not one")
    artist, genres = args.artist or "unknown", args.genre or ["unknown"]
    try:
        codes, upper = _inputs(jb, args, level, upsampler)
        total, offset = score_timing(Bundle.open(jb.bundle), level, codes.shape[1],
                                     total_length_seconds=args.total_seconds,
                                     offset_seconds=args.offset_seconds)
        logprobs = jb.score(codes, level, artist, genres, lyrics, total, offset, upper,
                            max_batch_size=args.max_batch_size)
        conditioning = _conditioning(jb, level, artist, genres, lyrics, total, offset, upper)
    except UsageError:
        raise
    except ValueError as exc:  # bad labels, lengths, codes: say so, no traceback
        raise UsageError(str(exc)) from exc
    per_sample = (-logprobs.double().mean(dim=1) / math.log(2)).tolist()
    bits = float(-logprobs.double().mean() / math.log(2))
    tokens_per_second = jb.sample_rate / jb.hop_lengths[level]
    report = {
        "input": str(args.input), "model": str(jb.bundle), "level": level,
        "tokens": int(codes.shape[1]), "n": int(codes.shape[0]),
        "bits_per_token": bits, "bits_per_second": bits * tokens_per_second,
        "tokens_per_second": tokens_per_second,
        "per_sample_bits_per_token": per_sample, "conditioning": conditioning,
    }
    print_json(report)
    if args.output:
        write_json_atomic(args.output, {**report, "logprobs": logprobs.tolist()})
        log.info("wrote %s", args.output)
    return 0
