"""`jukelite import jukebox`: released (or self-trained) Jukebox checkpoints -> a jukelite bundle.

For each component: resolve its hparams (presets, overrides), build the jukelite model they
describe on the meta device (no memory), check the checkpoint's shapes against it (sizes first,
then every key), then convert tensor by tensor, dropping each source tensor as soon as it is
converted, so a checkpoint never sits in memory twice. The bundle is an ordinary one: every
command reads it, and its provenance names the source files, their sha256 and the hparams.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch

from jukelite.bundle import (
    MANIFEST_NAME,
    PACK_DTYPES,
    BundleError,
    add_converted_level,
    file_sha256,
    package_versions,
    read_manifest,
)
from jukelite.convert import ConvertError
from jukelite.convert.checkpoint import Checkpoint, read_checkpoint
from jukelite.convert.jukebox_configs import prior_config, vqvae_config
from jukelite.convert.jukebox_hparams import (
    VQVAE,
    HparamsError,
    prior_component,
    read_hparams_file,
    resolve_hparams,
)
from jukelite.convert.jukebox_ids import read_jukebox_ids
from jukelite.convert.jukebox_keys import (
    PRIOR_REVEALS,
    PRIOR_RULES,
    MappingError,
    check_revealed,
    map_keys,
    prior_sizes,
    to_jukelite,
    vqvae_reveals,
    vqvae_rules,
    vqvae_sizes,
)
from jukelite.convert.stream_safetensors import write_streaming
from jukelite.data.lyrics import LyricsTokenizer
from jukelite.logs import get_logger
from jukelite.prior.model import LevelPrior, PriorConfig
from jukelite.vqvae.config import VQVAEConfig
from jukelite.vqvae.model import LevelVQVAE, count_parameters

log = get_logger(__name__)

LICENSE_NOTE = (
    "OpenAI Jukebox weights: Noncommercial Use License (github.com/openai/jukebox/LICENSE); "
    "no portion of the weights, nor any content created with them, may be used for commercial "
    "purposes"
)
IDS_HELP = (
    "labelled Jukebox priors need its artist and genre id files: pass --ids DIR, a folder "
    "holding v2_artist_ids.txt, v2_genre_ids.txt (5b, 5b_lyrics, upsamplers) and "
    "v3_artist_ids.txt, v3_genre_ids.txt (1b_lyrics), found in jukebox/data/ids/ of a checkout "
    "of github.com/openai/jukebox"
)
# Jukebox resets a restored codebook's EMA statistics to this many tokens per code
# (make_models: sample_length / hop_length / codebook size) before fine-tuning it; the
# released VQ-VAE trained on 393,216-sample windows.
JUKEBOX_VQVAE_SAMPLE_LENGTH = 393_216

Progress = Callable[[str, int, int], None]  # (component, tensors done, tensors)


class JukeboxImportError(ConvertError):
    """Import arguments that cannot work; the message says what to pass instead."""


def _shapes(state: dict[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in state.items()}


def _meta_shapes(build: Callable[[], torch.nn.Module]) -> tuple[dict[str, tuple[int, ...]], int]:
    with torch.device("meta"):
        model = build()
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}, count_parameters(model)


class _Converter:
    """Makes each jukelite tensor of one level from the Jukebox checkpoint on demand, popping
    its source tensor, so the file is written while the checkpoint shrinks."""

    def __init__(self, state: dict[str, torch.Tensor], names: dict[str, tuple[str, str]],
                 dtype: torch.dtype, what: str, progress: Progress | None) -> None:
        self.state, self.dtype, self.what, self.progress = state, dtype, what, progress
        self.sources = {name: (key, layout) for key, (name, layout) in names.items()}
        self.made: dict[str, torch.Tensor] = {}  # kept when `keep` asks (small tensors only)
        self.done = 0

    def specs(self, shapes: dict[str, tuple[int, ...]],
              extra: dict[str, torch.dtype]) -> list[tuple[str, torch.dtype, tuple[int, ...]]]:
        mapped = [(name, self.dtype, shapes[name]) for name in self.sources]
        return mapped + [(name, dtype, shapes[name]) for name, dtype in extra.items()]

    def __call__(self, name: str) -> torch.Tensor:
        key, layout = self.sources[name]
        tensor = self.state.pop(key)
        if not torch.isfinite(tensor).all():
            raise MappingError(f"{self.what}: {key} holds NaN or infinite values")
        out = to_jukelite(tensor.to(self.dtype), layout).contiguous()
        self.done += 1
        if self.progress is not None:
            self.progress(self.what, self.done, len(self.sources))
        return out


def _source(checkpoint: Checkpoint) -> dict[str, Any]:
    return {"file": str(checkpoint.path.resolve()), "sha256": file_sha256(checkpoint.path),
            "bytes": checkpoint.path.stat().st_size, "step": checkpoint.step,
            "legacy_format": checkpoint.legacy_format}


def _provenance(source: dict[str, Any], preset: str, hps: dict[str, Any],
                overrides: dict[str, Any]) -> dict[str, Any]:
    return {"imported_from": "jukebox", "source": source, "preset": preset,
            "overrides": overrides, "jukebox_hparams": _jsonable(hps), "license": LICENSE_NOTE,
            "versions": package_versions(),
            "imported_at": time.strftime("%Y-%m-%dT%H:%M:%S")}


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def _import_vqvae(
    bundle: Path, path: Path, config: VQVAEConfig, provenance: Callable[[dict], dict],
    dtype: torch.dtype, progress: Progress | None,
) -> None:
    checkpoint = read_checkpoint(path)
    state = checkpoint.model
    source = _source(checkpoint)
    shapes = _shapes(state)
    by_level: dict[int, dict[str, tuple[int, ...]]] = {level: {} for level in
                                                          range(config.levels)}
    stray = []
    for key, shape in shapes.items():
        level = next((lv for lv in by_level if key.startswith(
            (f"encoders.{lv}.", f"decoders.{lv}.", f"bottleneck.level_blocks.{lv}."))), None)
        (by_level[level].__setitem__(key, shape) if level is not None else stray.append(key))
    if stray:
        raise MappingError(f"{path}: {len(stray)} key(s) fit no level of a {config.levels}-level "
                           "VQ-VAE:\n  " + "\n  ".join(sorted(stray)[:20]))
    for level, level_shapes in by_level.items():
        what = f"{path.name} (VQ-VAE level {level})"
        check_revealed(shapes, vqvae_reveals(level), vqvae_sizes(config, level), what)
        expected, parameters = _meta_shapes(lambda lv=level: LevelVQVAE(config, lv))
        statistics = _codebook_statistics(config, level, dtype)
        key_map = map_keys(level_shapes, expected, vqvae_rules(level), what, set(statistics))
        convert = _Converter(state, key_map.names, dtype, what, progress)
        codebook: list[torch.Tensor] = []

        def make(name: str, convert=convert, codebook=codebook, statistics=statistics):
            if name in statistics:
                return statistics[name](codebook[0])
            tensor = convert(name)
            if name == "quantizer.codebook":
                codebook.append(tensor)
            return tensor

        specs = convert.specs(expected, {k: torch.bool if k.endswith("initialized") else dtype
                                         for k in statistics})
        add_converted_level(
            bundle, "vqvae", level, partial(write_streaming, specs=specs, make=make, metadata={
                "format": "jukelite-vqvae", "level": str(level)}),
            {"config": config.to_dict(), "hop_length": config.hop_length(level),
             "parameters": parameters, "provenance": provenance(source)},
            {"sample_rate": config.sample_rate, "channels": config.channels,
             "levels": config.levels},
        )
        log.info("VQ-VAE level %d: %d tensors", level, len(specs))


def _codebook_statistics(
    config: VQVAEConfig, level: int, dtype: torch.dtype
) -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    """The jukelite-only tensors beside a codebook, made from it: its EMA state as Jukebox
    restores it for fine-tuning (every code counted as used by sample_length / hop /
    codebook_size tokens) and unit loss normalisers (a fine-tuning run measures its data)."""
    count = JUKEBOX_VQVAE_SAMPLE_LENGTH / config.hop_length(level) / config.codebook_size
    return {
        "quantizer.ema_sum": lambda k: (k.float() * count).to(dtype),
        "quantizer.ema_count": lambda k: torch.full((config.codebook_size,), count, dtype=dtype),
        "quantizer.initialized": lambda k: torch.tensor(True),
        "norm_l2": lambda k: torch.tensor(1.0, dtype=dtype),
        "norm_spec": lambda k: torch.tensor(1.0, dtype=dtype),
    }


def _vocabularies(component: str, hps: dict[str, Any], config: PriorConfig,
                  ids: Path | None) -> dict[str, Any]:
    """The prior's own label vocabulary (v2 or v3 id files) and lyric tokenizer."""
    vocabularies: dict[str, Any] = {}
    if config.labels:
        if ids is None:
            raise JukeboxImportError(f"{component}: {IDS_HELP}")
        version = "v3" if hps["labels_v3"] else "v2"
        vocabulary = read_jukebox_ids(ids, version, max_bow_genre_size=config.max_bow_genre_size,
                                      artist_bins=config.artist_bins,
                                      genre_bins=config.genre_bins)
        vocabularies["labels"] = vocabulary.to_dict()
    if config.lyrics != "none":
        version = "v3" if hps["labels_v3"] else "v2"
        tokenizer = LyricsTokenizer(version, normalization="jukebox")
        if tokenizer.vocab_size != config.n_vocab:
            raise HparamsError(f"{component}: n_vocab={config.n_vocab} but Jukebox's {version} "
                               f"lyric vocabulary has {tokenizer.vocab_size} ids (labels_v3 "
                               "decides the version)")
        vocabularies["lyrics"] = tokenizer.to_dict()
    return vocabularies


def _import_prior(
    bundle: Path, level: int, path: Path, hps: dict[str, Any], vq_config: VQVAEConfig,
    ids: Path | None, provenance: Callable[[dict], dict], dtype: torch.dtype,
    progress: Progress | None,
) -> None:
    component = prior_component(level)
    config = prior_config(component, hps, vq_config)
    vocabularies = _vocabularies(component, hps, config, ids)  # before the slow part
    checkpoint = read_checkpoint(path)
    state, what = checkpoint.model, f"{path.name} ({component})"
    source = _source(checkpoint)
    shapes = _shapes(state)
    check_revealed(shapes, PRIOR_REVEALS, prior_sizes(config), what)
    expected, parameters = _meta_shapes(lambda: LevelPrior(config))
    tied = not config.merged_decoder
    if tied:
        expected.pop("x_out.weight")
        head, embedding = state.get("prior.x_out.weight"), state.get("prior.x_emb.weight")
        if head is not None and embedding is not None and not torch.equal(head, embedding):
            raise MappingError(f"{what}: prior.x_out.weight differs from prior.x_emb.weight, so "
                               "the head is not tied: set merged_decoder: true in --hps")
    key_map = map_keys(shapes, expected, PRIOR_RULES, what, tied_head=tied)
    for key in key_map.skipped:
        del state[key]
    convert = _Converter(state, key_map.names, dtype, what, progress)
    specs = convert.specs(expected, {})
    add_converted_level(
        bundle, "priors", level, partial(write_streaming, specs=specs, make=convert, metadata={
            "format": "jukelite-prior", "level": str(level)}),
        {"config": config.to_dict(), "parameters": parameters,
         "vocabularies": vocabularies, "provenance": provenance(source)},
    )
    log.info("prior level %d: %d tensors, %s parameters", level, len(specs), f"{parameters:,}")


def import_jukebox(
    output: str | Path,
    vqvae: str | Path | None = None,
    priors: dict[int, str | Path] | None = None,
    preset: str | None = None,
    hps: str | Path | dict[str, dict[str, Any]] | None = None,
    ids: str | Path | None = None,
    dtype: str = "float32",
    progress: Progress | None = None,
) -> Path:
    """Import Jukebox checkpoints into the bundle `output` and return its path.

    `vqvae` is a VQ-VAE checkpoint (all its levels are imported); `priors` maps levels to prior
    checkpoints. A new bundle is built in a staging folder and renamed into place; importing only
    priors adds them to an existing bundle whose VQ-VAE matches the hparams.
    """
    priors = {int(k): Path(v) for k, v in (priors or {}).items()}
    if vqvae is None and not priors:
        raise JukeboxImportError("nothing to import: give --vqvae FILE and/or --prior LEVEL=FILE")
    if dtype not in PACK_DTYPES:
        raise JukeboxImportError(f"dtype must be one of {sorted(PACK_DTYPES)}, got {dtype!r}")
    for path in [*([Path(vqvae)] if vqvae else []), *priors.values()]:
        if not path.is_file():
            raise JukeboxImportError(f"{path}: no such checkpoint file")
    if ids is not None and not Path(ids).is_dir():
        raise JukeboxImportError(f"--ids {ids}: not a folder")
    overrides = hps if isinstance(hps, dict) else (read_hparams_file(hps) if hps else {})
    components = [VQVAE, *(prior_component(level) for level in sorted(priors))]
    resolved, applied = resolve_hparams(components, preset, overrides)
    vq_config = vqvae_config(resolved[VQVAE])
    torch_dtype = PACK_DTYPES[dtype]
    output = Path(output)

    def provenance_for(component: str) -> Callable[[dict], dict]:
        return lambda source: {
            **_provenance(source, preset or "", resolved[component], overrides.get(component,
                                                                                   {})),
            "hparams_from": next(a for a in applied if a.startswith(component + ":")),
            "dtype": dtype,
        }

    def add_priors(bundle: Path) -> None:
        for level, path in sorted(priors.items()):
            _import_prior(bundle, level, path, resolved[prior_component(level)], vq_config,
                          Path(ids) if ids else None, provenance_for(prior_component(level)),
                          torch_dtype, progress)

    if vqvae is None:
        _check_existing(output, vq_config)
        add_priors(output)
        return output
    if output.exists():
        raise JukeboxImportError(f"{output} already exists: choose a new bundle folder (or import "
                           "only --prior into an existing bundle)")
    staging = output.with_name(f".{output.name}.importing")
    if staging.exists():
        shutil.rmtree(staging)
    try:
        _import_vqvae(staging, Path(vqvae), vq_config, provenance_for(VQVAE), torch_dtype,
                      progress)
        add_priors(staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    (staging / ".lock").unlink(missing_ok=True)
    staging.rename(output)
    return output


def _check_existing(bundle: Path, config: VQVAEConfig) -> None:
    """Priors alone go into a bundle that already has the VQ-VAE their hparams describe."""
    if not (bundle / MANIFEST_NAME).is_file():
        raise JukeboxImportError(f"{bundle} is not a bundle yet: import the VQ-VAE too "
                                 "(--vqvae) or point -o at a bundle that has it")
    manifest = read_manifest(bundle)
    for level, entry in manifest["vqvae"].items():
        if entry["config"] != config.to_dict():
            raise BundleError(f"{bundle}: its VQ-VAE level {level} differs from the VQ-VAE the "
                              "hparams describe (compare --preset/--hps with jukelite info)")
