"""`jukelite import jukebox`: released or self-trained Jukebox checkpoints -> a bundle."""

from __future__ import annotations

import argparse

from jukelite.cli.common import UsageError, add_verbosity, print_json


def add_import_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "import",
        help="turn other projects' checkpoints into a bundle (Jukebox)",
        description="Import model files of other projects into a jukelite bundle.",
    )
    kinds = p.add_subparsers(dest="source", required=True, metavar="SOURCE")
    j = kinds.add_parser(
        "jukebox",
        help="OpenAI Jukebox checkpoints (.pth.tar), read without unpickling code",
        description="Import Jukebox checkpoints (vqvae.pth.tar, prior_level_L.pth.tar of the "
        "5b, 5b_lyrics and 1b_lyrics models, or your own from Jukebox's train.py) into a bundle "
        "that every jukelite command reads. Checkpoints do not record their architecture: name "
        "the hparams preset(s) they were trained with, or give them in --hps. The released "
        "weights are for non-commercial use only (Jukebox's license).",
    )
    j.add_argument("--vqvae", metavar="FILE", help="VQ-VAE checkpoint (all its levels)")
    j.add_argument("--prior", action="append", default=[], metavar="LEVEL=FILE",
                   help="prior checkpoint of a level (repeat for several levels)")
    j.add_argument("--preset", metavar="NAME[,NAME...]",
                   help="Jukebox hparams preset(s): a model set (5b, 5b_lyrics, 1b_lyrics) or "
                   "component presets applied in order (vqvae, small_vqvae, small_prior, "
                   "small_labelled_prior, small_single_enc_dec_prior, small_sep_enc_dec_prior, "
                   "small_upsampler, upsampler_level_0/1, prior_5b, prior_5b_lyrics, "
                   "prior_1b_lyrics, all_fp16)")
    j.add_argument("--hps", metavar="FILE",
                   help="JSON/YAML {component: {hparam: value}} (components vqvae, "
                   "prior_level_0..2; names as in Jukebox's hparams.py); overrides --preset")
    j.add_argument("--ids", metavar="DIR",
                   help="folder with Jukebox's v2_/v3_ artist and genre id files "
                   "(jukebox/data/ids in a Jukebox checkout); needed for labelled priors")
    j.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"],
                   help="storage precision of the bundle's weights (float16 halves it; "
                   "loading computes in float32)")
    j.add_argument("-o", "--output", required=True, metavar="BUNDLE",
                   help="new bundle folder (or an existing one, to add priors only)")
    add_verbosity(j)
    j.set_defaults(func=cmd_import_jukebox)


def _priors(values: list[str]) -> dict[int, str]:
    priors: dict[int, str] = {}
    for value in values:
        level, sep, path = value.partition("=")
        if not sep or not level.strip().isdigit() or not path:
            raise UsageError(f"--prior {value!r}: expected LEVEL=FILE, e.g. "
                             "2=prior_level_2.pth.tar")
        if int(level) in priors:
            raise UsageError(f"--prior: level {level} given twice")
        priors[int(level)] = path
    return priors


def cmd_import_jukebox(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from jukelite.bundle import describe
    from jukelite.convert.jukebox import LICENSE_NOTE, import_jukebox
    from jukelite.fileio import check_output_dir

    if not args.preset and not args.hps:
        raise UsageError("give --preset NAME or --hps FILE: a Jukebox checkpoint does not record "
                         "its architecture")
    priors = _priors(args.prior)
    check_output_dir(args.output, "-o")  # before reading gigabytes of checkpoints
    bars: dict[str, tqdm] = {}

    def progress(what: str, done: int, total: int) -> None:
        if args.quiet:
            return
        bar = bars.get(what) or bars.setdefault(
            what, tqdm(total=total, desc=what, unit="tensor", leave=False))
        bar.update(done - bar.n)
        if done == total:
            bar.close()

    bundle = import_jukebox(args.output, vqvae=args.vqvae, priors=priors,
                            preset=args.preset, hps=args.hps, ids=args.ids, dtype=args.dtype,
                            progress=progress)
    info = describe(bundle)
    print_json({"bundle": str(bundle), "levels": info["levels"],
                "priors": sorted(int(level) for level in info["priors"]),
                "size_bytes": info["size_bytes"], "license": LICENSE_NOTE})
    return 0
