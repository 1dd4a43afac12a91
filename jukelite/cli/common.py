"""What every command shares: the one usage-error type, JSON output, common options, the
--device check and the one-line messages of errors about the user's own paths.

Nothing here imports torch at module level: `jukelite --help` must stay fast.
"""

from __future__ import annotations

import argparse
import errno
import json
from pathlib import Path
from typing import Any

EXIT_USAGE = 2

# Errors about a path the user gave (or a folder under it): one line, exit 2, no traceback.
PATH_ERRNOS = {
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EISDIR: "is a directory (expected a file)",
    errno.ENOTDIR: "a part of the path is a file, not a directory",
    errno.EEXIST: "already exists",
    errno.ENOENT: "no such file or directory",
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.ENAMETOOLONG: "file name too long",
    errno.ELOOP: "too many levels of symbolic links (a symlink loop?)",
}


class UsageError(ValueError):
    """A command-line value that cannot be used, or options that cannot be combined."""


def path_error_message(exc: OSError) -> str | None:
    """`PATH: what is wrong` for an OSError about the user's paths (permission, a folder where
    a file was expected, a full disk, ...), or None for other OSErrors, which are bugs."""
    from jukelite.fileio import shown_path

    if exc.errno is None:  # raised by jukelite itself with a message naming the path
        path_types = (FileNotFoundError, FileExistsError, PermissionError, IsADirectoryError,
                      NotADirectoryError)
        return str(exc) if isinstance(exc, path_types) else None
    reason = PATH_ERRNOS.get(exc.errno)
    if reason is None:
        return None
    if exc.filename is None:
        return reason
    where = shown_path(exc.filename)
    if exc.filename2 is not None:
        where += f" -> {shown_path(exc.filename2)}"
    return f"{where}: {reason}"


def parse_device(text: Any, flag: str = "--device") -> Any:
    """--device as a torch.device this machine has (the check the Python API makes too):
    `--device cuda` without CUDA, or `--device foo`, is one line before anything is loaded."""
    from jukelite.inference.options import check_device

    try:
        return check_device(text, flag)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


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
