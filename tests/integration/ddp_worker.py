"""Run under torchrun by test_ddp.py: train a recipe, then dump this rank's weights.

Rank 0 also dumps the initial weights. The model is built after seeding as `train_recipe` does,
so a one-process run of the same recipe starts from the same weights."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.distributed as dist
from safetensors.torch import save_file

from jukelite.recipes import load_recipe
from jukelite.train.distributed import setup_distributed, teardown_distributed
from jukelite.train.run import build_task
from jukelite.train.trainer import Trainer


def dump(model: torch.nn.Module, path: Path) -> None:
    # clone: safetensors refuses tensors that share memory (a tied output head)
    save_file({k: v.detach().clone() for k, v in model.state_dict().items()}, str(path))


def main(recipe_path: str, out_dir: str, *overrides: str) -> None:
    recipe = load_recipe(recipe_path, list(overrides))
    ctx = setup_distributed("cpu")
    assert dist.is_initialized() and ctx.world_size == 2
    torch.manual_seed(recipe.train.seed)
    task = build_task(recipe)
    trainer = Trainer(task, recipe.train, recipe.output.dir, ctx)
    if ctx.is_main:
        dump(trainer.model, Path(out_dir) / "init.safetensors")
    trainer.fit()
    dump(trainer.model, Path(out_dir) / f"rank{ctx.rank}.safetensors")
    teardown_distributed()


if __name__ == "__main__":
    main(*sys.argv[1:])
