"""Compare VQ-VAE bundles (quantiser variants) on held-out audio: fidelity, code use, lyrics.

Why: issue 15 part 3 asks whether the quantiser options (factorised lookup, usage restarts) give
better codes at an equal training budget, measured on real recordings the models never saw and on
held-out procedural songs, plus the conditioning report's *reconstruction* row (what the demo
scorers still hear after the audio path).

    python scripts/codec_study.py fidelity --bundles NAME=DIR ... --audio FILE ... [--json OUT]
    python scripts/codec_study.py recon-row --bundles NAME=DIR ... [--songs 40] [--level 0]

`fidelity` runs each file through every level exactly as `jukelite reconstruct` does (same
chunked encode/decode and `reconstruction_report`) and prints, per bundle and level, the mean
spectral convergence (dB) and SI-SDR (dB), the fraction of the codebook used over all files, and
the code perplexity over all files. `recon-row` trains the demo scorers once (the quick settings
of `jukelite eval conditioning`) and reports artist/genre accuracy and lyric CER on held-out demo
songs (ceiling) and on the same songs through each bundle's VQ-VAE at one level.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path
from typing import Any

import torch

from jukelite.bundle import load_vqvae_level, vqvae_levels
from jukelite.inference.codec import load_bundle_audio
from jukelite.vqvae.chunked import decode_codes, encode_audio
from jukelite.vqvae.losses import reconstruction_report


def _bundles(pairs: list[str]) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for pair in pairs:
        name, sep, path = pair.partition("=")
        if not sep:
            raise SystemExit(f"--bundles takes NAME=DIR, got {pair!r}")
        out[name] = Path(path)
    return out


def _perplexity(counts: torch.Tensor) -> float:
    probs = counts.double() / counts.sum().clamp(min=1)
    entropy = -(probs * torch.log2(probs.clamp(min=1e-30))).sum()
    return float(2.0**entropy)


@torch.no_grad()
def fidelity(bundles: dict[str, Path], files: list[Path]) -> dict[str, Any]:
    """Per bundle and level: per-file SC/SI-SDR, their means, codebook use and perplexity."""
    report: dict[str, Any] = {}
    for name, bundle in bundles.items():
        report[name] = {}
        audios = {f: load_bundle_audio(f, bundle) for f in files}
        for level in vqvae_levels(bundle):
            model = load_vqvae_level(bundle, level, "cpu")
            counts = torch.zeros(model.config.codebook_size, dtype=torch.long)
            per_file = {}
            for f, audio in audios.items():
                codes = encode_audio(model, audio)
                # unclamped, as `jukelite reconstruct` measures it
                recon = decode_codes(model, codes)[..., : audio.shape[-1]]
                m = reconstruction_report(audio, recon, model.config.sample_rate)
                per_file[f.stem] = {"sc_db": m["spectral_convergence_db"],
                                    "si_sdr_db": m["si_sdr_db"]}
                counts += torch.bincount(codes.flatten(), minlength=counts.numel())
            scs = [v["sc_db"] for v in per_file.values() if v["sc_db"] is not None]
            sdrs = [v["si_sdr_db"] for v in per_file.values() if v["si_sdr_db"] is not None]
            report[name][level] = {
                "sc_db": sum(scs) / len(scs),
                "si_sdr_db": sum(sdrs) / len(sdrs),
                "usage": float((counts > 0).float().mean()),
                "perplexity": _perplexity(counts),
                "files": per_file,
            }
            print(f"{name} level {level}: SC {report[name][level]['sc_db']:.2f} dB, "
                  f"SI-SDR {report[name][level]['si_sdr_db']:.2f} dB", file=sys.stderr)
    return report


def _fidelity_table(report: dict[str, Any]) -> str:
    lines = ["| variant | level | SC dB | SI-SDR dB | codes used | perplexity |",
             "|---|---|---|---|---|---|"]
    for name, levels in report.items():
        for level, m in levels.items():
            lines.append(f"| {name} | {level} | {m['sc_db']:.2f} | {m['si_sdr_db']:.2f} | "
                         f"{m['usage']:.2f} | {m['perplexity']:.1f} |")
    return "\n".join(lines)


def recon_row(bundles: dict[str, Path], songs: int, level: int, seed: int) -> dict[str, Any]:
    """Ceiling and reconstruction rows of the conditioning report, scorers trained once."""
    from jukelite.data.synth import ARTISTS, GENRES
    from jukelite.evaluation import conditioning as cond

    settings = cond.QUICK
    first = next(iter(bundles.values()))
    rate = load_vqvae_level(first, level, "cpu").config.sample_rate
    seconds = settings.seconds
    pairs = list(itertools.product(ARTISTS, GENRES))
    train = cond._grid_songs(pairs, settings.train_songs, settings.min_per_pair, seconds, rate,
                             seed, cond._TRAIN)
    with cond._one_thread():
        scorers, _ = cond.train_scorers(train, rate, seed, settings.classifier_steps,
                                        settings.recognizer_steps, settings.segment_seconds,
                                        settings.units)
    held = cond._grid_songs(pairs, songs, 1, seconds, rate, seed, cond._CEILING)
    truth = ([s.artist for s in held], [s.genre for s in held], [s.lyrics for s in held])
    rows: dict[str, Any] = {}
    with cond._one_thread():
        rows["ceiling"] = cond.metrics(cond.judge(scorers, [s.audio for s in held], *truth),
                                       settings.units)
    for name, bundle in bundles.items():
        model = load_vqvae_level(bundle, level, "cpu")
        rebuilt = []
        for s in held:
            audio = torch.as_tensor(s.audio, dtype=torch.float32).reshape(1, 1, -1)
            with torch.no_grad():
                codes = encode_audio(model, audio)
                recon = decode_codes(model, codes)[0, :, : audio.shape[-1]]
            rebuilt.append(recon.clamp(-1, 1).numpy())
        with cond._one_thread():
            rows[name] = cond.metrics(cond.judge(scorers, rebuilt, *truth), settings.units)
    return rows


def _row_table(rows: dict[str, Any]) -> str:
    lines = ["| row | artist acc | genre acc | lyric CER |", "|---|---|---|---|"]
    for name, m in rows.items():
        lines.append(f"| {name} | {m['artist_accuracy']:.2f} | {m['genre_accuracy']:.2f} | "
                     f"{m['lyric_cer']:.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    fid = sub.add_parser("fidelity", help="SC / SI-SDR / code use per level on audio files")
    fid.add_argument("--bundles", nargs="+", required=True, help="NAME=BUNDLE_DIR")
    fid.add_argument("--audio", nargs="+", required=True, type=Path)
    fid.add_argument("--json", type=Path, help="also write the full report here")
    row = sub.add_parser("recon-row", help="demo scorers on held-out songs through each VQ-VAE")
    row.add_argument("--bundles", nargs="+", required=True, help="NAME=BUNDLE_DIR")
    row.add_argument("--songs", type=int, default=40)
    row.add_argument("--level", type=int, default=0)
    row.add_argument("--seed", type=int, default=0)
    row.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    bundles = _bundles(args.bundles)
    if args.cmd == "fidelity":
        report: dict[str, Any] = fidelity(bundles, args.audio)
        print(_fidelity_table(report))
    else:
        report = recon_row(bundles, args.songs, args.level, args.seed)
        print(_row_table(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
