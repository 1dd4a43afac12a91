"""`jukelite train`: turn a recipe into a task and hand it to the trainer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from jukelite.fileio import write_text_atomic
from jukelite.prior.model import LevelPrior
from jukelite.recipes import PriorRecipe, VQVAERecipe, recipe_to_dict
from jukelite.train.checkpoint import ResumePoint, latest_checkpoint_step
from jukelite.train.distributed import setup_distributed, teardown_distributed
from jukelite.train.memory_plan import dry_run_prior_config
from jukelite.train.trainer import Trainer, TrainingInterrupted, open_resume_point
from jukelite.vqvae.model import VQVAE, count_parameters


def build_task(recipe: Any):
    if isinstance(recipe, VQVAERecipe):
        from jukelite.train.vqvae_task import VQVAETask

        return VQVAETask(recipe)
    if isinstance(recipe, PriorRecipe):
        from jukelite.train.prior_task import PriorTask

        return PriorTask(recipe)
    raise ValueError(f"no training task for recipe kind {getattr(recipe, 'kind', '?')!r}")


def dry_run_prior(recipe: PriorRecipe, world_size: int | None = None,
                  gpu_memory_gib: float = 80.0) -> dict[str, Any]:
    """Parameter counts of a prior recipe's model on the meta device (see
    `dry_run_prior_config`), and its memory plan when `world_size` is given."""
    config, notes = dry_run_prior_config(recipe)
    with torch.device("meta"):
        model = LevelPrior(config)
    report = {
        "kind": "prior",
        "level": recipe.level,
        "parts": _parts(model, notes),
        "trainable": count_parameters(model),
        "notes": notes,
    }
    if world_size is not None:
        from jukelite.train.memory_plan import plan, profile_prior

        report["memory"] = plan(profile_prior(model, config, recipe.train), world_size,
                                gpu_memory_gib)
    return report


def _parts(model: torch.nn.Module, notes: list[str]) -> dict[str, int]:
    """Trainable parameters per top-level part, each tensor counted once (at its first part),
    so the parts add up to the total; a part made only of shared tensors (a tied head) is
    noted instead of listed."""
    seen: set[int] = set()
    parts = {}
    for name, module in model.named_children():
        new = [p for p in module.parameters() if p.requires_grad and id(p) not in seen]
        seen.update(id(p) for p in module.parameters())
        if new:
            parts[name] = sum(p.numel() for p in new)
        elif count_parameters(module):
            notes.append(f"{name} shares its weights with an earlier part (counted there)")
    return parts


def dry_run(recipe: Any, world_size: int | None = None, gpu_memory_gib: float = 80.0
            ) -> dict[str, Any]:
    """Parameter counts of the model a recipe builds, on the meta device (no data), and with
    `world_size` its per-device memory plan (`jukelite.train.memory_plan.MemoryPlan`, under
    "memory") on that many devices of `gpu_memory_gib` GiB."""
    if isinstance(recipe, PriorRecipe):
        return dry_run_prior(recipe, world_size, gpu_memory_gib)
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
    report = {"kind": recipe.kind, "levels": levels, "trainable": count_parameters(model)}
    if world_size is not None:
        from jukelite.train.memory_plan import plan, profile_vqvae

        report["memory"] = plan(profile_vqvae(model, recipe), world_size, gpu_memory_gib)
    return report


def _recipe_text(recipe: dict, changes: list[dict]) -> str:
    """The run's recipe.yaml: the recipe in force, headed by comments listing the keys changed
    on resumes (the checkpoints and the bundle's provenance hold the same list as data)."""
    import yaml

    lines = [
        f"#   at step {c['step']}: {c['key']}: {c['old']!r} -> {c['new']!r}" for c in changes
    ]
    header = "# changed on resume:\n" + "\n".join(lines) + "\n" if lines else ""
    return header + yaml.safe_dump(recipe)


def _checkpoint_weights(point: ResumePoint, model: torch.nn.Module, ema: bool
                        ) -> dict[str, torch.Tensor]:
    """The weights a checkpoint would export: its EMA when the run keeps one, else raw."""
    if point.state.get("sharded"):
        from jukelite.train.fsdp import read_whole_weights

        return read_whole_weights(point.path, model, ema)
    weights = dict(point.state["model"])
    if ema:
        weights.update(point.state["ema"]["shadow"])
    return weights


def _recorded_metrics(run_dir: Path, step: int) -> dict[str, float]:
    """The validation metrics the run recorded at `step` (none when it did not evaluate)."""
    path = run_dir / "metrics.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() \
        else []
    found = [r for r in records if r.get("step") == step]
    return {k: v for k, v in found[-1].items() if k != "step"} if found else {}


def export_checkpoint(recipe: Any) -> int:
    """Write the bundle from the newest checkpoint of `recipe`'s run, in this one process and
    without training: how a sharded run (any number of processes) becomes a bundle again, or
    a run's bundle is rebuilt. Returns the checkpoint's step."""
    run_dir = Path(recipe.output.dir)
    point = open_resume_point(run_dir, recipe_to_dict(recipe))
    task = build_task(recipe)
    weights = _checkpoint_weights(point, task.model, ema=bool(recipe.train.ema_decay))
    task.model.load_state_dict(weights)
    task.run_info = {
        "train_seconds": round(float(point.state.get("train_seconds", 0.0)), 1),
        "world_size": point.state.get("world_size", 1),
        "exported_from": point.path.name,
    }
    if point.state.get("recipe_changes"):
        task.run_info["recipe_changes"] = point.state["recipe_changes"]
    task.export(task.model.eval(), point.step, _recorded_metrics(run_dir, point.step))
    return point.step


def train_recipe(recipe: Any, resume: bool = False, callbacks: list | None = None) -> dict:
    """Train what `recipe` describes; returns the final validation metrics.

    With `resume`, the run's newest readable checkpoint and the recipe it was trained with are
    checked before the task is built (`RunDirectoryError` when the run cannot continue). Any
    Ctrl-C ends as `TrainingInterrupted`, which says the step reached and the last checkpoint.
    """
    ctx = setup_distributed(recipe.train.device, need_group=recipe.train.parallel == "fsdp")
    run_dir = Path(recipe.output.dir)
    trainer: Trainer | None = None
    point = None
    try:
        torch.manual_seed(recipe.train.seed)
        as_dict = recipe_to_dict(recipe)
        point = open_resume_point(run_dir, as_dict) if resume else None
        task = build_task(recipe)
        trainer = Trainer(task, recipe.train, run_dir, ctx,
                          resume=point if point is not None else False, recipe=as_dict)
        trainer.callbacks.extend(callbacks or [])
        if ctx.is_main:
            run_dir.mkdir(parents=True, exist_ok=True)
            text = _recipe_text(as_dict, trainer.recipe_changes)
            write_text_atomic(run_dir / "recipe.yaml", text)
        return trainer.fit()
    except TrainingInterrupted:
        raise
    except KeyboardInterrupt as exc:  # a second Ctrl-C, or one before the training loop
        step = trainer.step if trainer is not None else point.step if point is not None else 0
        raise TrainingInterrupted(step, latest_checkpoint_step(run_dir / "checkpoints")) from exc
    finally:
        teardown_distributed()
