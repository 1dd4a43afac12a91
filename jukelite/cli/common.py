"""What every command shares: the one usage-error type, JSON output, common options."""

from __future__ import annotations

import argparse
import json

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


def add_verbosity(parser: argparse.ArgumentParser, quiet: str = "no progress bars or notes"
                  ) -> None:
    """--quiet and --verbose: how much besides the command's own output reaches stderr."""
    parser.add_argument("--quiet", action="store_true", help=quiet)
    parser.add_argument("--verbose", action="store_true",
                        help="also print details (debug messages)")
