"""`jukelite info` and `jukelite pack`: describe a bundle, copy it with smaller weights."""

from __future__ import annotations

import argparse
from pathlib import Path

from jukelite.cli.common import EXIT_USAGE, UsageError, add_verbosity, print_json
from jukelite.logs import get_logger

log = get_logger(__name__)


def add_bundle_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="describe a model bundle")
    p.add_argument("bundle", nargs="?", help="bundle directory (default: the demo model)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--verify", action="store_true",
                   help="hash every weight file in full and check its values; exit 2 if any "
                   "is missing, truncated, corrupt or holds NaN/inf")
    add_verbosity(p)
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
    p.add_argument("--steps", metavar="L=N,...",
                   help="the bundle's default decoding steps per parallel level, e.g. 0=8,1=12 "
                   "(other levels: 12; `jukelite sample --steps` still overrides)")
    p.add_argument("--guidance", metavar="L=S,...",
                   help="the bundle's default guidance scale per level trained with "
                   "cond_dropout, e.g. 2=2 (other levels: 1; `jukelite sample --guidance` "
                   "still overrides)")
    add_verbosity(p)
    p.set_defaults(func=cmd_pack)


def _training_time(provenance: dict) -> str:
    """' (12.3 min, cpu: ...)' when the bundle recorded it (older bundles did not)."""
    seconds = provenance.get("train_seconds")
    if seconds is None:
        return ""
    return f" ({seconds / 60:.1f} min, {provenance.get('device', '?')})"


def _names(names: list[str], limit: int = 40) -> str:
    """A name list for the terminal: Jukebox vocabularies hold thousands of names."""
    if len(names) <= limit:
        return ", ".join(names)
    return (", ".join(names[:limit]) + f", ... ({len(names) - limit} more; "
            "`jukelite info --json` lists all)")


def cmd_info(args: argparse.Namespace) -> int:
    from jukelite.bundle import DEFAULT_STEPS, DEFAULT_TEMPERATURE, demo_bundle_path, describe

    if args.verify:
        return _verify(args.bundle or demo_bundle_path(), args.json)
    info = describe(args.bundle or demo_bundle_path())
    if args.json:
        print_json(info)
        _warn_stale(info)
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
        print(f"artists ({len(info['artists'])}): {_names(info['artists'])}")
        print(f"genre words ({len(info['genres'])}): {_names(info['genres'])}")
    per_level = info.get("level_vocabularies", {})
    for level, sizes in sorted(per_level.items(), key=lambda kv: int(kv[0])):
        shown = ", ".join(f"{n} {kind}" for kind, n in sizes.items()) or "none"
        print(f"prior level {level} vocabularies: {shown}")
    if info["lyric_characters"]:
        print(f"lyric characters ({len(info['lyric_characters'])}): "
              f"{info['lyric_characters']!r}")
    for key, name, others in (("temperature", "sampling temperature", DEFAULT_TEMPERATURE),
                              ("steps", "decoding steps (parallel levels)", DEFAULT_STEPS),
                              ("guidance", "guidance scale", 1)):
        recommended = info["sampling"].get(key)
        if recommended:
            shown = ", ".join(f"level {k} {v}" for k, v in sorted(recommended.items()))
            print(f"default {name}: {shown} (other levels {others})")
    licenses = set()
    for level, prior in sorted(priors.items()):
        metrics, provenance = prior.get("metrics", {}), prior.get("provenance", {})
        parallel = prior.get("config", {}).get("decoding") == "parallel"
        bits = metrics.get("masked_bits_per_code" if parallel else "music_bits_per_token")
        shown = "-" if bits is None else f"{bits:.3f}"
        unit = "bits per hidden code, parallel decoding" if parallel else "bits per token"
        if provenance.get("imported_from"):
            licenses.add(provenance.get("license"))
            print(f"prior level {level}: {prior['parameters']:,} parameters, "
                  f"{_imported(provenance)}")
            continue
        print(f"prior level {level}: {prior['parameters']:,} parameters, "
              f"{provenance.get('steps')} steps{_training_time(provenance)}, "
              f"validation {shown} {unit}")
    for level, prov in info["provenance"].items():
        versions = prov.get("versions", {})
        if prov.get("imported_from"):
            licenses.add(prov.get("license"))
            print(f"level {level}: VQ-VAE {_imported(prov)}")
            continue
        print(
            f"level {level}: trained {prov.get('steps')} steps{_training_time(prov)} on "
            f"{prov.get('data_manifest')} "
            f"(sha256 {str(prov.get('data_manifest_sha256'))[:12]}), saved {prov.get('saved_at')}, "
            f"torch {versions.get('torch')}"
        )
    for license_ in sorted(filter(None, licenses)):
        print(f"license: {license_}")
    _warn_stale(info)
    return 0


def _warn_stale(info: dict) -> None:
    """One line per prior trained on another VQ-VAE than the bundle holds (sampling refuses)."""
    for reason in info.get("stale_priors", {}).values():
        log.warning("%s", reason)


def _verify(bundle: str | Path, as_json: bool) -> int:
    """`info --verify`: one line per weight file as it is checked; 2 when any is bad."""
    from jukelite.bundle import Bundle

    results = []

    def report(path: Path, problem: str | None) -> None:
        results.append({"file": str(path), "ok": problem is None, "problem": problem})
        if not as_json:
            print(f"ok   {path}" if problem is None else f"BAD  {path}: {problem}", flush=True)

    problems = Bundle.open(bundle).verify(report)
    if as_json:
        print_json({"bundle": str(bundle), "ok": not problems, "files": results})
    else:
        print(f"{len(results) - len(problems)} of {len(results)} weight file(s) ok"
              + (f", {len(problems)} bad" if problems else ""))
    return EXIT_USAGE if problems else 0


def _imported(provenance: dict) -> str:
    """Where an imported component came from (`jukelite import`)."""
    source = provenance.get("source", {})
    return (f"imported from {provenance['imported_from']} {source.get('file')} (sha256 "
            f"{str(source.get('sha256'))[:12]}, step {source.get('step')}, hparams "
            f"{provenance.get('hparams_from', '?').split(': ', 1)[-1]}, stored as "
            f"{provenance.get('dtype')}) on {provenance.get('imported_at')}")


def cmd_pack(args: argparse.Namespace) -> int:
    from jukelite.bundle import pack_bundle
    from jukelite.cli.sample import parse_guidance, parse_steps, parse_temperature
    from jukelite.fileio import check_output_dir

    notes = {}
    for note in args.note:
        key, sep, value = note.partition("=")
        if not (sep and key):
            raise UsageError(f"--note expects KEY=VALUE, got {note!r}")
        notes[key] = value
    check_output_dir(args.target, "target")
    defaults = {}
    for flag, text, parse in (("temperature", args.temperature, parse_temperature),
                              ("steps", args.steps, parse_steps),
                              ("guidance", args.guidance, parse_guidance)):
        value = parse(text) if text else None
        if value is not None and not isinstance(value, dict):
            letter = flag[0].upper()
            raise UsageError(f"--{flag} for pack takes LEVEL={letter} pairs, got {text!r}")
        defaults[flag] = value
    manifest = pack_bundle(args.source, args.target, args.dtype, notes, **defaults)
    size = sum(p.stat().st_size for p in Path(args.target).glob("*.safetensors"))
    levels = f"{len(manifest['vqvae'])} VQ-VAE levels, {len(manifest['priors'])} priors"
    print(f"wrote {args.target}: {levels}, {size / 1e6:.1f} MB of {args.dtype} weights")
    return 0
