"""`jukelite reconstruct`, `encode` and `decode`: audio through a bundle's VQ-VAE levels.

Each command checks its --device and where it will write (folders, permissions, free space for
the audio or codes it will write) before any model is loaded.
"""

from __future__ import annotations

import argparse
import math
import sys
from typing import Any

from jukelite.cli.common import UsageError, add_common, parse_device, print_json

WAV_HEADER = 1024  # bytes of slack per file for headers


def add_codec_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "reconstruct",
        help="encode and decode audio, print metrics",
        description="Push an audio file through VQ-VAE levels and measure fidelity.",
    )
    p.add_argument("audio", help="audio file (wav, flac, ogg, mp3)")
    p.add_argument("-o", "--output", help="output WAV (one per level when several)")
    p.add_argument("--level", default="all", help="level(s): 'all' or e.g. 0 or 0,2")
    p.add_argument("--json", action="store_true", help="print metrics as JSON")
    add_common(p)
    p.set_defaults(func=cmd_reconstruct)

    p = sub.add_parser(
        "encode",
        help="audio -> codes file",
        description="Encode audio into discrete codes (safetensors).",
    )
    p.add_argument("audio")
    p.add_argument("-o", "--output", required=True, help="codes file (.safetensors)")
    p.add_argument("--level", default="all", help="level(s): 'all' or e.g. 0 or 0,2")
    add_common(p)
    p.set_defaults(func=cmd_encode)

    p = sub.add_parser(
        "decode",
        help="codes file -> audio",
        description="Decode one level's codes back to audio with that level's decoder.",
    )
    p.add_argument("codes", help="codes file written by `jukelite encode` or `sample`")
    p.add_argument("-o", "--output", required=True, help="output WAV")
    p.add_argument(
        "--level", type=int, default=None, help="level to decode (default: finest present)"
    )
    add_common(p)
    p.set_defaults(func=cmd_decode)


def _parse_levels(text: str | None) -> list[int] | None:
    if text is None or text == "all":
        return None
    try:
        return [int(part) for part in text.split(",")]
    except ValueError:
        raise UsageError(
            f"--level must be 'all' or comma-separated integers, got {text!r}"
        ) from None


def _audio_levels(args: argparse.Namespace) -> tuple:
    """(audio, bundle, output, levels): what `reconstruct` and `encode` both take."""
    return args.audio, args.model, args.output, _parse_levels(args.level)


def _input_samples(audio: str, bundle: str) -> tuple[int, int, list[int], dict[str, Any]]:
    """(samples at the bundle's rate, channels, levels present, manifest) from headers only."""
    from jukelite.audio import audio_info
    from jukelite.bundle import read_manifest, vqvae_levels

    manifest = read_manifest(bundle)
    info = audio_info(audio)
    samples = math.ceil(info.frames * manifest["sample_rate"] / info.sample_rate)
    return samples, manifest["channels"], vqvae_levels(bundle), manifest


def _chosen(levels: list[int] | None, present: list[int]) -> list[int]:
    return present if levels is None else levels


def cmd_reconstruct(args: argparse.Namespace) -> int:
    from jukelite.fileio import check_output_file
    from jukelite.inference.codec import reconstruct_file, reconstruction_outputs

    device = str(parse_device(args.device))
    levels = _parse_levels(args.level)
    if args.output is not None:
        samples, channels, present, _ = _input_samples(args.audio, args.model)
        for path in reconstruction_outputs(args.output, _chosen(levels, present)).values():
            check_output_file(path, "-o", samples * channels * 2 + WAV_HEADER)
    results = reconstruct_file(args.audio, args.model, args.output, levels, device=device,
                               progress=not args.quiet)
    notes = sorted({note for m in results.values() for note in m.get("notes", [])})
    if args.json:
        print_json({str(k): v for k, v in results.items()})
    else:
        print(
            f"{'level':>5} {'hop':>5} {'SC (dB)':>9} {'STFT dist':>10} {'SI-SDR (dB)':>12} "
            f"{'codes used':>10}  output"
        )
        for level, m in results.items():
            print(
                f"{level:>5} {m['hop_length']:>5} {_db(m['spectral_convergence_db']):>9} "
                f"{m['stft_distance']:>10.3f} {_db(m['si_sdr_db']):>12} {m['codes_used']:>10}  "
                f"{m.get('output', '-')}"
            )
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    return 0


def _db(value: float | None) -> str:
    """A dB metric for the table; '-' where it is undefined (a silent reference)."""
    return "-" if value is None else f"{value:.2f}"


def cmd_encode(args: argparse.Namespace) -> int:
    from jukelite.fileio import check_output_file
    from jukelite.inference.codec import encode_file
    from jukelite.inference.codes import codes_path

    device = str(parse_device(args.device))
    levels = _parse_levels(args.level)
    samples, _, present, manifest = _input_samples(args.audio, args.model)
    hops = manifest.get("hop_lengths", {})
    tokens = sum(samples // int(hops[str(level)]) + 1 for level in _chosen(levels, present)
                 if str(level) in hops)
    check_output_file(codes_path(args.output), "-o", tokens * 4 + WAV_HEADER)
    path = encode_file(args.audio, args.model, args.output, levels, device=device,
                       progress=not args.quiet)
    print(f"wrote {path}")
    return 0


def cmd_decode(args: argparse.Namespace) -> int:
    from jukelite.fileio import check_output_file
    from jukelite.inference.codec import decode_file, decoded_bytes

    device = str(parse_device(args.device))
    check_output_file(args.output, "-o")  # the path first: cheap, and before reading codes
    check_output_file(args.output, "-o", decoded_bytes(args.codes, args.model, args.level))
    path = decode_file(
        args.codes, args.model, args.output, args.level, device=device, progress=not args.quiet
    )
    print(f"wrote {path}")
    return 0
