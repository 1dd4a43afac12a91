"""`jukelite train RECIPE [key=value ...] [--resume | --export | --dry-run [--world-size N]
[--gpu-memory GB]]`."""

from __future__ import annotations

import argparse
import json
import shlex

from jukelite.cli.common import UsageError, add_verbosity


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("recipe", help="recipe YAML file")
    p.add_argument(
        "overrides",
        nargs="*",
        metavar="section.key=value",
        help="override recipe keys, e.g. train.steps=100 data.sample_length=8192",
    )
    p.add_argument(
        "--resume", action="store_true", help="continue from the run's latest checkpoint"
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="build the model on the meta device and print parameter counts and the memory "
        "each device needs (weights, gradients, optimizer, EMA, activations) under DDP and FSDP",
    )
    p.add_argument(
        "--world-size",
        type=int,
        metavar="N",
        help="with --dry-run: plan for N devices (default 1)",
    )
    p.add_argument(
        "--gpu-memory",
        type=float,
        metavar="GB",
        help="with --dry-run: memory per device in GiB, as GPUs are sold (default 80)",
    )
    p.add_argument(
        "--export",
        action="store_true",
        help="write the bundle from the run's newest checkpoint without training, in this one "
        "process (how a sharded train.parallel=fsdp run becomes a bundle again)",
    )
    add_verbosity(p, "no progress bar or notes (same as train.progress=false)")


def train_command(args: argparse.Namespace, resume: bool) -> str:
    """The command line that runs this training again, with `--resume` or without: what an
    interrupted run prints (see `jukelite.cli.main`, `args.resume_hint`)."""
    words = ["jukelite", "train", args.recipe, *(["--resume"] if resume else []), *args.overrides]
    words += [flag for flag, on in (("--quiet", args.quiet), ("--verbose", args.verbose)) if on]
    return shlex.join(words)


def dry_run_devices(args: argparse.Namespace) -> tuple[int, float]:
    """--world-size and --gpu-memory, checked before anything is built (defaults 1 and 80)."""
    given = [flag for flag, value in (("--world-size", args.world_size),
                                      ("--gpu-memory", args.gpu_memory)) if value is not None]
    if given and not args.dry_run:
        raise UsageError(f"{' and '.join(given)}: only with --dry-run (a memory plan)")
    world_size = 1 if args.world_size is None else args.world_size
    gpu_memory = 80.0 if args.gpu_memory is None else args.gpu_memory
    if world_size < 1:
        raise UsageError(f"--world-size must be >= 1, got {world_size}")
    if not 0 < gpu_memory < float("inf"):
        raise UsageError(f"--gpu-memory must be a number of GiB > 0, got {gpu_memory:g}")
    return world_size, gpu_memory


def cmd_train(args: argparse.Namespace) -> int:
    from jukelite.recipes import load_recipe
    from jukelite.train import dry_run, train_recipe
    from jukelite.train.trainer import TrainingInterrupted

    chosen = [flag for flag, on in (("--resume", args.resume), ("--dry-run", args.dry_run),
                                    ("--export", args.export)) if on]
    if len(chosen) > 1:
        raise SystemExit(f"jukelite train: {' and '.join(chosen)} cannot be combined")

    world_size, gpu_memory = dry_run_devices(args)
    overrides = [*args.overrides, *(["train.progress=false"] if args.quiet else [])]
    recipe = load_recipe(args.recipe, overrides)
    if args.dry_run:
        report = dry_run(recipe, world_size, gpu_memory)
        if report["kind"] == "prior":
            for part, count in report["parts"].items():
                print(f"{part}: {count:,}")
            for note in report["notes"]:
                print(f"note: {note}")
        else:
            for level, counts in report["levels"].items():
                print(
                    f"level {level} (hop {counts['hop_length']}): encoder {counts['encoder']:,} "
                    f"+ decoder {counts['decoder']:,} = {counts['trainable']:,} trainable, "
                    f"codebook {counts['codebook_values']:,} values (buffer)"
                )
        print(f"trainable parameters: {report['trainable']:,}")
        from jukelite.train.memory_plan import format_plan

        print(format_plan(report["memory"]))
        return 0
    if args.export:
        from jukelite.train import export_checkpoint

        step = export_checkpoint(recipe)
        print(f"bundle: {recipe.output.bundle} (step {step} of {recipe.output.dir})")
        return 0
    args.resume_hint = train_command(args, resume=True)
    try:
        metrics = train_recipe(recipe, resume=args.resume)
    except TrainingInterrupted as exc:
        if exc.checkpoint_step is None:  # nothing saved yet: the same command starts over
            args.resume_hint = train_command(args, resume=False)
        raise
    if metrics:
        print(json.dumps(metrics, indent=2))
    print(f"bundle: {recipe.output.bundle}")
    return 0
