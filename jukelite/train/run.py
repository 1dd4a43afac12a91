"""`jukelite train`: turn a recipe into a task and hand it to the trainer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from jukelite.fileio import write_text_atomic
from jukelite.recipes import VQVAERecipe, recipe_to_dict
from jukelite.train.distributed import setup_distributed, teardown_distributed
from jukelite.train.trainer import Trainer
from jukelite.vqvae.model import VQVAE, count_parameters


def build_task(recipe: Any):
    if isinstance(recipe, VQVAERecipe):
        from jukelite.train.vqvae_task import VQVAETask

        return VQVAETask(recipe)
    raise ValueError(f"no training task for recipe kind {getattr(recipe, 'kind', '?')!r}")


def dry_run(recipe: Any) -> dict[str, Any]:
    """Parameter counts of the model a recipe builds, on the meta device (no memory, no data)."""
    if not isinstance(recipe, VQVAERecipe):
        raise ValueError(f"--dry-run does not know recipe kind {recipe.kind!r}")
    with torch.device("meta"):
        model = VQVAE(recipe.model, recipe.levels())
    levels = {}
    for level in model.level_ids:
        module = model.level(level)
        levels[level] = {
            "hop_length": module.hop_length,
            "encoder": count_parameters(module.encoder),
            "decoder": count_parameters(module.decoder),
            "codebook_values": recipe.model.codebook_size * recipe.model.code_dim,
            "trainable": count_parameters(module),
        }
    return {"kind": recipe.kind, "levels": levels, "trainable": count_parameters(model)}


def train_recipe(recipe: Any, resume: bool = False, callbacks: list | None = None) -> dict:
    """Train what `recipe` describes; returns the final validation metrics."""
    ctx = setup_distributed(recipe.train.device)
    try:
        run_dir = Path(recipe.output.dir)
        torch.manual_seed(recipe.train.seed)
        task = build_task(recipe)
        trainer = Trainer(
            task, recipe.train, run_dir, ctx, resume=resume, recipe=recipe_to_dict(recipe)
        )
        trainer.callbacks.extend(callbacks or [])
        if ctx.is_main:
            import yaml

            run_dir.mkdir(parents=True, exist_ok=True)
            write_text_atomic(run_dir / "recipe.yaml", yaml.safe_dump(recipe_to_dict(recipe)))
        return trainer.fit()
    finally:
        teardown_distributed()
