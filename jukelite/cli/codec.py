"""`jukelite reconstruct`, `encode` and `decode`: audio through a bundle's VQ-VAE levels."""

from __future__ import annotations

import argparse

from jukelite.cli.common import UsageError, add_common, print_json


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


def cmd_reconstruct(args: argparse.Namespace) -> int:
    from jukelite.inference.codec import reconstruct_file

    results = reconstruct_file(*_audio_levels(args), device=args.device,
                               progress=not args.quiet)
    if args.json:
        print_json({str(k): v for k, v in results.items()})
        return 0
    print(
        f"{'level':>5} {'hop':>5} {'SC (dB)':>9} {'STFT dist':>10} {'SI-SDR (dB)':>12} "
        f"{'codes used':>10}  output"
    )
    for level, m in results.items():
        print(
            f"{level:>5} {m['hop_length']:>5} {m['spectral_convergence_db']:>9.2f} "
            f"{m['stft_distance']:>10.3f} {m['si_sdr_db']:>12.2f} {m['codes_used']:>10}  "
            f"{m.get('output', '-')}"
        )
    return 0


def cmd_encode(args: argparse.Namespace) -> int:
    from jukelite.inference.codec import encode_file

    path = encode_file(*_audio_levels(args), device=args.device, progress=not args.quiet)
    print(f"wrote {path}")
    return 0


def cmd_decode(args: argparse.Namespace) -> int:
    from jukelite.inference.codec import decode_file

    path = decode_file(
        args.codes, args.model, args.output, args.level, device=args.device, progress=not args.quiet
    )
    print(f"wrote {path}")
    return 0
