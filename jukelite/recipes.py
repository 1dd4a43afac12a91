"""Typed training recipes: YAML files read into dataclasses, with `section.key=value` overrides.

A recipe names what to train (`kind`, `level`), the data, the model sizes, the optimisation and
where the results go. Every key has a type; an unknown key or a value of the wrong type is an
error that names the file, the key and what was expected, so a typo never silently trains the
wrong model. Relative paths in a recipe are taken relative to the current working directory.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, MissingMandatoryValue, OmegaConfBaseException

from jukelite.prior.model import PriorConfig
from jukelite.vqvae.config import VQVAEConfig


class RecipeError(ValueError):
    """A recipe that cannot be used; the message lists every problem found."""


@dataclass
class DataSection:
    """Where the audio comes from and how it is cut into training windows."""

    manifest: str = MISSING
    sample_rate: int = 22050
    channels: int = 1
    sample_length: int = 65536
    valid_fraction: float = 0.1
    valid_windows: int = 64
    random_downmix: bool = True
    random_shift: bool = True
    cache_dir: str | None = None
    num_workers: int = 0
    stats_windows: int = 64


@dataclass
class TrainSection:
    """Optimisation, logging and checkpointing; shared by every kind of recipe."""

    steps: int = 2000
    batch_size: int = 8
    grad_accum: int = 1
    lr: float = 3.0e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    weight_decay: float = 0.0
    warmup: int = 100
    schedule: str = "constant"
    grad_clip: float = 1.0
    ema_decay: float | None = None
    save_every: int = 500
    eval_every: int = 500
    log_every: int = 10
    keep_checkpoints: int = 3
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"
    # how several processes (torchrun) share the work: "ddp" replicates the model on every
    # device; "fsdp" shards weights, gradients, optimizer state and EMA per Transformer block
    parallel: str = "ddp"
    progress: bool = True
    # prior recipes: fine-tune the prior of this level of another bundle (e.g. an imported
    # Jukebox model): its architecture, weights and vocabularies replace the model section
    init_from: str | None = None
    # prior recipes: the fraction of training windows whose artist, genre and lyrics are
    # replaced by a learned null, so that sampling can use classifier-free guidance (--guidance)
    cond_dropout: float = 0.0


@dataclass
class OutputSection:
    """The run directory (checkpoints, logs) and the bundle the trained weights go into."""

    dir: str = MISSING
    bundle: str = MISSING


@dataclass
class VQVAERecipe:
    """Trains one VQ-VAE level (`level: L`) or every level at once (`level: all`)."""

    kind: str = "vqvae"
    level: Any = "all"
    data: DataSection = field(default_factory=DataSection)
    model: VQVAEConfig = field(default_factory=VQVAEConfig)
    train: TrainSection = field(default_factory=TrainSection)
    output: OutputSection = field(default_factory=OutputSection)

    def levels(self) -> list[int]:
        """The VQ-VAE levels this recipe trains."""
        if self.level == "all":
            return list(range(self.model.levels))
        return [int(self.level)]


@dataclass
class PriorDataSection:
    """Songs for prior training; audio is encoded with the bundle's VQ-VAE and the codes cached."""

    manifest: str = MISSING
    valid_fraction: float = 0.1
    valid_windows: int = 64
    cache_dir: str | None = None
    num_workers: int = 0
    lyrics_version: str = "v2"


@dataclass
class PriorRecipe:
    """Trains the prior of one level (the top prior, or the upsampler of a lower level).

    The prior lands in `output.bundle`, whose VQ-VAE level encodes the training audio.
    """

    kind: str = "prior"
    level: int = 0
    data: PriorDataSection = field(default_factory=PriorDataSection)
    model: PriorConfig = field(default_factory=PriorConfig)
    train: TrainSection = field(default_factory=TrainSection)
    output: OutputSection = field(default_factory=OutputSection)


RECIPE_KINDS: dict[str, type] = {"vqvae": VQVAERecipe, "prior": PriorRecipe}
SCHEDULES = ("constant", "linear", "cosine")
PRECISIONS = ("auto", "fp32", "bf16")
PARALLEL_MODES = ("ddp", "fsdp")
# Keys whose value comes from another section, so the recipe states it once.
# "<bundle>" marks values read from the bundle's VQ-VAE when training starts.
DERIVED_MODEL_KEYS = {
    "vqvae": {"sample_rate": "data.sample_rate", "channels": "data.channels"},
    "prior": {"level": "level", "bins": "<bundle>", "sample_rate": "<bundle>"},
}


def _section_type(schema: type, key: str) -> type | None:
    """The dataclass of section `key` of `schema`, or None when `key` holds a plain value."""
    fields = {f.name: f for f in dataclasses.fields(schema)}
    factory = fields[key].default_factory if key in fields else dataclasses.MISSING
    sub_type = type(factory()) if factory is not dataclasses.MISSING else None
    return sub_type if sub_type is not None and dataclasses.is_dataclass(sub_type) else None


def _valid_keys(schema: type, prefix: str, hidden: frozenset[str]) -> str:
    """The keys `schema` offers at `prefix`, sorted, without those derived from elsewhere."""
    names = (f.name for f in dataclasses.fields(schema))
    return ", ".join(sorted(name for name in names if f"{prefix}{name}" not in hidden))


def _unknown_keys(
    schema: type,
    values: Any,
    prefix: str,
    problems: list[str],
    hidden: frozenset[str] = frozenset(),
) -> None:
    """Collect every key of `values` that `schema` (a dataclass) does not define.

    `hidden` holds full key names (e.g. `model.sample_rate`) that are not offered as valid keys
    because their value comes from another section."""
    if not isinstance(values, dict):
        return
    fields = {f.name for f in dataclasses.fields(schema)}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if key not in fields:
            valid = _valid_keys(schema, prefix, hidden)
            problems.append(f"unknown key '{name}'; valid keys here: {valid}")
            continue
        sub_type = _section_type(schema, key)
        if sub_type is not None:
            if not isinstance(value, dict):
                problems.append(f"'{name}' must be a mapping of keys, got {value!r}")
            else:
                _unknown_keys(sub_type, value, f"{name}.", problems, hidden)


def _hidden_keys(kind: str) -> frozenset[str]:
    return frozenset(f"model.{key}" for key in DERIVED_MODEL_KEYS.get(kind, {}))


def _omegaconf_message(exc: Exception, key: str = "?") -> str:
    """`'key': first line of the message` for an OmegaConf error."""
    key = getattr(exc, "full_key", "") or key
    message = getattr(exc, "msg", None) or str(exc) or type(exc).__name__
    return f"'{key}': {str(message).splitlines()[0]}"


def _parse_override(item: str, source: str) -> DictConfig:
    """One `section.key=value` override as a config; OmegaConf parses the value as YAML."""
    key, sep, value = item.partition("=")
    # OmegaConf reads `a.b` (no `=`) as `a.b=null` and `a..b=1` as an empty key: both typos.
    if not sep:
        raise RecipeError(f"{source}: override '{item}' must look like section.key=value")
    key = key.strip()
    if not all(key.split(".")):
        raise RecipeError(f"{source}: override '{item}' has an empty key")
    try:
        return OmegaConf.from_dotlist([f"{key}={value}"])
    except (yaml.YAMLError, OmegaConfBaseException) as exc:
        reason = str(exc).splitlines()[0]
        raise RecipeError(
            f"{source}: override '{item}': value is not valid YAML: {reason}"
        ) from exc


def _section_at(schema: type, dotted: str) -> type | None:
    """The dataclass of the section at `dotted` ("" is the recipe itself), or None."""
    section: type | None = schema
    for part in dotted.split(".") if dotted else []:
        section = _section_type(section, part) if section is not None else None
    return section


def _override_problem(kind: str, base: DictConfig, item: str, parsed: DictConfig) -> str:
    """Why `parsed` (one override) does not fit `base`, the schema of a `kind` recipe in struct
    mode; "" when it fits."""
    schema = RECIPE_KINDS[kind]
    key = item.partition("=")[0].strip()
    try:
        OmegaConf.merge(base, parsed)
    except ConfigKeyError as exc:
        name = exc.full_key or key
        parent = name.rpartition(".")[0]
        section = _section_at(schema, parent)
        problem = f"override '{item}': unknown key '{name}'"
        if section is not None:
            prefix = f"{parent}." if parent else ""
            valid = _valid_keys(section, prefix, _hidden_keys(kind))
            problem += f"; valid keys here: {valid}"
        return problem
    except (OmegaConfBaseException, TypeError, ValueError) as exc:
        if _section_at(schema, key) is not None:
            value = OmegaConf.select(parsed, key)
            if not isinstance(value, DictConfig):
                return f"override '{item}': '{key}' must be a mapping of keys, got {value!r}"
        return f"override '{item}': {_omegaconf_message(exc, key)}"
    return ""


def apply_overrides(raw: dict, overrides: list[str], source: str = "<recipe>") -> dict:
    """`raw` (a parsed recipe) with `section.key=value` overrides merged in.

    Each override is first merged into the schema of the recipe's kind in struct mode, so a
    mistyped key or a value of the wrong type fails naming the override (all bad overrides at
    once) instead of training something else."""
    if not overrides:
        return raw
    parsed = [_parse_override(item, source) for item in overrides]
    try:
        merged = OmegaConf.merge(*parsed)
    except (OmegaConfBaseException, TypeError) as exc:  # e.g. `train=3` then `train.steps=5`
        raise RecipeError(f"{source}: overrides clash: {_omegaconf_message(exc)}") from exc
    kind = merged.get("kind", raw.get("kind"))
    if isinstance(kind, str) and kind in RECIPE_KINDS:  # else recipe_from_dict names the kind
        base = OmegaConf.structured(RECIPE_KINDS[kind])
        OmegaConf.set_struct(base, True)
        problems = [
            _override_problem(kind, base, item, one)
            for item, one in zip(overrides, parsed, strict=True)
        ]
        if any(problems):
            raise RecipeError(f"{source}:\n  " + "\n  ".join(p for p in problems if p))
    try:
        combined = OmegaConf.merge(OmegaConf.create(raw), merged)
    except (OmegaConfBaseException, TypeError) as exc:
        raise RecipeError(f"{source}: {_omegaconf_message(exc)}") from exc
    return OmegaConf.to_container(combined)


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Any:
    """Read a YAML recipe, apply `section.key=value` overrides and return the typed recipe."""
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"recipe {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise RecipeError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise RecipeError(f"{path}: a recipe is a mapping of sections, got {type(raw).__name__}")
    raw = apply_overrides(raw, list(overrides or []), source=str(path))
    return recipe_from_dict(raw, source=str(path))


def _lookup(source: Any, dotted: str, default: Any = None) -> Any:
    """`source` (dicts or objects) at the dotted path, or `default` where it is absent."""
    node = source
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, dict) else getattr(node, part, None)
        if node is None:
            return default
    return node


def recipe_from_dict(raw: dict, source: str = "<recipe>") -> Any:
    """Validate a recipe given as a plain dict (the parsed YAML plus overrides)."""
    kind = raw.get("kind")
    if kind not in RECIPE_KINDS:
        raise RecipeError(f"{source}: 'kind' must be one of {sorted(RECIPE_KINDS)}, got {kind!r}")
    schema = RECIPE_KINDS[kind]
    problems: list[str] = []
    derived = DERIVED_MODEL_KEYS.get(kind, {})
    _unknown_keys(schema, raw, "", problems, _hidden_keys(kind))
    model = dict(raw.get("model") or {})
    for key, origin in derived.items():
        if key in model:
            if origin == "<bundle>":
                problems.append(f"'model.{key}' is read from the bundle's VQ-VAE; remove it")
            else:
                problems.append(f"'model.{key}' is taken from '{origin}'; set it there instead")
    if problems:
        raise RecipeError(f"{source}:\n  " + "\n  ".join(problems))
    defaults = schema()
    for key, origin in derived.items():
        if origin != "<bundle>":
            model[key] = _lookup(raw, origin, _lookup(defaults, origin))
    # Merge `model` last: a bad derived value (e.g. data.sample_rate) is then reported under the
    # key the user wrote, not under the model key it was copied into.
    raw = {**{k: v for k, v in raw.items() if k != "model"}, "model": model}
    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema), OmegaConf.create(raw))
        recipe = OmegaConf.to_object(merged)
    except MissingMandatoryValue as exc:
        raise RecipeError(f"{source}: '{exc.full_key}' is required but missing") from exc
    except OmegaConfBaseException as exc:
        raise RecipeError(f"{source}: {_omegaconf_message(exc)}") from exc
    except ValueError as exc:  # a section's own validation (e.g. VQVAEConfig.validate)
        raise RecipeError(f"{source}: {exc}") from exc
    _check_values(recipe, source)
    return recipe


def _check_values(recipe: Any, source: str) -> None:
    """Range and choice checks that types alone cannot express."""
    problems: list[str] = []
    train, data = recipe.train, recipe.data
    if train.schedule not in SCHEDULES:
        problems.append(f"'train.schedule' must be one of {SCHEDULES}, got {train.schedule!r}")
    if train.precision not in PRECISIONS:
        problems.append(f"'train.precision' must be one of {PRECISIONS}, got {train.precision!r}")
    if train.parallel not in PARALLEL_MODES:
        problems.append(
            f"'train.parallel' must be one of {PARALLEL_MODES}, got {train.parallel!r}"
        )
    for key in ("steps", "batch_size", "grad_accum", "save_every", "eval_every", "log_every"):
        if getattr(train, key) < 1:
            problems.append(f"'train.{key}' must be >= 1, got {getattr(train, key)}")
    if train.lr <= 0:
        problems.append(f"'train.lr' must be > 0, got {train.lr}")
    if len(train.betas) != 2:
        problems.append(f"'train.betas' must hold two numbers, got {train.betas}")
    if train.ema_decay is not None and not 0.0 < train.ema_decay < 1.0:
        problems.append(f"'train.ema_decay' must lie in (0, 1) or be null, got {train.ema_decay}")
    if getattr(data, "channels", 1) not in (1, 2):
        problems.append(f"'data.channels' must be 1 or 2, got {data.channels}")
    if not 0.0 <= data.valid_fraction < 1.0:
        problems.append(f"'data.valid_fraction' must lie in [0, 1), got {data.valid_fraction}")
    if isinstance(recipe, VQVAERecipe):
        problems += _check_vqvae(recipe)
        if train.init_from is not None:
            problems.append("'train.init_from' fine-tunes a prior; VQ-VAE recipes do not take "
                            "it")
        if train.cond_dropout:
            problems.append("'train.cond_dropout' is for prior recipes")
        if train.parallel == "fsdp":
            problems.append("'train.parallel: fsdp' shards the Transformer blocks of a prior; "
                            "a VQ-VAE has none and fits every device whole: use ddp")
    if not 0.0 <= train.cond_dropout < 1.0:
        problems.append(f"'train.cond_dropout' must lie in [0, 1), got {train.cond_dropout}")
    if isinstance(recipe, PriorRecipe) and data.lyrics_version not in ("v2", "v3"):
        problems.append(f"'data.lyrics_version' must be v2 or v3, got {data.lyrics_version!r}")
    if problems:
        raise RecipeError(f"{source}:\n  " + "\n  ".join(problems))


def _check_vqvae(recipe: VQVAERecipe) -> list[str]:
    problems: list[str] = []
    try:
        recipe.model.validate()
    except ValueError as exc:
        problems.append(f"model: {exc}")
        return problems
    level = recipe.level
    if level != "all" and (
        isinstance(level, bool)
        or not isinstance(level, int)
        or not 0 <= level < recipe.model.levels
    ):
        problems.append(
            f"'level' must be 'all' or an integer in [0, {recipe.model.levels}), got {level!r}"
        )
        return problems
    top_hop = max(recipe.model.hop_length(lv) for lv in recipe.levels())
    if recipe.data.sample_length % top_hop:
        problems.append(
            f"'data.sample_length' ({recipe.data.sample_length}) must be a multiple of the largest "
            f"hop length trained ({top_hop})"
        )
    return problems


# Recipe keys a resumed run may change. Everything else would make the resumed run silently
# differ from what its checkpoint, recipe and provenance say (the optimizer carries its own
# learning rate, the weights their sizes), so `--resume` refuses other changes. These only say
# how long to train and how often to report and save, or where results and caches live (a run
# or bundle may move between machines); they are applied and recorded in the run's changes.
SAFE_ON_RESUME = (
    "train.steps",
    "train.save_every",
    "train.eval_every",
    "train.log_every",
    "train.progress",
    "train.keep_checkpoints",
    "data.num_workers",
    "data.cache_dir",
    "output.dir",
    "output.bundle",
)


def _flatten(values: Any, prefix: str = "") -> dict[str, Any]:
    """`{"train": {"lr": 1}}` as `{"train.lr": 1}`; lists stay whole values."""
    if not isinstance(values, dict):
        return {prefix.rstrip("."): values}
    flat: dict[str, Any] = {}
    for key, value in values.items():
        flat.update(_flatten(value, f"{prefix}{key}."))
    return flat


ABSENT = "(not set)"


def recipe_differences(old: dict, new: dict) -> list[tuple[str, Any, Any]]:
    """Every dotted key whose value differs between two recipe dicts, as (key, old, new) in
    the new recipe's order; a key only one side has shows `ABSENT` on the other."""
    before, after = _flatten(old), _flatten(new)
    keys = [*after, *(key for key in before if key not in after)]
    return [
        (key, before.get(key, ABSENT), after.get(key, ABSENT))
        for key in keys
        if key not in before or key not in after or before[key] != after[key]
    ]


def recipe_to_dict(recipe: Any) -> dict:
    """The resolved recipe as plain data (for provenance and the run directory)."""
    return OmegaConf.to_container(OmegaConf.structured(recipe), resolve=True)
