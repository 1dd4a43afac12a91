"""The `jukelite` command: a thin layer in which each sub-command calls one public function."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

EXIT_USAGE = 2


class UsageError(ValueError):
    """A command-line value that cannot be used."""


def _print_json(obj: object) -> None:
    print(json.dumps(obj, indent=2, default=str))


# ---------------------------------------------------------------------- train
def cmd_train(args: argparse.Namespace) -> int:
    from jukelite.recipes import load_recipe
    from jukelite.train import dry_run, train_recipe

    recipe = load_recipe(args.recipe, args.overrides)
    if args.dry_run:
        report = dry_run(recipe)
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
        return 0
    metrics = train_recipe(recipe, resume=args.resume)
    if metrics:
        print(json.dumps(metrics, indent=2))
    print(f"bundle: {recipe.output.bundle}")
    return 0


# ---------------------------------------------------------------------- codec commands
def _parse_levels(text: str | None) -> list[int] | None:
    if text is None or text == "all":
        return None
    try:
        return [int(part) for part in text.split(",")]
    except ValueError:
        raise UsageError(
            f"--level must be 'all' or comma-separated integers, got {text!r}"
        ) from None


def cmd_reconstruct(args: argparse.Namespace) -> int:
    from jukelite.autoencode import reconstruct_file

    results = reconstruct_file(
        args.audio,
        args.model,
        args.output,
        _parse_levels(args.level),
        device=args.device,
        progress=not args.quiet,
    )
    if args.json:
        _print_json({str(k): v for k, v in results.items()})
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
    from jukelite.autoencode import encode_file

    path = encode_file(
        args.audio,
        args.model,
        args.output,
        _parse_levels(args.level),
        device=args.device,
        progress=not args.quiet,
    )
    print(f"wrote {path}")
    return 0


def cmd_decode(args: argparse.Namespace) -> int:
    from jukelite.autoencode import decode_file

    path = decode_file(
        args.codes, args.model, args.output, args.level, device=args.device, progress=not args.quiet
    )
    print(f"wrote {path}")
    return 0


# ---------------------------------------------------------------------- data
def cmd_data_index(args: argparse.Namespace) -> int:
    from jukelite.data.index import index_folder

    try:
        result = index_folder(
            Path(args.directory),
            Path(args.output),
            min_duration=args.min_duration,
            progress=not args.quiet,
        )
    except FileNotFoundError as exc:  # the folder itself is missing or not a folder
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    for problem in result.problems:
        print(f"problem: {problem}", file=sys.stderr)
    if result.problems and args.strict:
        print(f"{len(result.problems)} problem(s); nothing written (--strict)", file=sys.stderr)
        return EXIT_USAGE
    if not result.entries:
        print(f"no usable audio found under {args.directory}", file=sys.stderr)
        return EXIT_USAGE
    result.write(Path(args.output))
    hours = sum(e.duration or 0.0 for e in result.entries) / 3600
    print(
        f"wrote {args.output}: {len(result.entries)} songs, {hours:.2f} h"
        + (f", {len(result.problems)} problem(s) listed above" if result.problems else "")
    )
    return 0


def cmd_data_synth(args: argparse.Namespace) -> int:
    from jukelite.data.synth import write_synth_dataset

    # The folder may be given either way (the issue and older scripts differ), but only once.
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


# ---------------------------------------------------------------------- info, bench
def _training_time(provenance: dict) -> str:
    """' (12.3 min, cpu: ...)' when the bundle recorded it (bundles trained since issue 5)."""
    seconds = provenance.get("train_seconds")
    if seconds is None:
        return ""
    return f" ({seconds / 60:.1f} min, {provenance.get('device', '?')})"


def cmd_info(args: argparse.Namespace) -> int:
    from jukelite.api import DEFAULT_TEMPERATURE
    from jukelite.bundle import describe
    from jukelite.demo_model import demo_bundle_path

    info = describe(args.bundle or demo_bundle_path())
    if args.json:
        _print_json(info)
        return 0
    print(
        f"bundle {info['bundle']} (format {info['format_version']}): "
        f"{info['sample_rate']} Hz, {info['channels']} channel(s), {info['levels']} levels, "
        f"{info['size_bytes'] / 1e6:.1f} MB of weights"
    )
    print(
        f"{'level':>5} {'hop':>5} {'tokens/s':>9} {'codebook':>11} {'width':>5} {'depth':>5} "
        f"{'params':>10} {'steps':>7} {'SC (dB)':>8}"
    )
    for lv in info["vqvae"]:
        sc = lv["metrics"].get("spectral_convergence_db")
        print(
            f"{lv['level']:>5} {lv['hop_length']:>5} {lv['tokens_per_second']:>9.1f} "
            f"{lv['codebook']:>11} {lv['width']:>5} {lv['depth']:>5} {lv['parameters']:>10,} "
            f"{lv['trained_steps'] or '-':>7} {'-' if sc is None else f'{sc:.2f}':>8}"
        )
    priors = info["priors"]
    print(f"priors: {', '.join(sorted(priors)) if priors else 'none yet'}")
    if info["artists"]:
        print(f"artists ({len(info['artists'])}): {', '.join(info['artists'])}")
        print(f"genre words ({len(info['genres'])}): {', '.join(info['genres'])}")
    if info["lyric_characters"]:
        print(f"lyric characters ({len(info['lyric_characters'])}): "
              f"{info['lyric_characters']!r}")
    recommended = info["sampling"].get("temperature")
    if recommended:
        shown = ", ".join(f"level {k} {v}" for k, v in sorted(recommended.items()))
        print(f"default sampling temperature: {shown} (other levels {DEFAULT_TEMPERATURE})")
    for level, prior in sorted(priors.items()):
        bits = prior.get("metrics", {}).get("music_bits_per_token")
        provenance = prior.get("provenance", {})
        shown = "-" if bits is None else f"{bits:.3f}"
        print(f"prior level {level}: {prior['parameters']:,} parameters, "
              f"{provenance.get('steps')} steps{_training_time(provenance)}, "
              f"validation {shown} bits per token")
    for level, prov in info["provenance"].items():
        versions = prov.get("versions", {})
        print(
            f"level {level}: trained {prov.get('steps')} steps{_training_time(prov)} on "
            f"{prov.get('data_manifest')} "
            f"(sha256 {str(prov.get('data_manifest_sha256'))[:12]}), saved {prov.get('saved_at')}, "
            f"torch {versions.get('torch')}"
        )
    return 0


def cmd_pack(args: argparse.Namespace) -> int:
    from jukelite.bundle import pack_bundle
    from jukelite.cli_sample import parse_temperature

    notes = {}
    for note in args.note:
        key, sep, value = note.partition("=")
        if not (sep and key):
            raise UsageError(f"--note expects KEY=VALUE, got {note!r}")
        notes[key] = value
    temperature = parse_temperature(args.temperature) if args.temperature else None
    if isinstance(temperature, float):
        raise UsageError(f"--temperature for pack takes LEVEL=T pairs, got {args.temperature!r}")
    manifest = pack_bundle(args.source, args.target, args.dtype, notes, temperature)
    size = sum(p.stat().st_size for p in Path(args.target).glob("*.safetensors"))
    levels = f"{len(manifest['vqvae'])} VQ-VAE levels, {len(manifest['priors'])} priors"
    print(f"wrote {args.target}: {levels}, {size / 1e6:.1f} MB of {args.dtype} weights")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from jukelite.bench import run_benchmark

    try:
        results = run_benchmark(args)
    except ValueError as exc:  # a flag value the benchmark cannot use
        raise UsageError(str(exc)) from exc
    _print_json(results)
    return 0


# ---------------------------------------------------------------------- eval
def cmd_eval_conditioning(args: argparse.Namespace) -> int:
    from jukelite.evaluation import ConditioningEvalError, evaluate_conditioning, format_table
    from jukelite.fileio import write_json_atomic

    def progress(message: str) -> None:
        if not args.quiet:
            print(message, file=sys.stderr, flush=True)

    try:
        report = evaluate_conditioning(
            args.model, quick=args.quick, seed=args.seed, progress=progress,
            seconds=args.seconds, device=args.device, levels=args.levels,
            upsampled=args.upsampled,
        )
    except ConditioningEvalError as exc:  # a bundle or length the demo songs cannot score
        raise UsageError(str(exc)) from exc
    if args.output:
        write_json_atomic(args.output, report)
    _print_json(report)
    print(format_table(report), file=sys.stderr)
    return 0


# ---------------------------------------------------------------------- parser
def _add_common(parser: argparse.ArgumentParser, model: bool = True) -> None:
    if model:
        parser.add_argument(
            "--model", required=True, metavar="BUNDLE", help="model bundle directory"
        )
    parser.add_argument("--device", default="cpu", help="torch device (cpu, cuda, cuda:1, ...)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    from jukelite.bench import add_bench_arguments
    from jukelite.cli_sample import add_sample_arguments, cmd_sample

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
        help="build the model on the meta device and print parameter counts",
    )
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "reconstruct",
        help="encode and decode audio, print metrics",
        description="Push an audio file through VQ-VAE levels and measure fidelity.",
    )
    p.add_argument("audio", help="audio file (wav, flac, ogg, mp3)")
    p.add_argument("-o", "--output", help="output WAV (one per level when several)")
    p.add_argument("--level", default="all", help="level(s): 'all' or e.g. 0 or 0,2")
    p.add_argument("--json", action="store_true", help="print metrics as JSON")
    _add_common(p)
    p.set_defaults(func=cmd_reconstruct)

    p = sub.add_parser(
        "encode",
        help="audio -> codes file",
        description="Encode audio into discrete codes (safetensors).",
    )
    p.add_argument("audio")
    p.add_argument("-o", "--output", required=True, help="codes file (.safetensors)")
    p.add_argument("--level", default="all", help="level(s): 'all' or e.g. 0 or 0,2")
    _add_common(p)
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
    _add_common(p)
    p.set_defaults(func=cmd_decode)

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
    p.add_argument("--quiet", action="store_true")
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
    p.set_defaults(func=cmd_data_synth)

    p = sub.add_parser(
        "sample",
        help="generate songs top-down (or continue, re-upsample, resume)",
        description="Sample a song with a complete bundle: the top prior writes coarse codes, "
        "each upsampler fills in the level below, and each level is rendered to audio.",
    )
    add_sample_arguments(p)
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("info", help="describe a model bundle")
    p.add_argument("bundle", nargs="?", help="bundle directory (default: the demo model)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser(
        "pack",
        help="copy a bundle with smaller (float16) weights, for shipping",
        description="Copy a bundle with every weight stored as --dtype (loading casts back to "
        "float32) and record the packing, plus any --note, under 'packed' in jukelite.json.",
    )
    p.add_argument("source", help="trained bundle directory")
    p.add_argument("target", help="new bundle directory (must not exist)")
    p.add_argument("--dtype", default="float16", choices=["float16", "bfloat16", "float32"])
    p.add_argument("--note", action="append", default=[], metavar="KEY=VALUE",
                   help="add KEY=VALUE to the packing record (e.g. how the data was made)")
    p.add_argument("--temperature", metavar="L=T,...",
                   help="the bundle's default sampling temperature per level, e.g. 0=0.7 "
                   "(other levels: 0.99; `jukelite sample --temperature` still overrides)")
    p.set_defaults(func=cmd_pack)

    p = sub.add_parser(
        "bench",
        help="measure speed; prints one JSON object",
        description="Benchmarks print one JSON object on stdout and a table on stderr.",
    )
    add_bench_arguments(p)
    p.set_defaults(func=cmd_bench)

    evaluation = sub.add_parser("eval", help="evaluate a trained bundle").add_subparsers(
        dest="eval_command", required=True, metavar="COMMAND"
    )
    p = evaluation.add_parser(
        "conditioning",
        help="do generated songs carry the artist, genre and lyrics asked for?",
        description="Train artist and genre classifiers and a lyrics recognizer on demo songs, "
        "then score songs the bundle generates for each artist and genre it shares with the "
        "demo songs (model), fresh demo songs (ceiling) and the generated songs against "
        "shuffled requests (floor). Prints JSON on stdout and a table on stderr.",
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
    p.add_argument("-o", "--output", metavar="FILE", help="also write the JSON report here")
    p.add_argument("--device", default="cpu", help="torch device for sampling (the scorers "
                   "train on the CPU)")
    p.add_argument("--quiet", action="store_true", help="no progress messages")
    p.set_defaults(func=cmd_eval_conditioning)
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
    from jukelite.cli_sample import SampleUsageError
    from jukelite.codes import CodesError
    from jukelite.data.manifest import ManifestError
    from jukelite.recipes import RecipeError
    from jukelite.train.trainer import RunDirectoryError

    try:
        return args.func(args)
    except (
        AudioError,
        BundleError,
        CodesError,
        ManifestError,
        RecipeError,
        RunDirectoryError,
        SampleUsageError,
        UsageError,
    ) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
