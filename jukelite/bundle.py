"""Model bundles: one directory holding every trained level, loadable without pickles.

Layout (DESIGN.md section 3):
    jukelite.json                 format version, sample rate, channels, per-level hop lengths,
                                  model configs, vocabularies and provenance
    vqvae_level_{L}.safetensors   weights of VQ-VAE level L
    prior_level_{L}.safetensors   weights of prior level L (written by prior training)

Components are trained separately and each one adds itself to the bundle; the JSON file is
updated under a file lock and replaced atomically, so two runs writing into one bundle at once,
or a run killed half-way, never leave it corrupt.

The shipped demo bundle lives in the repository's `data/demo/` (source checkouts and editable
installs) and in `<prefix>/share/jukelite/demo/` after a wheel install (pyproject data-files).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import platform
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock
from safetensors import safe_open
from safetensors.torch import save_file

from jukelite.data.labels import LabelVocabulary
from jukelite.data.lyrics import LyricsTokenizer
from jukelite.fileio import atomic_path, write_json_atomic
from jukelite.prior.model import LevelPrior, PriorConfig
from jukelite.vqvae.config import VQVAEConfig
from jukelite.vqvae.model import LevelVQVAE, count_parameters

FORMAT_VERSION = 1
MANIFEST_NAME = "jukelite.json"
DEMO_NAME = "demo"
#: Sampling temperature of a level whose bundle records none (Jukebox samples at 0.99).
DEFAULT_TEMPERATURE = 0.99
#: Priors whose weights file is larger are built on the meta device before loading.
META_BUILD_BYTES = 64 * 2**20
#: Decoding steps per window of a parallel prior whose bundle records none.
DEFAULT_STEPS = 12


class BundleError(ValueError):
    """A bundle that is missing, incomplete or inconsistent; the message names what and where."""


def package_versions() -> dict[str, str]:
    """Versions that matter for reproducing a result."""
    versions = {"python": platform.python_version()}
    for name in ("jukelite", "torch", "torchaudio", "numpy", "safetensors"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def device_name(device: torch.device) -> str:
    """The GPU's or the CPU's model name (platform.processor() is empty on most Linux systems)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# ---------------------------------------------------------------------- integrity of weight files
VERIFIED_NAME = "verified.json"
#: Entries kept in the verification cache (the oldest go first; files that are gone always go).
VERIFIED_LIMIT = 4096
_REMEDY = "re-copy it or re-run the training/import"


def verification_cache_path() -> Path:
    """Where weight files whose sha256 was checked are remembered: outside the bundle, since
    bundles may be read-only (the installed demo). `JUKELITE_CACHE_DIR` overrides the folder."""
    override = os.environ.get("JUKELITE_CACHE_DIR")
    if override:
        return Path(override) / VERIFIED_NAME
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "jukelite" / VERIFIED_NAME


def _read_verified() -> dict[str, Any]:
    """The verification cache; empty when missing, unreadable or corrupt (it is only a hint)."""
    try:
        cache = json.loads(verification_cache_path().read_text())
    except (OSError, ValueError):
        return {}
    return cache if isinstance(cache, dict) else {}


def _stat_record(stat: os.stat_result, sha256: str) -> dict[str, Any]:
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": sha256}


def _is_verified(path: Path, stat: os.stat_result, sha256: str) -> bool:
    """Whether `path` was hashed to `sha256` and has not changed (size, mtime) since."""
    return _read_verified().get(str(path)) == _stat_record(stat, sha256)


def _remember_verified(path: Path, stat: os.stat_result, sha256: str) -> None:
    """Record a successful full check; best effort, since loading must never fail because the
    cache cannot be written (read-only home, full disk, a concurrent writer)."""
    try:
        cache = _read_verified()
        cache.pop(str(path), None)  # re-inserted last: the newest entries survive the limit
        cache = {k: v for k, v in cache.items() if os.path.exists(k)}
        cache[str(path)] = _stat_record(stat, sha256)
        write_json_atomic(verification_cache_path(),
                          dict(list(cache.items())[-VERIFIED_LIMIT:]), indent=None)
    except (OSError, ValueError, TypeError):
        pass


def _file_record(path: Path, remember: bool = True) -> dict[str, Any]:
    """The `sha256` and `size` jukelite.json records for a weight file just written; with
    `remember` (the file stays where it is) the first load need not hash it again."""
    stat = path.stat()
    sha256 = file_sha256(path)
    if remember:
        _remember_verified(path.resolve(), stat, sha256)
    return {"sha256": sha256, "size": stat.st_size}


def _file_problem(weights: Path, entry: dict[str, Any], full: bool = False) -> str | None:
    """What is wrong with a weight file listed in jukelite.json, or None when it is what the
    manifest says. The size is always compared (cheap; catches truncation); the sha256 when
    `full`, or when the file's size or mtime changed since its last successful check. Old
    manifests without `size` (or `sha256`) leave those checks out."""
    try:
        stat = weights.stat()
    except OSError:
        return f"listed in {MANIFEST_NAME} but missing"
    size = entry.get("size")
    if size is not None and stat.st_size != size:
        return (f"size differs from {MANIFEST_NAME} (expected {size} bytes, found "
                f"{stat.st_size}): the file is truncated or was replaced; {_REMEDY}")
    expected = entry.get("sha256")
    if not expected:
        return None
    key = weights.resolve()
    if not full and _is_verified(key, stat, expected):
        return None
    try:
        found = file_sha256(weights)
    except OSError as exc:
        return f"cannot be read ({exc})"
    if found != expected:
        return (f"sha256 differs from {MANIFEST_NAME} (expected {expected[:12]}..., found "
                f"{found[:12]}...): the file is corrupt or was replaced; {_REMEDY}")
    after = weights.stat()  # not rewritten while it was being hashed (reading moves atime)
    if (after.st_size, after.st_mtime_ns, after.st_ino) == (stat.st_size, stat.st_mtime_ns,
                                                            stat.st_ino):
        _remember_verified(key, stat, found)
    return None


def _read_tensors(
    weights: Path, convert: Callable[[torch.Tensor], torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Every tensor of a safetensors file, memory-mapped and passed through `convert` one at a
    time; NaN or inf anywhere is refused (a diverged run's weights would only make noise)."""
    state = {}
    try:
        with safe_open(str(weights), framework="pt", device="cpu") as handle:
            for key in handle.keys():  # noqa: SIM118 (safe_open is not a mapping)
                tensor = handle.get_tensor(key)
                if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                    nan = int(torch.isnan(tensor).sum())
                    inf = int(torch.isinf(tensor).sum())
                    raise BundleError(
                        f"{weights}: tensor {key!r} holds {nan} NaN and {inf} inf value(s) of "
                        f"{tensor.numel()}: the weights are unusable (a diverged run?); "
                        f"{_REMEDY}")
                state[key] = convert(tensor)
    except BundleError:
        raise
    except Exception as exc:  # safetensors raises several error types for corrupt files
        raise BundleError(f"{weights}: cannot be read as safetensors ({exc})") from exc
    return state


def _vqvae_history(manifest: dict[str, Any], entry: dict[str, Any]) -> list[str] | None:
    """The sha256s VQ-VAE `entry`'s weights had before packing (same weights, other dtype),
    or None when unknown: bundles packed before sizes were recorded kept no history."""
    if "packed_from_sha256" in entry:
        return entry["packed_from_sha256"]
    if manifest.get("packed") and "size" not in entry:
        return None
    return []


def _stale_priors(manifest: dict[str, Any]) -> dict[int, str]:
    """Priors whose provenance names VQ-VAE weights other than the bundle's (level -> why)."""
    stale = {}
    for level, entry in sorted(manifest.get("priors", {}).items(), key=lambda kv: int(kv[0])):
        provenance = entry.get("provenance") or {}
        source = provenance.get("recipe")  # the recipe itself, or the path of one
        run_dir = source.get("output", {}).get("dir") if isinstance(source, dict) else None
        recipe = f"its recipe, run dir {run_dir}" if run_dir else "its recipe"
        recorded = {int(level): provenance.get("vqvae_sha256"),
                    int(level) + 1: provenance.get("upper_vqvae_sha256")}
        for vq_level, sha in recorded.items():
            vqvae = manifest["vqvae"].get(str(vq_level))
            if not sha or vqvae is None:
                continue  # imported or older priors record nothing to compare
            history = _vqvae_history(manifest, vqvae)
            if history is None or sha == vqvae.get("sha256") or sha in history:
                continue
            stale[int(level)] = (
                f"prior level {level} was trained on VQ-VAE level {vq_level} with sha256 "
                f"{sha[:12]}..., but the bundle now holds {str(vqvae.get('sha256'))[:12]}...: "
                f"retrain the prior (jukelite train with {recipe}) or restore the VQ-VAE")
            break
    return stale


def read_manifest(bundle: str | Path) -> dict[str, Any]:
    """The parsed `jukelite.json` of a bundle directory."""
    path = Path(bundle) / MANIFEST_NAME
    if not path.is_file():
        raise BundleError(f"{bundle} is not a jukelite bundle: {MANIFEST_NAME} not found")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise BundleError(f"{path}: not valid JSON ({exc})") from exc
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise BundleError(
            f"{path}: format_version {version!r} is not supported "
            f"(this jukelite reads {FORMAT_VERSION})"
        )
    return manifest


@contextmanager
def _locked_manifest(bundle: Path) -> Iterator[dict[str, Any]]:
    """Read-modify-write `jukelite.json` while holding an exclusive lock on the bundle (a
    portable lock file: the same code on Linux, macOS and Windows)."""
    bundle.mkdir(parents=True, exist_ok=True)
    with FileLock(bundle / ".lock"):
        path = bundle / MANIFEST_NAME
        manifest = read_manifest(bundle) if path.exists() else _new_manifest()
        yield manifest
        write_json_atomic(path, manifest)


def _new_manifest() -> dict[str, Any]:
    return {
        "format_version": FORMAT_VERSION,
        "sample_rate": None,
        "channels": None,
        "levels": None,
        "hop_lengths": {},
        "vqvae": {},
        "priors": {},
    }


def _save_weights(path: Path, module: torch.nn.Module, metadata_: dict[str, str]) -> None:
    tensors = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata_)


def save_vqvae_level(
    bundle: str | Path,
    model: LevelVQVAE,
    provenance: dict[str, Any] | None = None,
    metrics: dict[str, float] | None = None,
) -> Path:
    """Write one VQ-VAE level's weights and its entry in `jukelite.json`."""
    bundle = Path(bundle)
    config: VQVAEConfig = model.config
    level = model.level
    weights = bundle / f"vqvae_level_{level}.safetensors"
    with _locked_manifest(bundle) as manifest:
        for key, value in (
            ("sample_rate", config.sample_rate),
            ("channels", config.channels),
            ("levels", config.levels),
        ):
            if manifest[key] is not None and manifest[key] != value:
                raise BundleError(
                    f"{bundle}: cannot add VQ-VAE level {level} with {key}={value}; "
                    f"the bundle already has {key}={manifest[key]}"
                )
            manifest[key] = value
        _save_weights(weights, model, {"format": "jukelite-vqvae", "level": str(level)})
        manifest["hop_lengths"][str(level)] = model.hop_length
        manifest["vqvae"][str(level)] = {
            "file": weights.name,
            "config": config.to_dict(),
            "hop_length": model.hop_length,
            "parameters": count_parameters(model),
            **_file_record(weights),
            "metrics": metrics or {},
            "provenance": {**(provenance or {}), "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S")},
        }
    return weights


def vqvae_levels(bundle: str | Path) -> list[int]:
    """Levels whose VQ-VAE is present in the bundle, bottom first."""
    return sorted(int(level) for level in read_manifest(bundle)["vqvae"])


def _read_level(
    bundle: Path, section: str, level: int, what: str
) -> tuple[dict[str, Any], dict[str, torch.Tensor], Path]:
    """The manifest entry, weights and weights path of `section` ("vqvae" or "priors") level L."""
    entries = read_manifest(bundle)[section]
    entry = entries.get(str(level))
    if entry is None:
        present = sorted(entries) or "none"
        raise BundleError(f"{bundle} has no {what} level {level} (levels present: {present})")
    weights = bundle / entry["file"]
    if not weights.is_file():
        raise BundleError(f"{bundle}: {entry['file']} is listed in {MANIFEST_NAME} but missing")
    problem = _file_problem(weights, entry)
    if problem:
        raise BundleError(f"{weights}: {problem}")
    # Packed bundles may store float16; models are built and run in float32 (cast later on
    # demand). The file is memory-mapped and cast one tensor at a time, so a half-precision
    # bundle never sits in memory in both precisions.
    state = _read_tensors(weights, lambda t: t.float() if t.is_floating_point() else t)
    return entry, state, weights


def _load_state(model: torch.nn.Module, state: dict, weights: Path, assign: bool = False) -> None:
    try:
        model.load_state_dict(state, strict=True, assign=assign)
    except RuntimeError as exc:
        raise BundleError(f"{weights}: weights do not match its config ({exc})") from exc


def load_vqvae_level(
    bundle: str | Path, level: int, device: str | torch.device = "cpu"
) -> LevelVQVAE:
    """Build VQ-VAE level `level` from the bundle, in eval mode."""
    entry, state, weights = _read_level(Path(bundle), "vqvae", level, "VQ-VAE")
    model = LevelVQVAE(VQVAEConfig.from_dict(entry["config"]), level)
    _load_state(model, state, weights)
    return model.to(device).eval()


def _vocabulary_sizes(
    labels: dict[str, Any] | None, lyrics: dict[str, Any] | None
) -> dict[str, int]:
    """Entries in each vocabulary a prior uses (id 0, "unknown" or padding, included); for
    Jukebox id files, the embedding rows."""
    sizes = {}
    if labels:
        vocabulary = LabelVocabulary.from_dict(labels)
        sizes["artists"] = vocabulary.n_artists
        sizes["genre words" if vocabulary.normalization != "jukebox_v3" else "genres"] = (
            vocabulary.n_genres)
    if lyrics:
        tokenizer = LyricsTokenizer.from_dict(lyrics)
        sizes[f"lyric characters ({tokenizer.version})"] = tokenizer.vocab_size
    return sizes


def _level_vocabularies(manifest: dict[str, Any], level: str) -> dict[str, Any]:
    """The label and lyrics vocabularies prior `level` reads: its own, else the bundle's."""
    own = (manifest["priors"].get(level) or {}).get("vocabularies") or {}
    return {kind: own.get(kind) or manifest.get(kind) for kind in ("labels", "lyrics")}


def _bundle_vocabularies(manifest: dict[str, Any]) -> dict[str, Any]:
    """The bundle-wide vocabularies, else the top prior's own (as `Bundle.vocabulary`)."""
    top = max(manifest.get("priors", {}), key=int, default=None)
    own = _level_vocabularies(manifest, top) if top is not None else {}
    return {kind: manifest.get(kind) or own.get(kind) for kind in ("labels", "lyrics")}


def describe(bundle: str | Path) -> dict[str, Any]:
    """A summary of a bundle for `jukelite info`: levels, hops, sizes and provenance."""
    bundle = Path(bundle)
    manifest = read_manifest(bundle)
    sample_rate = manifest["sample_rate"]
    levels = []
    for level, entry in sorted(manifest["vqvae"].items(), key=lambda kv: int(kv[0])):
        hop = entry["hop_length"]
        config = entry["config"]
        levels.append(
            {
                "level": int(level),
                "hop_length": hop,
                "tokens_per_second": sample_rate / hop if sample_rate else None,
                "codebook": f"{config['codebook_size']} x {config['code_dim']}",
                "width": config["width"][int(level)],
                "depth": config["depth"][int(level)],
                "parameters": entry["parameters"],
                "metrics": entry.get("metrics", {}),
                "trained_steps": entry.get("provenance", {}).get("steps"),
            }
        )
    size = sum(p.stat().st_size for p in bundle.glob("*.safetensors"))
    shared = _bundle_vocabularies(manifest)
    names = LabelVocabulary.from_dict(shared["labels"]) if shared["labels"] else None
    per_level = {level: _vocabulary_sizes(**_level_vocabularies(manifest, level))
                 for level in sorted(manifest.get("priors", {}), key=int)}
    differ = len({json.dumps(sizes, sort_keys=True) for sizes in per_level.values()}) > 1
    return {
        "bundle": str(bundle),
        "format_version": manifest["format_version"],
        "sample_rate": sample_rate,
        "channels": manifest["channels"],
        "levels": manifest["levels"],
        "vqvae": levels,
        "priors": manifest.get("priors", {}),
        "vocabularies": _vocabulary_sizes(shared["labels"], shared["lyrics"]),
        # sizes per prior level, only when the priors read different vocabularies
        "level_vocabularies": per_level if differ else {},
        "artists": names.known("artist") if names else [],  # "unknown" left out
        "genres": names.known("genre") if names else [],
        "lyric_characters": "".join((shared["lyrics"] or {}).get("chars", [])),
        "sampling": manifest.get("sampling", {}),
        # prior level -> why its VQ-VAE is not the one it was trained on
        "stale_priors": {str(k): v for k, v in _stale_priors(manifest).items()},
        "size_bytes": size,
        "provenance": {
            level["level"]: manifest["vqvae"][str(level["level"])].get("provenance", {})
            for level in levels
        },
    }


def save_prior_level(
    bundle: str | Path,
    model: torch.nn.Module,
    vocabularies: dict[str, Any],
    provenance: dict[str, Any] | None = None,
    metrics: dict[str, float] | None = None,
    per_level: bool = False,
) -> Path:
    """Write one prior level's weights and its entry (config, vocabularies) in `jukelite.json`.

    `vocabularies` holds the label vocabulary (`labels`) and, for lyric priors, the lyrics
    tokenizer (`lyrics`); they are stored at the top level so every prior of the bundle
    shares one artist/genre vocabulary. With `per_level` they are stored in this prior's
    entry instead (`"vocabularies": {"labels": ..., "lyrics": ...}`) and may differ from the
    other priors': imported Jukebox models read v2 ids in the upsamplers and v3 ids in the
    1b_lyrics top prior.
    """
    bundle = Path(bundle)
    config = model.config
    level = config.level
    weights = bundle / f"prior_level_{level}.safetensors"
    with _locked_manifest(bundle) as manifest:
        if str(level) not in manifest["vqvae"]:
            raise BundleError(
                f"{bundle}: cannot add prior level {level} without VQ-VAE level {level}"
            )
        labels = vocabularies.get("labels")
        if labels is not None and not per_level:  # per level: kept in the entry below
            if manifest.get("labels") not in (None, labels):
                raise BundleError(
                    f"{bundle}: prior level {level} was trained with a different artist/genre "
                    "vocabulary than the bundle's other priors"
                )
            manifest["labels"] = labels
        if vocabularies.get("lyrics") is not None and not per_level:
            manifest["lyrics"] = vocabularies["lyrics"]
        state = {
            k: v
            for k, v in model.state_dict().items()
            if k != "x_out.weight" or config.merged_decoder
        }  # a tied head is the embedding: store it once
        tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
        with atomic_path(weights) as tmp:
            save_file(tensors, str(tmp), metadata={"format": "jukelite-prior", "level": str(level)})
        manifest["priors"][str(level)] = {
            "file": weights.name,
            "config": config.to_dict(),
            "parameters": count_parameters(model),
            **_file_record(weights),
            "metrics": metrics or {},
            "provenance": {**(provenance or {}), "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S")},
        }
        if per_level:
            manifest["priors"][str(level)]["vocabularies"] = {
                "labels": labels, "lyrics": vocabularies.get("lyrics")}
    return weights


def load_prior_level(
    bundle: str | Path, level: int, device: str | torch.device = "cpu"
) -> LevelPrior:
    """Build prior level `level` from the bundle, in eval mode. A large prior is built on the
    meta device and filled with the stored tensors, so it is never initialised twice; a small
    one is built directly, because random init on the meta device makes torch import its
    compiler (seconds of every `jukelite sample`)."""
    entry, state, weights = _read_level(Path(bundle), "priors", level, "prior")
    config = PriorConfig.from_dict(entry["config"])
    large = entry.get("size", weights.stat().st_size) > META_BUILD_BYTES
    with torch.device("meta") if large else contextlib.nullcontext():
        model = LevelPrior(config)
    if not config.merged_decoder and "embedding.x_emb.weight" in state:
        state["x_out.weight"] = state["embedding.x_emb.weight"]  # a tied head is stored once
    _load_state(model, state, weights, assign=True)
    if not config.merged_decoder:
        model.x_out.weight = model.embedding.x_emb.weight
    return model.to(device).eval()


PACK_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


def check_temperature(value: float) -> float:
    """The one rule for a sampling temperature, whether requested or recorded in a bundle."""
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise ValueError(f"temperature must be a finite number > 0, got {value}")
    return float(value)


def _sampling_defaults(
    manifest: dict[str, Any], source: Path, temperature: dict[int, float] | None,
    steps: dict[int, int] | None, guidance: dict[int, float] | None,
) -> dict[str, Any]:
    """The manifest's "sampling" section with the given per-level defaults checked and set."""
    configs = {int(level): PriorConfig.from_dict(entry["config"])
               for level, entry in manifest["priors"].items()}
    checks: dict[str, tuple[Any, Callable[[int, Any], str | None]]] = {
        "temperature": (temperature, lambda level, value: _problem(check_temperature, value)),
        "steps": (steps, lambda level, value: (
            f"steps must be an integer >= 1, got {value!r}"
            if not isinstance(value, int) or value < 1 else None if configs[level].parallel
            else "steps are for parallel priors; this one decodes autoregressively")),
        "guidance": (guidance, lambda level, value: (
            f"guidance must be a finite number >= 0, got {value!r}"
            if not math.isfinite(value) or value < 0 else None if configs[level].guidance
            else "guidance needs a prior trained with train.cond_dropout > 0; this one was not")),
    }
    sampling = dict(manifest.get("sampling", {}))
    for key, (values, problem_of) in checks.items():
        if not values:
            continue
        unknown = sorted(set(values) - set(configs))
        if unknown:
            raise BundleError(f"{key} given for level(s) {unknown}, but {source} has priors for "
                              f"levels {sorted(configs)}")
        for level, value in values.items():
            problem = problem_of(level, value)
            if problem:
                raise BundleError(f"level {level}: {problem}")
        cast = int if key == "steps" else float
        sampling[key] = {str(k): cast(v) for k, v in sorted(values.items())}
    return sampling


def _problem(check: Callable[[Any], Any], value: Any) -> str | None:
    try:
        check(value)
    except ValueError as exc:
        return str(exc)
    return None


def pack_bundle(
    source: str | Path, target: str | Path, dtype: str = "float16",
    notes: dict[str, Any] | None = None, temperature: dict[int, float] | None = None,
    steps: dict[int, int] | None = None, guidance: dict[int, float] | None = None,
) -> dict[str, Any]:
    """Copy a bundle with its weights stored as `dtype` (half the size in float16; loading casts
    back to float32), recording the packing and `notes` under "packed" in `jukelite.json`.

    `temperature`, `steps` (parallel priors) and `guidance` (priors trained with cond_dropout),
    each {level: value}, become the bundle's sampling defaults of those levels (under
    "sampling"; the others keep the library defaults): how a model sounds best is knowledge
    that belongs with the model. Requests still override them.

    The target is written in a temporary directory and renamed into place, so it is either
    complete or absent. Source files are checked (size, sha256, finite values) first, so a
    corrupt file is refused rather than packed under a fresh checksum. Returns the new manifest.
    """
    if dtype not in PACK_DTYPES:
        raise BundleError(f"pack dtype must be one of {sorted(PACK_DTYPES)}, got {dtype!r}")
    source, target = Path(source), Path(target)
    manifest = read_manifest(source)
    sampling = _sampling_defaults(manifest, source, temperature, steps, guidance)
    if sampling:
        manifest["sampling"] = sampling
    if target.exists():
        raise BundleError(f"{target} already exists: remove it or choose another target")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.name}.packing")
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir()
    cast = PACK_DTYPES[dtype]
    try:
        for section in ("vqvae", "priors"):
            for entry in manifest[section].values():
                weights = source / entry["file"]
                problem = _file_problem(weights, entry)
                if problem:
                    raise BundleError(f"{weights}: {problem}")
                state = _read_tensors(weights, lambda t: t.to(cast) if t.is_floating_point()
                                      else t)
                save_file(state, str(staging / entry["file"]), metadata={"packed_dtype": dtype})
                if section == "vqvae":  # priors name the VQ-VAE they were trained on by sha256
                    history = _vqvae_history(manifest, entry)  # "packed" is still source's
                    entry["packed_from_sha256"] = None if history is None else list(
                        dict.fromkeys([*history, *filter(None, [entry.get("sha256")])]))
                entry.update(_file_record(staging / entry["file"], remember=False))
        manifest["packed"] = {
            "from": str(source),
            "dtype": dtype,
            "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
            **(notes or {}),
        }
        write_json_atomic(staging / MANIFEST_NAME, manifest)
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    for entry in [*manifest["vqvae"].values(), *manifest["priors"].values()]:
        weights = (target / entry["file"]).resolve()
        _remember_verified(weights, weights.stat(), entry["sha256"])
    return manifest


# ---------------------------------------------------------------------- reading a whole bundle
@dataclass(frozen=True)
class Bundle:
    """A bundle's manifest read once: what sampling and validation need to know about every
    level, with the weights loaded only when a component is asked for."""

    path: Path
    manifest: dict[str, Any]

    @classmethod
    def open(cls, path: str | Path) -> Bundle:
        return cls(Path(path), read_manifest(path))

    @property
    def sample_rate(self) -> int:
        return self.manifest["sample_rate"]

    @property
    def channels(self) -> int:
        return self.manifest["channels"]

    @cached_property
    def levels(self) -> list[int]:
        """VQ-VAE levels present, finest first."""
        return sorted(int(level) for level in self.manifest["vqvae"])

    @property
    def top_level(self) -> int:
        return self.levels[-1]

    @cached_property
    def hop_lengths(self) -> dict[int, int]:
        return {int(level): hop for level, hop in self.manifest["hop_lengths"].items()}

    @cached_property
    def prior_configs(self) -> dict[int, PriorConfig]:
        return {int(level): PriorConfig.from_dict(entry["config"])
                for level, entry in self.manifest["priors"].items()}

    @cached_property
    def vocabulary(self) -> LabelVocabulary | None:
        """The bundle-wide artist/genre vocabulary, else the top prior's own."""
        if self.manifest.get("labels"):
            return self._shared_labels
        return self._top_prior_own[0]

    @cached_property
    def tokenizer(self) -> LyricsTokenizer | None:
        """The bundle-wide lyrics tokenizer, else the top prior's own."""
        if self.manifest.get("lyrics"):
            return self._shared_lyrics
        return self._top_prior_own[1]

    @cached_property
    def _per_level_vocabularies(
        self,
    ) -> dict[int, tuple[LabelVocabulary | None, LyricsTokenizer | None]]:
        """Each prior's own vocabularies (None where it has none), parsed once."""
        parsed = {}
        for level, entry in self.manifest["priors"].items():
            own = entry.get("vocabularies") or {}
            labels, lyrics = own.get("labels"), own.get("lyrics")
            parsed[int(level)] = (LabelVocabulary.from_dict(labels) if labels else None,
                                  LyricsTokenizer.from_dict(lyrics) if lyrics else None)
        return parsed

    @property
    def _top_prior_own(self) -> tuple[LabelVocabulary | None, LyricsTokenizer | None]:
        levels = self._per_level_vocabularies
        return levels[max(levels)] if levels else (None, None)

    def _own_vocabularies(
        self, level: int
    ) -> tuple[LabelVocabulary | None, LyricsTokenizer | None]:
        if level not in self._per_level_vocabularies:
            raise BundleError(f"{self.path} has no prior level {level} (priors: "
                              f"{sorted(self._per_level_vocabularies)})")
        return self._per_level_vocabularies[level]

    def label_vocabulary(self, level: int) -> LabelVocabulary | None:
        """The artist/genre vocabulary prior `level` reads: its own, else the bundle's."""
        own = self._own_vocabularies(level)[0]
        if own is not None:
            return own
        return self._shared_labels if self.manifest.get("labels") else None

    def lyrics_tokenizer(self, level: int) -> LyricsTokenizer | None:
        """The lyrics tokenizer prior `level` reads: its own, else the bundle's."""
        own = self._own_vocabularies(level)[1]
        if own is not None:
            return own
        return self._shared_lyrics if self.manifest.get("lyrics") else None

    @cached_property
    def _shared_labels(self) -> LabelVocabulary:
        return LabelVocabulary.from_dict(self.manifest["labels"])

    @cached_property
    def _shared_lyrics(self) -> LyricsTokenizer:
        return LyricsTokenizer.from_dict(self.manifest["lyrics"])

    @cached_property
    def default_temperature(self) -> dict[int, float]:
        """Per level: the bundle's own (`jukelite pack --temperature`), else 0.99."""
        recorded = self.manifest.get("sampling", {}).get("temperature", {})
        return {level: float(recorded.get(str(level), DEFAULT_TEMPERATURE))
                for level in self.levels}

    @cached_property
    def default_steps(self) -> dict[int, int]:
        """Per parallel prior: decoding steps per window (`jukelite pack --steps`, else 12)."""
        recorded = self.manifest.get("sampling", {}).get("steps", {})
        return {level: int(recorded.get(str(level), DEFAULT_STEPS))
                for level, config in self.prior_configs.items() if config.parallel}

    @cached_property
    def default_guidance(self) -> dict[int, float]:
        """Per level with a recorded default (`jukelite pack --guidance`): its guidance scale."""
        recorded = self.manifest.get("sampling", {}).get("guidance", {})
        return {int(level): float(value) for level, value in recorded.items()}

    @cached_property
    def sha256(self) -> str:
        """Of `jukelite.json`: names the exact models a sampling run used."""
        return file_sha256(self.path / MANIFEST_NAME)

    def check_complete(self, levels: list[int] | None = None) -> None:
        """Sampling `levels` (default: all) needs their VQ-VAE levels and a prior for each; a
        bundle of a VQ-VAE and its top prior alone can already sample the top level."""
        levels = self.levels if levels is None else levels
        missing = [level for level in levels if level not in self.prior_configs]
        if not self.levels or missing:
            raise BundleError(
                f"{self.path} cannot sample yet: it has no prior for level(s) {missing} "
                f"(VQ-VAE levels {self.levels}, priors {sorted(self.manifest['priors'])})"
            )

    def stale_priors(self) -> dict[int, str]:
        """Prior level -> why: priors whose provenance records VQ-VAE weights (sha256) other
        than the bundle holds now, i.e. trained on codes the VQ-VAE no longer makes. Imported
        priors and older bundles record nothing and are never flagged."""
        return _stale_priors(self.manifest)

    def verify(self, report: Callable[[Path, str | None], None] | None = None) -> list[str]:
        """Hash every listed weight file in full (ignoring the verification cache) and read its
        tensors; returns one "path: problem" per bad file (empty: all good). `report(path,
        problem or None)` is told after each file, so a long check can show its progress."""
        problems = []
        for section in ("vqvae", "priors"):
            for _, entry in sorted(self.manifest[section].items(), key=lambda kv: int(kv[0])):
                weights = self.path / entry["file"]
                problem = _file_problem(weights, entry, full=True)
                if problem is None:
                    try:
                        _read_tensors(weights, lambda t: t.new_empty(0))  # readable, finite
                    except BundleError as exc:
                        problem = str(exc).removeprefix(f"{weights}: ")
                if problem is not None:
                    problems.append(f"{weights}: {problem}")
                if report is not None:
                    report(weights, problem)
        return problems

    def vqvae(self, level: int, device: str | torch.device = "cpu") -> LevelVQVAE:
        return load_vqvae_level(self.path, level, device)

    def prior(
        self, level: int, device: str | torch.device = "cpu", dtype: torch.dtype | None = None
    ) -> LevelPrior:
        prior = load_prior_level(self.path, level, device)
        return prior if dtype is None else prior.to(dtype)


def verify_bundle(path: str | Path) -> list[str]:
    """Every problem of a bundle's weight files, fully hashed (see `Bundle.verify`)."""
    return Bundle.open(path).verify()


# ---------------------------------------------------------------------- the demo bundle
def demo_bundle_candidates() -> list[Path]:
    """Places the shipped demo bundle is looked for, first match wins."""
    repository = Path(__file__).resolve().parents[1] / "data" / DEMO_NAME
    return [repository, Path(sys.prefix) / "share" / "jukelite" / DEMO_NAME]


def demo_bundle_path() -> Path:
    """The directory of the shipped demo bundle; a clear error when the install lacks it."""
    candidates = demo_bundle_candidates()
    for folder in candidates:
        if (folder / MANIFEST_NAME).is_file():
            return folder
    searched = ", ".join(str(c) for c in candidates)
    raise BundleError(
        f"the demo model is not installed (looked in {searched}); install jukelite from its "
        "repository (pip install -e .) or pass --model / the path of a trained bundle"
    )


# ---------------------------------------------------------------------- components made elsewhere
def add_converted_level(
    bundle: str | Path,
    section: str,
    level: int,
    write: Callable[[Path], None],
    entry: dict[str, Any],
    manifest_fields: dict[str, Any] | None = None,
) -> Path:
    """Add one level whose weights are made outside training (an importer, which may stream
    them: `write(path)` writes the safetensors file), under the same lock and atomic writes as
    trained components. `section` is "vqvae" or "priors"; `entry` holds its config,
    parameters, provenance (and `hop_length` for a VQ-VAE); `manifest_fields` (sample_rate,
    channels, levels) must agree with what the bundle already holds."""
    if section not in ("vqvae", "priors"):
        raise BundleError(f"section must be 'vqvae' or 'priors', got {section!r}")
    bundle = Path(bundle)
    prefix = "vqvae" if section == "vqvae" else "prior"
    weights = bundle / f"{prefix}_level_{level}.safetensors"
    with _locked_manifest(bundle) as manifest:
        for key, value in (manifest_fields or {}).items():
            if manifest.get(key) is not None and manifest[key] != value:
                raise BundleError(f"{bundle}: cannot add {prefix} level {level} with "
                                  f"{key}={value}; the bundle has {key}={manifest[key]}")
            manifest[key] = value
        if section == "priors" and str(level) not in manifest["vqvae"]:
            raise BundleError(f"{bundle}: cannot add prior level {level} without VQ-VAE level "
                              f"{level}")
        with atomic_path(weights) as tmp:
            write(tmp)
        if section == "vqvae":
            manifest["hop_lengths"][str(level)] = entry["hop_length"]
        manifest[section][str(level)] = {
            "file": weights.name, **_file_record(weights, remember=False), "metrics": {},
            **entry,
        }
    return weights
