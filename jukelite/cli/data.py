"""`jukelite data index` and `jukelite data synth`: datasets from folders, and demo songs."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from jukelite.cli.common import EXIT_USAGE, UsageError, add_verbosity

_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def parse_size(text: str) -> int:
    """`--max-size`: bytes, or a number with K, M, G or T (powers of 1024; a trailing B or iB
    is allowed): 500M, 2G, 1.5GiB."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d*)?)\s*([KMGT]?)(?:i?B)?\s*", text, re.IGNORECASE)
    if match is None:
        raise argparse.ArgumentTypeError(f"expected a size like 500M or 2G, got {text!r}")
    return int(float(match.group(1)) * _UNITS[match.group(2).upper()])


def _safe(text: str) -> str:
    """A line that always prints: undecodable bytes in names come out as escapes."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def add_data_commands(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help="dataset tools").add_subparsers(
        dest="data_command", required=True, metavar="COMMAND"
    )
    p = data.add_parser(
        "index",
        help="build a manifest from a folder of audio",
        description="Find audio recursively, read metadata sidecars, validate, and "
        "write a JSONL manifest. Every bad file or row is reported at once.",
    )
    p.add_argument("directory")
    p.add_argument("-o", "--output", required=True, help="manifest.jsonl to write")
    p.add_argument("--min-duration", type=float, default=0.0, help="skip shorter files (seconds)")
    p.add_argument("--strict", action="store_true", help="write nothing if any problem is found")
    p.add_argument("--max-size", type=parse_size, default="2G", metavar="SIZE",
                   help="skip (and report) audio files larger than this, e.g. 500M or 8G "
                   "(default 2G)")
    add_verbosity(p)
    p.set_defaults(func=cmd_data_index)
    p = data.add_parser(
        "synth",
        help="write procedural demo songs and their manifest",
        description="Generate procedural songs with a formant-synthesised singer (no downloads "
        "needed) for trying the toolkit: 4 genres, 5 artists' voices, lyrics with exact word "
        "timings in the manifest. The same seed always writes the same songs.",
    )
    p.add_argument("directory", nargs="?", metavar="DIR", help="output folder (or use --out)")
    p.add_argument("--out", metavar="DIR", help="output folder, instead of the positional DIR")
    p.add_argument("--songs", type=int, default=8, help="number of songs (default 8)")
    p.add_argument("--seconds", type=float, default=6.0, help="length of each song (default 6)")
    p.add_argument("--sample-rate", type=int, default=22050, help="Hz (default 22050)")
    p.add_argument("--seed", type=int, default=0, help="seed of the whole set (default 0)")
    p.add_argument("--stereo", action="store_true", help="write two channels (default mono)")
    add_verbosity(p)
    p.set_defaults(func=cmd_data_synth)


def cmd_data_index(args: argparse.Namespace) -> int:
    from jukelite.data.index import index_folder
    from jukelite.fileio import check_output_file

    check_output_file(args.output, "-o")  # before scanning a large collection
    try:
        result = index_folder(
            Path(args.directory),
            Path(args.output),
            min_duration=args.min_duration,
            progress=not args.quiet,
            max_size=args.max_size,
        )
    except FileNotFoundError as exc:  # the folder itself is missing or not a folder
        print(_safe(f"error: {exc}"), file=sys.stderr)
        return EXIT_USAGE
    for problem in result.problems:  # one line per skipped file or folder
        print(_safe(f"problem: {problem}"), file=sys.stderr)
    if result.problems and args.strict:
        print(f"{len(result.problems)} problem(s); nothing written (--strict)", file=sys.stderr)
        return EXIT_USAGE
    if not result.entries:
        print(_safe(f"no usable audio found under {args.directory}"), file=sys.stderr)
        return EXIT_USAGE
    result.write(Path(args.output))
    hours = sum(e.duration or 0.0 for e in result.entries) / 3600
    print(_safe(
        f"wrote {args.output}: {len(result.entries)} songs, {hours:.2f} h"
        + (f", {len(result.problems)} problem(s) listed above" if result.problems else "")
    ))
    return 0


def cmd_data_synth(args: argparse.Namespace) -> int:
    from jukelite.data.synth import write_synth_dataset

    # The folder may be given either way (scripts use both forms), but only once.
    if (args.directory is None) == (args.out is None):
        raise UsageError(
            "give the output folder once: either as DIR or as --out DIR"
            if args.directory is None
            else f"the output folder is given twice ({args.directory} and --out {args.out})"
        )
    directory = Path(args.directory if args.directory is not None else args.out)
    try:
        manifest = write_synth_dataset(
            directory, args.songs, args.seconds, sample_rate=args.sample_rate, seed=args.seed,
            channels=2 if args.stereo else 1,
        )
    except ValueError as exc:  # a count, length or rate the generator refuses
        raise UsageError(str(exc)) from exc
    print(f"wrote {args.songs} songs and {manifest}")
    return 0
