"""Run under torchrun by test_ddp.py: train a few steps, then dump this rank's weights."""

from __future__ import annotations

import sys
from pathlib import Path

import torch.distributed as dist
from safetensors.torch import save_file

from jukelite.recipes import load_recipe
from jukelite.train.distributed import setup_distributed, teardown_distributed
from jukelite.train.trainer import Trainer
from jukelite.train.vqvae_task import VQVAETask


def main(recipe_path: str, out_dir: str, *overrides: str) -> None:
    recipe = load_recipe(recipe_path, list(overrides))
    ctx = setup_distributed("cpu")
    assert dist.is_initialized() and ctx.world_size == 2
    task = VQVAETask(recipe)
    trainer = Trainer(task, recipe.train, recipe.output.dir, ctx)
    trainer.fit()
    state = {k: v.contiguous() for k, v in trainer.model.state_dict().items()}
    save_file(state, str(Path(out_dir) / f"rank{ctx.rank}.safetensors"))
    teardown_distributed()


if __name__ == "__main__":
    main(*sys.argv[1:])
