"""Sharded training (`train.parallel=fsdp`, FSDP2 over gloo on the CPU) against the plain run.

Two processes of batch 1 read exactly the items one process of batch 2 reads, so they must end
with its weights and losses up to the order of float sums. A run killed in the middle of writing
a sharded checkpoint resumes from the previous one to the uninterrupted run's weights, and one
process turns a sharded checkpoint into the bundle the run exported."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from jukelite.bundle import load_prior_level
from jukelite.cli import main
from jukelite.train import train_recipe
from jukelite.train.checkpoint import list_checkpoints, load_checkpoint
from jukelite.train.fsdp import read_whole_weights

from .conftest import TINY_PRIOR_RECIPES, tiny_prior_overrides, tiny_prior_recipe

WORKER = Path(__file__).with_name("train_worker.py")
# Full learning rate from the first step (Adam moves every weight by about 1e-3 a step, far
# beyond the tolerance), an EMA and two micro-batches per step: every sharded piece of state
# moves and must come back on resume. Evaluating after every step (with the EMA swapped in)
# puts evaluation's forward passes between training steps, where FSDP leaves the root
# module's weights gathered.
FAST = ("train.steps=4", "train.save_every=2", "train.eval_every=1", "train.warmup=1",
        "train.ema_decay=0.9", "train.grad_accum=2")


def torchrun(args: list[str], expect_kill: bool = False) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[2])}
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         str(WORKER), *args],
        capture_output=True, text=True, timeout=300, env=env,
    )
    if expect_kill:
        assert done.returncode != 0 and "SIGKILL" in done.stderr, done.stderr[-3000:]
    else:
        assert done.returncode == 0, done.stderr[-4000:]


def train_args(workdir: Path, manifest: Path, base: Path) -> list[str]:
    return ["train", str(TINY_PRIOR_RECIPES["top"]),
            *tiny_prior_overrides("top", manifest, base, workdir), *FAST,
            "train.parallel=fsdp", "train.batch_size=1"]


def exported(workdir: Path) -> dict[str, torch.Tensor]:
    return load_prior_level(workdir / "bundle", 1).state_dict()


def raw_weights(workdir: Path) -> dict[str, torch.Tensor]:
    """The raw (not EMA) weights of a run's last checkpoint, sharded or not."""
    (_, path), = list_checkpoints(workdir / "run" / "checkpoints")[-1:]
    if not path.is_dir():
        return load_checkpoint(path)["model"]
    model = load_prior_level(workdir / "bundle", 1)
    return read_whole_weights(path, model, ema=False)


def last_loss(workdir: Path) -> float:
    return json.loads((workdir / "run" / "metrics.jsonl").read_text().splitlines()[-1])["loss"]


@pytest.fixture(scope="module")
def sharded_run(tone_manifest, prior_base, tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("fsdp_two")
    torchrun(train_args(workdir, tone_manifest, prior_base))
    return workdir


def test_two_sharded_processes_train_as_one_process_does(
    sharded_run, tone_manifest, prior_base, tmp_path, single_thread
):
    checkpoints = list_checkpoints(sharded_run / "run" / "checkpoints")
    assert [step for step, _ in checkpoints] == [2, 4]
    assert all(path.is_dir() for _, path in checkpoints)
    state = load_checkpoint(checkpoints[-1][1])
    assert state["sharded"] and state["world_size"] == 2 and state["data_position"] == 16

    plain, alone = tmp_path / "plain", tmp_path / "alone"
    train_recipe(tiny_prior_recipe("top", tone_manifest, prior_base, plain, *FAST,
                                   "train.batch_size=2"))
    # one process sharded over a process group of its own takes the same path as many
    train_recipe(tiny_prior_recipe("top", tone_manifest, prior_base, alone, *FAST,
                                   "train.batch_size=2", "train.parallel=fsdp"))
    one, one_raw = exported(plain), raw_weights(plain)
    for run in (sharded_run, alone):
        other, other_raw = exported(run), raw_weights(run)
        assert other.keys() == one.keys() and other_raw.keys() == one_raw.keys()
        for key in one:
            torch.testing.assert_close(other[key], one[key], rtol=0, atol=2e-5, msg=key)
        for key in one_raw:
            torch.testing.assert_close(other_raw[key], one_raw[key], rtol=0, atol=2e-5, msg=key)
        assert abs(last_loss(run) - last_loss(plain)) < 1e-5


def test_killed_while_saving_a_sharded_checkpoint_resumes_to_the_same_weights(
    sharded_run, tone_manifest, prior_base, tmp_path
):
    args = train_args(tmp_path, tone_manifest, prior_base)
    torchrun(["--die-at-save", "2", *args], expect_kill=True)  # in the save of step 4
    checkpoints = tmp_path / "run" / "checkpoints"
    assert [step for step, _ in list_checkpoints(checkpoints)] == [2]
    assert (checkpoints / "step_00000004.dcp.partial").is_dir()  # never under a real name
    torchrun([*args, "--resume"])
    assert not (checkpoints / "step_00000004.dcp.partial").exists()
    straight, resumed = exported(sharded_run), exported(tmp_path)
    assert all(torch.equal(straight[key], resumed[key]) for key in straight)
    assert last_loss(tmp_path) == last_loss(sharded_run)


def test_one_process_exports_a_sharded_checkpoint_into_the_bundle(
    sharded_run, tone_manifest, prior_base, tmp_path
):
    workdir = tmp_path / "copy"
    shutil.copytree(sharded_run / "run", workdir / "run")
    args = train_args(workdir, tone_manifest, prior_base)  # a bundle without the trained prior
    assert main([*args, "--export"]) == 0
    straight, consolidated = exported(sharded_run), exported(workdir)
    assert all(torch.equal(straight[key], consolidated[key]) for key in straight)


def test_export_rebuilds_the_bundle_of_a_whole_checkpoint_too(
    tone_manifest, prior_base, tmp_path
):
    """--export reads a replicated run's checkpoint file as well (EMA weights, as exported)."""
    train_recipe(tiny_prior_recipe("top", tone_manifest, prior_base, tmp_path / "plain",
                                   "train.steps=2", "train.save_every=2", "train.ema_decay=0.9"))
    workdir = tmp_path / "copy"
    shutil.copytree(tmp_path / "plain" / "run", workdir / "run")
    args = ["train", str(TINY_PRIOR_RECIPES["top"]),
            *tiny_prior_overrides("top", tone_manifest, prior_base, workdir),
            "train.steps=2", "train.save_every=2", "train.ema_decay=0.9", "--export"]
    assert main(args) == 0
    straight, rebuilt = exported(tmp_path / "plain"), exported(workdir)
    assert all(torch.equal(straight[key], rebuilt[key]) for key in straight)
    with pytest.raises(SystemExit, match="--resume and --export cannot be combined"):
        main([*args, "--resume"])
