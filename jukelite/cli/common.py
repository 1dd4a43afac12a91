"""What every command shares: the one usage-error type, JSON output, common options."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

EXIT_USAGE = 2


class UsageError(ValueError):
    """A command-line value that cannot be used, or options that cannot be combined."""


def print_json(obj: object) -> None:
    print(json.dumps(obj, indent=2, default=str))


def add_common(parser: argparse.ArgumentParser, model: bool = True) -> None:
    if model:
        parser.add_argument(
            "--model", required=True, metavar="BUNDLE", help="model bundle directory"
        )
    parser.add_argument("--device", default="cpu", help="torch device (cpu, cuda, cuda:1, ...)")
    add_verbosity(parser)


def add_song_labels(parser: argparse.ArgumentParser) -> None:
    """--artist, --genre (repeatable) and --lyrics | --lyrics-file: what a song is about."""
    parser.add_argument("--artist", help="artist name (closest known names are suggested)")
    parser.add_argument("--genre", action="append", metavar="GENRE",
                        help="genre; repeat for several (--genre rock --genre folk)")
    lyrics = parser.add_mutually_exclusive_group()
    lyrics.add_argument("--lyrics", help="lyrics text")
    lyrics.add_argument("--lyrics-file", metavar="FILE", help="lyrics from a UTF-8 text file")


def read_lyrics(args: argparse.Namespace) -> str | None:
    """--lyrics, or the text of --lyrics-file (None when neither is given)."""
    if args.lyrics_file is None:
        return args.lyrics
    path = Path(args.lyrics_file)
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"--lyrics-file {path} does not exist") from None
    except UnicodeDecodeError as exc:
        raise UsageError(f"--lyrics-file {path} is not UTF-8 text ({exc})") from None


def add_verbosity(parser: argparse.ArgumentParser, quiet: str = "no progress bars or notes"
                  ) -> None:
    """--quiet and --verbose: how much besides the command's own output reaches stderr."""
    parser.add_argument("--quiet", action="store_true", help=quiet)
    parser.add_argument("--verbose", action="store_true",
                        help="also print details (debug messages)")
