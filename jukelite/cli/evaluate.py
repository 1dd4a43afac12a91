"""`jukelite eval conditioning`: are the asked-for artist, genre and lyrics heard?"""

from __future__ import annotations

import argparse
import sys

from jukelite.cli.common import UsageError, add_verbosity, parse_device, print_json


def add_eval_commands(sub: argparse._SubParsersAction) -> None:
    evaluation = sub.add_parser("eval", help="evaluate a trained bundle").add_subparsers(
        dest="eval_command", required=True, metavar="COMMAND"
    )
    p = evaluation.add_parser(
        "conditioning",
        help="do generated songs carry the artist, genre and lyrics asked for?",
        description="Train artist and genre classifiers (a full-band pair and a pair that "
        "hears only content below 2 kHz) and a lyrics recognizer on demo songs, then score "
        "songs the bundle generates for each artist and genre it shares with the demo songs "
        "(model), fresh demo songs (ceiling) and the generated songs against shuffled "
        "requests (floor). Prints JSON on stdout and a table on stderr.",
    )
    p.add_argument("--model", metavar="BUNDLE",
                   help="model bundle directory (default: the bundled demo model)")
    p.add_argument("--quick", action="store_true",
                   help="fewer, shorter songs and less scorer training: a smoke test")
    p.add_argument("--seconds", type=float, default=None,
                   help="length of every clip (default 4, 2 with --quick, kept inside the "
                   "model's timing range)")
    p.add_argument("--seed", type=int, default=0, help="seed of every song, model and sample")
    p.add_argument("--levels", default="all", metavar="top|all|L",
                   help="sample down to this level (default all; 'top' is faster, coarser)")
    p.add_argument("--upsampled", action="store_true",
                   help="also score held-out songs' own top-level codes rendered by the "
                   "upsamplers (20 songs, 5 with --quick): is a label lost by the top prior or "
                   "by the upsamplers?")
    p.add_argument("--temperature", metavar="T | L=T,...",
                   help="sampling temperature of every song (default: the model's own)")
    p.add_argument("--guidance", metavar="S | L=S,...",
                   help="classifier-free guidance of every song (default: the model's own)")
    p.add_argument("--steps", metavar="N | L=N,...",
                   help="decoding steps of parallel levels (default: the model's own)")
    p.add_argument("-o", "--output", metavar="FILE", help="also write the JSON report here")
    p.add_argument("--device", default="cpu", help="torch device for sampling (the scorers "
                   "train on the CPU)")
    add_verbosity(p, "no progress messages")
    p.set_defaults(func=cmd_eval_conditioning)


def cmd_eval_conditioning(args: argparse.Namespace) -> int:
    from jukelite.cli.sample import parse_guidance, parse_steps, parse_temperature
    from jukelite.evaluation import ConditioningEvalError, evaluate_conditioning, format_table
    from jukelite.fileio import check_output_file, write_json_atomic

    device = str(parse_device(args.device))
    sampling = {name: parse(text) for name, text, parse in (
        ("temperature", args.temperature, parse_temperature),
        ("guidance", args.guidance, parse_guidance),
        ("steps", args.steps, parse_steps)) if text is not None}
    if args.output:
        check_output_file(args.output, "-o")

    def progress(message: str) -> None:
        if not args.quiet:
            print(message, file=sys.stderr, flush=True)

    try:
        report = evaluate_conditioning(
            args.model, quick=args.quick, seed=args.seed, progress=progress,
            seconds=args.seconds, device=device, levels=args.levels,
            upsampled=args.upsampled, sampling=sampling,
        )
    except ConditioningEvalError as exc:  # a bundle or length the demo songs cannot score
        raise UsageError(str(exc)) from exc
    if args.output:
        write_json_atomic(args.output, report)
    print_json(report)
    print(format_table(report), file=sys.stderr)
    return 0
