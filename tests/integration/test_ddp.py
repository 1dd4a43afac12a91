"""Two gloo processes under torchrun train together and end with identical weights; a prior
trained so ends where one process with their combined batch does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from jukelite.bundle import load_prior_level, load_vqvae_level
from jukelite.train import train_recipe
from jukelite.train.checkpoint import list_checkpoints, load_checkpoint

from .conftest import TINY_PRIOR_RECIPES, TINY_RECIPE, tiny_prior_overrides, tiny_prior_recipe


def train_two_processes(recipe: Path, out: Path, overrides: list[str]) -> tuple[dict, dict, dict]:
    """Run ddp_worker.py under torchrun; returns the weights of rank 0, rank 1 and the start."""
    worker = Path(__file__).with_name("ddp_worker.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[2])}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            str(worker),
            str(recipe),
            str(out),
            *overrides,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return tuple(load_file(str(out / f"{name}.safetensors")) for name in ("rank0", "rank1", "init"))


def assert_equal_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_two_processes_agree_on_weights(tone_manifest, tmp_path):
    overrides = [
        f"data.manifest={tone_manifest}",
        f"data.cache_dir={tmp_path / 'cache'}",
        f"output.dir={tmp_path / 'run'}",
        f"output.bundle={tmp_path / 'bundle'}",
        "train.progress=false",
        "train.steps=4",
        "train.batch_size=2",
        "train.save_every=4",
        "train.eval_every=4",
        "data.sample_length=2048",
        "model.width=[8,8,8]",
        "model.depth=[1,1,1]",
        "data.stats_windows=4",
        "data.valid_windows=2",
    ]
    rank0, rank1, _ = train_two_processes(TINY_RECIPE, tmp_path, overrides)
    assert_equal_weights(rank0, rank1)
    # They trained (weights moved away from the exported initialisation) and rank 0 exported.
    exported = load_vqvae_level(tmp_path / "bundle", 0).state_dict()
    assert torch.equal(exported["quantizer.codebook"], rank0["levels.0.quantizer.codebook"])
    assert bool(rank0["levels.0.quantizer.initialized"])


# Full learning rate from the first step, so the weights move far more than the tolerance.
PRIOR_STEPS = ("train.steps=3", "train.save_every=3", "train.eval_every=3", "train.warmup=1")


def test_two_processes_train_a_prior_as_one_does_with_the_same_global_batch(
    tone_manifest, prior_base, tmp_path, single_thread
):
    """Rank r reads items r, r + 2, ... of the stream, so two ranks of batch 2 see exactly the
    items of one process with batch 4, and DDP's gradient mean equals that batch's mean."""
    two = tmp_path / "two"
    overrides = tiny_prior_overrides("top", tone_manifest, prior_base, two)
    rank0, rank1, init = train_two_processes(
        TINY_PRIOR_RECIPES["top"], tmp_path, [*overrides, *PRIOR_STEPS, "train.batch_size=2"]
    )
    assert_equal_weights(rank0, rank1)
    still = [key for key in init if (rank0[key] - init[key]).abs().max() < 1e-4]
    assert not still, still
    exported = load_prior_level(two / "bundle", 1).state_dict()
    assert_equal_weights(exported, {key: rank0[key] for key in exported})

    one = tmp_path / "one"
    train_recipe(tiny_prior_recipe("top", tone_manifest, prior_base, one, *PRIOR_STEPS,
                                   "train.batch_size=4"))
    states = [load_checkpoint(list_checkpoints(run / "run" / "checkpoints")[-1][1])
              for run in (two, one)]
    assert [s["step"] for s in states] == [3, 3]
    assert [s["world_size"] for s in states] == [2, 1]
    assert states[0]["data_position"] == states[1]["data_position"] == 12
    # Only the order of float sums differs: measured at most 3e-7 apart, each tensor having
    # moved by about 1e-3.
    single = states[1]["model"]
    for key, value in rank0.items():
        torch.testing.assert_close(value, single[key], rtol=0, atol=1e-5, msg=key)
    losses = [json.loads((run / "run" / "metrics.jsonl").read_text().splitlines()[-1])["loss"]
              for run in (two, one)]
    assert abs(losses[0] - losses[1]) < 1e-5
