"""`jukelite bench jukebox-import`: importing a released-size Jukebox checkpoint, and sampling it.

No released weights are downloaded: the benchmark writes a checkpoint of the shape a preset
describes (random weights, Jukebox's names and layouts, torch's legacy format as the released
files), then runs `jukelite import jukebox` in a child process and reports its wall time and peak
resident memory against the checkpoint's size. With `--sample-seconds` it also samples the top
level of the imported bundle in a child process (tokens/s and peak memory).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from jukelite.bench.timing import environment
from jukelite.convert.jukebox_configs import prior_config, vqvae_config
from jukelite.convert.jukebox_export import (
    prior_to_jukebox,
    save_jukebox_checkpoint,
    vqvae_to_jukebox,
)
from jukelite.convert.jukebox_hparams import MODEL_SETS, read_hparams_file, resolve_hparams
from jukelite.prior.model import LevelPrior
from jukelite.vqvae.model import LevelVQVAE

ARTIST, GENRE = "Alan Jackson", "country"
LYRICS = "I'm a little bit country, a little bit rock and roll, singing down the road tonight\n"


def _random_like(shapes: dict[str, torch.Size], generator: torch.Generator,
                 fp16_conv: bool) -> dict[str, torch.Tensor]:
    """Random weights of Jukebox's shapes: layer-norm gains near 1, the rest small."""
    out: dict[str, torch.Tensor] = {}
    for key, shape in shapes.items():
        if key.endswith(("ln_0.weight", "ln_1.weight", "ln.weight")):
            tensor = 1 + 0.02 * torch.randn(shape, generator=generator)
        else:
            tensor = 0.02 * torch.randn(shape, generator=generator)
        out[key] = tensor.half() if fp16_conv and key.endswith(".w") else tensor
    return out


def write_random_checkpoints(folder: Path, model_set: str, levels: list[int],
                             hps: str | None = None) -> dict[str, Any]:
    """Released-shape checkpoints of `model_set` (VQ-VAE and the priors of `levels`), or the
    shapes an hparams file `hps` makes of it."""
    components = ["vqvae", *(f"prior_level_{level}" for level in levels)]
    resolved, _ = resolve_hparams(components, model_set, read_hparams_file(hps) if hps else None)
    vq = vqvae_config(resolved["vqvae"])
    generator = torch.Generator().manual_seed(0)
    with torch.device("meta"):
        vq_shapes = vqvae_to_jukebox({lv: LevelVQVAE(vq, lv).state_dict()
                                      for lv in range(vq.levels)})
    vq_state = _random_like({k: v.shape for k, v in vq_shapes.items()}, generator, False)
    save_jukebox_checkpoint(folder / "vqvae.pth.tar", vq_state)
    parameters = {}
    for level in levels:
        component = f"prior_level_{level}"
        config = prior_config(component, resolved[component], vq)
        tied = not config.merged_decoder
        with torch.device("meta"):
            shapes = prior_to_jukebox(LevelPrior(config).state_dict(), tied)
        state = _random_like({k: v.shape for k, v in shapes.items() if k != "prior.x_out.weight"
                              or not tied}, generator, resolved[component]["fp16_params"])
        if tied:
            state["prior.x_out.weight"] = state["prior.x_emb.weight"]  # one tensor, as Jukebox
        parameters[level] = sum(v.numel() for k, v in state.items()
                                if not (tied and k == "prior.x_out.weight"))
        save_jukebox_checkpoint(folder / f"prior_level_{level}.pth.tar", state)
        del state
    ids = folder / "ids"
    ids.mkdir(exist_ok=True)
    for version, artist in (("v2", "alan_jackson"), ("v3", "alan jackson")):
        (ids / f"{version}_artist_ids.txt").write_text(f"unknown;0\n{artist};1\n")
        (ids / f"{version}_genre_ids.txt").write_text(f"unknown;0\n{GENRE};1\n")
    return {**_checkpoint_files(folder, *levels), "parameters": parameters}


def _checkpoint_files(folder: Path, *levels: int) -> dict[str, Any]:
    return {"vqvae": folder / "vqvae.pth.tar", "ids": folder / "ids",
            "priors": {level: folder / f"prior_level_{level}.pth.tar" for level in levels}}


def _run_measured(command: list[str]) -> tuple[float, int]:
    """Wall seconds and peak RSS in bytes of a child process (its own, via wait4)."""
    began = time.perf_counter()
    with tempfile.TemporaryFile("w+") as err:
        child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=err, text=True)
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - began
        if child.returncode != 0:
            err.seek(0)
            raise RuntimeError(f"{' '.join(command[2:5])} failed:\n{err.read()[-2000:]}")
    return seconds, usage.ru_maxrss * 1024  # Linux reports kilobytes


def bench_jukebox_import(args: argparse.Namespace) -> dict[str, Any]:
    model_set = args.preset or "1b_lyrics"
    if model_set not in MODEL_SETS:
        raise ValueError(f"--preset must be one of {sorted(MODEL_SETS)}, got {model_set!r}")
    top = 2
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="jukelite-import-"))
    workdir.mkdir(parents=True, exist_ok=True)
    # Written by a child process: a child's peak RSS counts its parent's memory at fork time,
    # so this process must stay small for the measurements below to be the importer's own.
    made = time.perf_counter()
    writer = subprocess.run([sys.executable, "-m", "jukelite.bench.jukebox_import",
                             str(workdir), model_set, args.hps or "", str(top)],
                            capture_output=True, text=True)
    if writer.returncode != 0:
        raise RuntimeError(f"writing the random checkpoints failed:\n{writer.stderr[-2000:]}")
    files = _checkpoint_files(workdir, top)
    files["parameters"] = json.loads(writer.stdout)
    made = time.perf_counter() - made
    checkpoint_bytes = files["priors"][top].stat().st_size
    results: dict[str, Any] = {"benchmark": "jukebox-import", "preset": model_set,
                               "prior_parameters": files["parameters"][str(top)],
                               "checkpoint_bytes": checkpoint_bytes,
                               "seconds_to_write_checkpoint": round(made, 1), "imports": {}}
    cli = [sys.executable, "-m", "jukelite.cli"]
    for dtype in args.import_dtypes.split(","):
        bundle = workdir / f"bundle-{dtype}"
        command = [*cli, "import", "jukebox", "--vqvae", str(files["vqvae"]), "--prior",
                   f"{top}={files['priors'][top]}", "--preset", model_set, "--ids",
                   str(files["ids"]), "--dtype", dtype, "-o", str(bundle), "--quiet",
                   *(["--hps", args.hps] if args.hps else [])]
        seconds, peak = _run_measured(command)
        size = sum(p.stat().st_size for p in bundle.glob("*.safetensors"))
        results["imports"][dtype] = {"seconds": round(seconds, 1), "peak_rss_bytes": peak,
                                     "peak_rss_over_checkpoint": round(peak / checkpoint_bytes,
                                                                       3),
                                     "bundle_bytes": size}
    if args.sample_seconds:
        dtype = args.import_dtypes.split(",")[0]
        out = workdir / "song"
        command = [*cli, "sample", "--model", str(workdir / f"bundle-{dtype}"), "--artist",
                   ARTIST, "--genre", GENRE, "--lyrics", LYRICS, "--seconds",
                   str(args.sample_seconds), "--total-seconds", str(args.total_seconds), "--levels",
                   "top", "-o",
                   str(out), "--overwrite", "--quiet"]
        seconds, peak = _run_measured(command)
        record = json.loads((out / "song.json").read_text())
        level = record["levels"][str(top)]
        results["sample"] = {"seconds_of_audio": args.sample_seconds,
                             "tokens": level["tokens"],
                             "tokens_per_second": round(level["tokens_per_second"], 2),
                             "wall_seconds": round(seconds, 1), "peak_rss_bytes": peak}
    results["environment"] = environment(torch.device("cpu"))
    results["workdir"] = str(workdir)
    return results


if __name__ == "__main__":  # the checkpoint writer, run as a child by the benchmark
    folder, model_set, hps, *levels = sys.argv[1:]
    made = write_random_checkpoints(Path(folder), model_set, [int(lv) for lv in levels],
                                    hps or None)
    print(json.dumps(made["parameters"]))
