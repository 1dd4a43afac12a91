"""Training task for a level prior: cached codes in, bits per token out, the prior to a bundle."""

from __future__ import annotations

import dataclasses
import warnings
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from jukelite.bundle import (
    Bundle,
    BundleError,
    file_sha256,
    package_versions,
    read_manifest,
    save_prior_level,
)
from jukelite.data.code_windows import CodeWindowDataset
from jukelite.data.dataset import AudioCache, evenly_spaced, split_entries
from jukelite.data.labels import LabelVocabulary
from jukelite.data.lyrics import LyricsTokenizer
from jukelite.data.manifest import read_manifest as read_song_manifest
from jukelite.prior.masking import draw_training_mask
from jukelite.prior.model import LevelPrior, PriorConfig
from jukelite.recipes import PriorRecipe, recipe_to_dict
from jukelite.train.code_cache import CodeCache
from jukelite.train.distributed import DistributedContext


def _unwrap(model: nn.Module) -> LevelPrior:
    return model.module if hasattr(model, "module") else model


def resolve_prior_config(recipe: PriorRecipe, vocabulary: LabelVocabulary | None) -> PriorConfig:
    """The recipe's model with what comes from the bundle (codebook size, sample rate, the
    upper level's ratio) and from the data (vocabulary sizes) filled in and checked."""
    bundle = recipe.output.bundle
    manifest = read_manifest(bundle)
    level = recipe.level
    entry = manifest["vqvae"].get(str(level))
    if entry is None:
        raise BundleError(f"{bundle} has no VQ-VAE level {level}; train it before its prior")
    values: dict[str, Any] = {
        "level": level,
        "bins": entry["config"]["codebook_size"],
        "sample_rate": manifest["sample_rate"],
    }
    if recipe.train.cond_dropout > 0:
        values["guidance"] = True  # the learned null conditioning the dropout trains
    config = recipe.model
    if config.upsampler:
        upper = manifest["vqvae"].get(str(level + 1))
        if upper is None:
            raise BundleError(
                f"{bundle}: an upsampler for level {level} needs VQ-VAE level "
                f"{level + 1} (the codes it is conditioned on)"
            )
        ratio = upper["hop_length"] // entry["hop_length"]
        if config.cond_stride**config.cond_down_t != ratio:
            raise ValueError(
                f"model.cond_stride ** model.cond_down_t must equal the hop ratio {ratio} between "
                f"levels {level + 1} and {level}, got {config.cond_stride}**{config.cond_down_t}"
            )
    if config.labels and vocabulary is not None:
        for key, needed in (
            ("artist_bins", vocabulary.n_artists),
            ("genre_bins", vocabulary.n_genres),
        ):
            given = getattr(config, key)
            if given and given < needed:
                raise ValueError(
                    f"model.{key}={given} is smaller than the {needed} entries the "
                    "manifest needs; raise it or set 0 to size it from the data"
                )
            values[key] = given or needed
    return dataclasses.replace(config, **values)


class PriorTask:
    """Trains one level prior on codes of the bundle's frozen VQ-VAE."""

    def __init__(self, recipe: PriorRecipe):
        self.recipe = recipe
        self.run_info: dict[str, Any] = {}
        self.name = f"prior level {recipe.level}"
        self.manifest_path = Path(recipe.data.manifest)
        self.num_workers = recipe.data.num_workers
        entries = read_song_manifest(self.manifest_path)
        self.train_entries, self.valid_entries = split_entries(
            entries, recipe.data.valid_fraction, seed=recipe.train.seed
        )
        if not (Path(recipe.output.bundle) / "jukelite.json").is_file():
            raise BundleError(
                f"{recipe.output.bundle} holds no VQ-VAE yet: a prior is trained into the bundle "
                "whose VQ-VAE encodes its audio; train a VQ-VAE recipe into it first"
            )
        bundle = read_manifest(recipe.output.bundle)
        self.init = Bundle.open(recipe.train.init_from) if recipe.train.init_from else None
        self.vocabulary = None
        if self.init is not None:
            self._fine_tune_from(self.init, bundle)
        elif recipe.model.labels:
            known = bundle.get("labels")
            self.vocabulary = (
                LabelVocabulary.from_dict(known)
                if known
                else LabelVocabulary.from_entries(
                    self.train_entries, recipe.model.max_bow_genre_size
                )
            )
        if self.init is None:
            self.tokenizer = (LyricsTokenizer(recipe.data.lyrics_version)
                              if recipe.model.lyrics != "none" else None)
            self.config = resolve_prior_config(recipe, self.vocabulary)
        if self.tokenizer is not None:
            self._warn_dropped_lyrics(entries)
        if self.tokenizer is not None and self.config.n_vocab != self.tokenizer.vocab_size:
            raise ValueError(
                f"model.n_vocab={self.config.n_vocab} but the {recipe.data.lyrics_version}"
                f" lyrics vocabulary has {self.tokenizer.vocab_size} symbols"
            )
        self._check_timing(entries, bundle["sample_rate"])
        self.model = LevelPrior(self.config) if self.init is None else \
            self._initial_prior(self.init)
        audio_cache = AudioCache(bundle["sample_rate"], self._cache("audio"))
        self.codes = CodeCache(
            recipe.output.bundle, recipe.level, self._cache("codes"), audio_cache
        )
        self.upper = None
        if self.config.upsampler:
            self.upper = CodeCache(
                recipe.output.bundle, recipe.level + 1, self._cache("codes"), audio_cache
            )
        self.seconds_per_item = self.config.n_ctx * self.codes.hop_length / bundle["sample_rate"]
        self._datasets: dict[bool, CodeWindowDataset] = {}

    def _fine_tune_from(self, source: Bundle, bundle: dict[str, Any]) -> None:
        """Take the architecture and vocabularies of `source`'s prior of this level: the
        weights it starts from only fit them. Its codebook must be the training bundle's."""
        level = self.recipe.level
        if level not in source.prior_configs:
            raise BundleError(f"train.init_from: {source.path} has no prior for level {level} "
                              f"(it has {sorted(source.prior_configs)})")
        config = source.prior_configs[level]
        entry = bundle["vqvae"].get(str(level))
        own = (entry or {}).get("config", {}).get("codebook_size"), bundle["sample_rate"]
        if own != (config.bins, config.sample_rate):
            raise BundleError(
                f"train.init_from: the level {level} prior of {source.path} reads {config.bins} "
                f"codes at {config.sample_rate} Hz, but {self.recipe.output.bundle} encodes "
                f"{own[0]} codes at {own[1]} Hz: fine-tune into a bundle with its VQ-VAE")
        if self.recipe.train.cond_dropout > 0 and not config.guidance:
            config = dataclasses.replace(config, guidance=True)  # learns its null from here
        self.config = config
        self.vocabulary = source.label_vocabulary(level) if config.labels else None
        self.tokenizer = source.lyrics_tokenizer(level) if config.lyrics != "none" else None
        warnings.warn(f"train.init_from: fine-tuning the level {level} prior of {source.path}; "
                      "the recipe's model section is not used", stacklevel=3)

    def _initial_prior(self, source: Bundle) -> LevelPrior:
        """`source`'s prior of this level; fine-tuned with cond_dropout, a prior trained without
        it gains a fresh null conditioning (the only new parameters) for guidance to use."""
        loaded = source.prior(self.recipe.level)
        if loaded.config.guidance == self.config.guidance:
            return loaded.train()
        model = LevelPrior(self.config)
        missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
        new = {"null_start", "null_lyrics"}
        if unexpected or not set(missing) <= new:
            raise BundleError(f"train.init_from: the level {self.recipe.level} prior of "
                              f"{source.path} does not fit its config ({missing}, {unexpected})")
        return model.train()

    def _warn_dropped_lyrics(self, entries: list) -> None:
        """Characters outside the lyrics vocabulary are dropped; say which, once."""
        dropped: Counter[str] = Counter()
        for entry in entries:
            dropped.update(self.tokenizer.normalize(entry.lyrics).dropped)
        if dropped:
            listed = ", ".join(f"{char!r} x{count}" for char, count in dropped.most_common(10))
            warnings.warn(
                f"{sum(dropped.values())} lyric character(s) in {self.manifest_path} are not in "
                f"the {self.tokenizer.version} lyrics vocabulary and are dropped: {listed}",
                stacklevel=2,
            )

    def _cache(self, kind: str) -> Path | None:
        root = self.recipe.data.cache_dir
        return None if root is None else Path(root) / kind

    def _check_timing(self, entries: list, sample_rate: int) -> None:
        """Every song's length must lie in the timing range, or training fails mid-run."""
        if not self.config.timing:
            return
        timing = self.config.timing_range
        bad = [
            f"{e.path.name} ({e.duration:.1f} s)"
            for e in entries
            if e.duration is not None
            and not timing.min_duration <= e.duration < timing.max_duration
        ]
        if bad:
            raise ValueError(
                f"{len(bad)} song(s) lie outside the top prior's timing range "
                f"[{timing.min_duration}, {timing.max_duration}) s: {', '.join(bad[:10])}; "
                "change model.min_duration / model.max_duration"
            )

    # ------------------------------------------------------------------ data
    def _windows(self, train: bool) -> CodeWindowDataset:
        if train not in self._datasets:
            entries = self.train_entries if train or not self.valid_entries else self.valid_entries
            self._datasets[train] = CodeWindowDataset(
                entries,
                self.codes,
                self.config.n_ctx,
                self.vocabulary,
                self.upper,
                self.model.upsample_ratio if self.config.upsampler else 1,
                self.tokenizer,
                self.config.n_tokens,
                train=train,
                seed=self.recipe.train.seed,
                progress=self.recipe.train.progress,
            )
        return self._datasets[train]

    def train_dataset(self) -> Dataset:
        return self._windows(train=True)

    def valid_dataset(self) -> Dataset | None:
        dataset = self._windows(train=False)
        return evenly_spaced(dataset, self.recipe.data.valid_windows)

    def prepare(self, ctx: DistributedContext, resuming: bool) -> None:
        """Encode every song once (rank 0 first; the others then read the cache)."""
        if ctx.is_main:
            self._windows(train=True)
            self._windows(train=False)
        ctx.barrier()

    # ------------------------------------------------------------------ steps
    def training_step(self, model: nn.Module, batch: dict) -> tuple[torch.Tensor, dict]:
        codes, drop = batch["codes"], None
        rate = self.recipe.train.cond_dropout
        if rate > 0:  # from the trainer's seeded RNG, so a resumed run draws the same rows
            drop = torch.rand(codes.shape[0]) < rate
            drop = drop.to(codes.device)
        out = model(codes, batch.get("y"), batch.get("upper"), batch.get("lyrics"), drop)
        return out.loss, out.metrics

    def evaluate(self, model: nn.Module, batches: Iterator[dict]) -> dict[str, float]:
        """Validation bits per token, and per second of audio (tokens per second x bits). A
        parallel decoder is scored on the same hidden codes at every evaluation."""
        prior = _unwrap(model)
        totals: dict[str, float] = {}
        count = 0
        masks = torch.Generator().manual_seed(self.recipe.train.seed)
        for batch in batches:
            codes, mask = batch["codes"], None
            if self.config.parallel:
                mask = draw_training_mask(codes.shape[0], codes.shape[1], masks)
            out = prior(codes, batch.get("y"), batch.get("upper"), batch.get("lyrics"),
                        mask=mask)
            for key, value in {"loss": out.loss, **out.metrics}.items():
                totals[key] = totals.get(key, 0.0) + float(value)
            count += 1
        results = {key: value / max(count, 1) for key, value in totals.items()}
        if "music_bits_per_token" in results:
            tokens_per_second = self.codes.sample_rate / self.codes.hop_length
            results["music_bits_per_second"] = results["music_bits_per_token"] * tokens_per_second
        return results

    def log_media(self, writer: Any, model: nn.Module, batch: dict, step: int) -> None:
        """Priors log scalars only: audio would need a sampling run and the VQ-VAE decoder at
        every evaluation, costing more than the evaluation itself."""

    # ------------------------------------------------------------------ export
    def export(self, model: nn.Module, step: int, metrics: dict[str, float]) -> None:
        vocabularies = {
            "labels": self.vocabulary.to_dict() if self.vocabulary else None,
            "lyrics": self.tokenizer.to_dict() if self.tokenizer else None,
        }
        provenance = {
            "recipe": recipe_to_dict(self.recipe),
            "steps": step,
            "data_manifest": str(self.manifest_path),
            "data_manifest_sha256": file_sha256(self.manifest_path),
            "vqvae_sha256": self.codes.weights_sha256,
            **({"upper_vqvae_sha256": self.upper.weights_sha256} if self.upper else {}),
            "train_songs": len(self.train_entries),
            "valid_songs": len(self.valid_entries),
            "weights": "ema" if self.recipe.train.ema_decay else "raw",
            "versions": package_versions(),
            **self.run_info,
        }
        if self.init is not None:
            provenance["init_from"] = {"bundle": str(self.init.path),
                                       "sha256": self.init.sha256}
        save_prior_level(
            self.recipe.output.bundle, _unwrap(model), vocabularies, provenance, metrics,
            per_level=self.init is not None,
        )
