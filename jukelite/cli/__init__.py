"""The `jukelite` command: a thin layer in which each sub-command calls one public function.

One module per command group (train, codec, data, sample, info/pack, bench, eval); expected
failures (bad paths, values, files, runs, an output location that cannot be written, a full
disk) are one line on stderr and exit status 2. Anything else is a bug: its traceback is kept
and a last line says so and where to report it (exit status 1).

Parsing, and `--help` of every command, imports no torch: command modules import it inside
their command functions.
"""

from __future__ import annotations

import argparse
import sys
import traceback
import warnings
from collections.abc import Sequence

from jukelite.cli.common import EXIT_USAGE, UsageError, path_error_message

__all__ = ["EXIT_BUG", "EXIT_USAGE", "UsageError", "build_parser", "main"]

EXIT_BUG = 1
# No project URL is published yet; the package metadata's, when there is one, wins.
REPORT_BUGS_TO = "the jukelite issue tracker"


def bug_line(exc: BaseException) -> str:
    """The last line after an unexpected exception's traceback: a bug, and where to say so."""
    from importlib import metadata

    try:
        version = metadata.version("jukelite")
        urls = metadata.metadata("jukelite").get_all("Project-URL") or []
    except metadata.PackageNotFoundError:
        version, urls = "(not installed)", []
    where = next((url.split(",", 1)[-1].strip() for url in urls
                  if url.lower().startswith(("issues", "bug"))), REPORT_BUGS_TO)
    return (f"error: this is a bug in jukelite {version} (unexpected {type(exc).__name__}); "
            f"please report it at {where} with the command line and the traceback above")


def build_parser() -> argparse.ArgumentParser:
    from jukelite.cli.bench import add_bench_arguments, cmd_bench
    from jukelite.cli.codec import add_codec_commands
    from jukelite.cli.convert import add_import_commands
    from jukelite.cli.data import add_data_commands
    from jukelite.cli.evaluate import add_eval_commands
    from jukelite.cli.info import add_bundle_commands
    from jukelite.cli.sample import add_sample_arguments, cmd_sample
    from jukelite.cli.score import add_score_arguments, cmd_score
    from jukelite.cli.train import add_train_arguments, cmd_train

    parser = argparse.ArgumentParser(
        prog="jukelite",
        description="Jukebox-style hierarchical music generation: train VQ-VAEs and priors from "
        "recipes, sample songs, encode, decode and reconstruct audio.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "train",
        help="train what a recipe describes",
        description="Train a VQ-VAE level (or all levels) from a YAML recipe.",
    )
    add_train_arguments(p)
    p.set_defaults(func=cmd_train)

    add_codec_commands(sub)
    add_data_commands(sub)

    p = sub.add_parser(
        "sample",
        help="generate songs top-down (or continue, re-upsample, resume)",
        description="Sample a song with a complete bundle: the top prior writes coarse codes, "
        "each upsampler fills in the level below, and each level is rendered to audio.",
    )
    add_sample_arguments(p)
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser(
        "score",
        help="bits per token of codes under one level's prior",
        description="Score an audio file's or a codes file's codes of one level under that "
        "level's prior (teacher forcing, in the windows sampling uses): bits per token and per "
        "second, as one JSON object.",
    )
    add_score_arguments(p)
    p.set_defaults(func=cmd_score)

    add_bundle_commands(sub)
    add_import_commands(sub)

    p = sub.add_parser(
        "bench",
        help="measure speed; prints one JSON object",
        description="Benchmarks print one JSON object on stdout and a table on stderr.",
    )
    add_bench_arguments(p)
    p.set_defaults(func=cmd_bench)

    add_eval_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    # Recipe overrides may follow options (`train R.yaml --dry-run a.b=1`), which argparse
    # cannot interleave with a positional list; collect them from the leftovers.
    args, extra = parser.parse_known_args(argv)
    if extra:
        if args.command != "train" or any(x.startswith("-") or "=" not in x for x in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.overrides = [*args.overrides, *extra]
    from jukelite.audio import AudioError
    from jukelite.bundle import BundleError
    from jukelite.convert import ConvertError
    from jukelite.data.manifest import ManifestError
    from jukelite.fileio import OutputPathError
    from jukelite.inference.codes import CodesError
    from jukelite.logs import configure_cli_logging
    from jukelite.recipes import RecipeError
    from jukelite.train.trainer import RunDirectoryError

    try:
        with warnings.catch_warnings():  # warnings become log lines for this command only
            configure_cli_logging(getattr(args, "quiet", False), getattr(args, "verbose", False))
            return args.func(args)
    except (
        AudioError,
        BundleError,
        CodesError,
        ConvertError,
        ManifestError,
        OutputPathError,
        RecipeError,
        RunDirectoryError,
        UsageError,
    ) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt as exc:
        # Resume-hint convention: a command whose work can be continued sets
        # `args.resume_hint` (the exact command line that continues it) before the long work
        # starts. The exception's own text, if any, says where the work stopped ("at step 7").
        where = f" {exc}" if str(exc) else ""
        hint = getattr(args, "resume_hint", None)
        print(f"interrupted{where}" + (f"; resume with: {hint}" if hint else ""),
              file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
        return 0
    except OSError as exc:  # a path of the user's: permissions, a folder in the way, disk full
        message = path_error_message(exc)
        if message is None:
            return _bug(exc)
        print(f"error: {message}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:
        return _bug(exc)


def _bug(exc: BaseException) -> int:
    """Keep the whole traceback of an unexpected exception, then say it is a bug."""
    traceback.print_exception(exc, file=sys.stderr)
    print(bug_line(exc), file=sys.stderr)
    return EXIT_BUG
