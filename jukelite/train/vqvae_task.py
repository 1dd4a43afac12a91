"""Training task for VQ-VAE levels: audio windows in, reconstruction losses out, bundle out."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from jukelite.bundle import file_sha256, package_versions, save_vqvae_level
from jukelite.data.dataset import AudioCache, WindowDataset, evenly_spaced, split_entries
from jukelite.data.manifest import read_manifest
from jukelite.recipes import VQVAERecipe, recipe_to_dict
from jukelite.train.distributed import DistributedContext
from jukelite.vqvae.losses import DataStatistics, reconstruction_metrics
from jukelite.vqvae.model import VQVAE


def _unwrap(model: nn.Module) -> VQVAE:
    return model.module if hasattr(model, "module") else model


class VQVAETask:
    """Trains the VQ-VAE levels a recipe names, jointly when it names several."""

    def __init__(self, recipe: VQVAERecipe):
        self.recipe = recipe
        self.run_info: dict[str, Any] = {}
        data = recipe.data
        self.name = (
            f"vqvae {recipe.level if recipe.level == 'all' else 'level ' + str(recipe.level)}"
        )
        self.config = recipe.model
        self.model = VQVAE(self.config, recipe.levels())
        self.num_workers = data.num_workers
        self.seconds_per_item = data.sample_length / data.sample_rate
        self.manifest_path = Path(data.manifest)
        entries = read_manifest(self.manifest_path)
        self.train_entries, self.valid_entries = split_entries(
            entries, data.valid_fraction, seed=recipe.train.seed
        )
        self.cache = AudioCache(data.sample_rate, data.cache_dir)

    # ------------------------------------------------------------------ data
    def _windows(self, entries: list, train: bool) -> WindowDataset:
        data = self.recipe.data
        return WindowDataset(
            entries,
            sample_rate=data.sample_rate,
            sample_length=data.sample_length,
            channels=data.channels,
            train=train,
            seed=self.recipe.train.seed,
            random_downmix=data.random_downmix and train,
            random_shift=data.random_shift and train,
            cache=self.cache,
        )

    def train_dataset(self) -> Dataset:
        return self._windows(self.train_entries, train=True)

    def valid_dataset(self) -> Dataset | None:
        """Evenly spread validation windows (training songs when there is no validation split)."""
        entries = self.valid_entries or self.train_entries
        dataset = self._windows(entries, train=False)
        return evenly_spaced(dataset, self.recipe.data.valid_windows)

    def prepare(self, ctx: DistributedContext, resuming: bool) -> None:
        """Decode every song into the cache once (rank 0 first) and measure the loss normalisers."""
        if ctx.is_main:
            self.cache.prepare(
                self.train_entries + self.valid_entries, progress=self.recipe.train.progress
            )
        ctx.barrier()
        if resuming:
            return  # the normalisers are buffers of the model: they come back with the checkpoint
        windows = self.train_dataset()
        count = self.recipe.data.stats_windows
        stats = DataStatistics(self.recipe.data.sample_rate)
        for index in range(count):
            stats.update(windows[index]["audio"].unsqueeze(0))
        if stats.l2 <= 0 or stats.spec <= 0:
            raise ValueError(
                f"the training audio of {self.manifest_path} is silent in the {count} windows "
                "used for data statistics; check the files"
            )
        self.model.set_data_statistics(stats.l2, stats.spec)

    # ------------------------------------------------------------------ steps
    def training_step(self, model: nn.Module, batch: dict) -> tuple[torch.Tensor, dict]:
        _, loss, metrics = model(batch["audio"])
        return loss, metrics

    def evaluate(self, model: nn.Module, batches: Iterator[dict]) -> dict[str, float]:
        """Reconstruction metrics per level plus codebook usage over the whole validation set."""
        vqvae = _unwrap(model)
        sample_rate = self.recipe.data.sample_rate
        sums: dict[str, float] = {}
        counts = {level: torch.zeros(self.config.codebook_size) for level in vqvae.level_ids}
        n_batches = 0
        for batch in batches:
            audio = batch["audio"]
            recons, loss, _ = vqvae(audio)
            sums["loss"] = sums.get("loss", 0.0) + float(loss)
            for level, recon in recons.items():
                metrics = reconstruction_metrics(audio, recon, sample_rate)
                for key, value in metrics.items():
                    name = f"level_{level}/{key}"
                    sums[name] = sums.get(name, 0.0) + value
                codes = vqvae.level(level).encode(audio)
                counts[level] += torch.bincount(
                    codes.flatten().cpu(), minlength=self.config.codebook_size
                ).float()
            n_batches += 1
        results = {key: value / max(n_batches, 1) for key, value in sums.items()}
        for level, histogram in counts.items():
            probs = histogram / histogram.sum().clamp(min=1)
            entropy = -(probs[probs > 0] * probs[probs > 0].log2()).sum()
            results[f"level_{level}/codebook_usage"] = float((histogram > 0).float().mean())
            results[f"level_{level}/codebook_perplexity"] = float(2**entropy)
        return results

    def log_media(self, writer: Any, model: nn.Module, batch: dict, step: int) -> None:
        """The first validation window and its reconstruction at every level."""
        vqvae = _unwrap(model)
        audio = batch["audio"][:1]
        recons, _, _ = vqvae(audio)
        rate = self.recipe.data.sample_rate
        writer.add_audio("audio/original", audio[0].mean(0).clamp(-1, 1).float().cpu(), step, rate)
        for level, recon in recons.items():
            writer.add_audio(
                f"audio/level_{level}", recon[0].mean(0).clamp(-1, 1).float().cpu(), step, rate
            )

    # ------------------------------------------------------------------ export
    def provenance(self, step: int) -> dict[str, Any]:
        return {
            "recipe": recipe_to_dict(self.recipe),
            "steps": step,
            "data_manifest": str(self.manifest_path),
            "data_manifest_sha256": file_sha256(self.manifest_path),
            "train_songs": len(self.train_entries),
            "valid_songs": len(self.valid_entries),
            "weights": "ema" if self.recipe.train.ema_decay else "raw",
            "versions": package_versions(),
            **self.run_info,
        }

    def export(self, model: nn.Module, step: int, metrics: dict[str, float]) -> None:
        vqvae = _unwrap(model)
        provenance = self.provenance(step)
        for level in vqvae.level_ids:
            prefix = f"level_{level}/"
            level_metrics = {
                k[len(prefix) :]: v for k, v in metrics.items() if k.startswith(prefix)
            }
            save_vqvae_level(
                self.recipe.output.bundle, vqvae.level(level), provenance, level_metrics
            )
