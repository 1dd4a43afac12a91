"""Two gloo processes under torchrun train together and end with identical weights."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from jukelite.bundle import load_vqvae_level

from .conftest import TINY_RECIPE


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
            str(TINY_RECIPE),
            str(tmp_path),
            *overrides,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    rank0 = load_file(str(tmp_path / "rank0.safetensors"))
    rank1 = load_file(str(tmp_path / "rank1.safetensors"))
    assert rank0.keys() == rank1.keys()
    for key in rank0:
        assert torch.equal(rank0[key], rank1[key]), key
    # They trained (weights moved away from the exported initialisation) and rank 0 exported.
    exported = load_vqvae_level(tmp_path / "bundle", 0).state_dict()
    assert torch.equal(exported["quantizer.codebook"], rank0["levels.0.quantizer.codebook"])
    assert bool(rank0["levels.0.quantizer.initialized"])
