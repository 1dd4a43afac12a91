"""An interrupted run, resumed, ends with exactly the weights of an uninterrupted run."""

from __future__ import annotations

import shutil

import pytest
import torch

from jukelite.train import train_recipe
from jukelite.train.checkpoint import list_checkpoints, load_checkpoint
from jukelite.train.trainer import RunDirectoryError

from .conftest import tiny_recipe

# Small and short; EMA and the linear decay make every piece of state matter on resume.
FAST = (
    "train.steps=8",
    "train.save_every=4",
    "train.eval_every=100",
    "train.batch_size=2",
    "data.sample_length=2048",
    "model.width=[8,8,8]",
    "model.depth=[1,1,1]",
    "train.ema_decay=0.9",
    "train.schedule=linear",
    "train.warmup=2",
    "data.stats_windows=4",
    "data.valid_windows=2",
)


def final_state(workdir):
    _, path = list_checkpoints(workdir / "run" / "checkpoints")[-1]
    return load_checkpoint(path)


def assert_same_state(a: dict, b: dict) -> None:
    assert a["step"] == b["step"] and a["data_position"] == b["data_position"]
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    for key, value in a["ema"]["shadow"].items():
        assert torch.equal(value, b["ema"]["shadow"][key]), key


@pytest.fixture(scope="module")
def uninterrupted(tone_manifest, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("straight")
    train_recipe(tiny_recipe(tone_manifest, workdir, *FAST))
    return final_state(workdir)


def test_stop_request_then_resume_matches(uninterrupted, tone_manifest, tmp_path):
    def stop_at_three(trainer):
        if trainer.step == 3:
            trainer.request_stop()

    recipe = tiny_recipe(tone_manifest, tmp_path, *FAST)
    train_recipe(recipe, callbacks=[stop_at_three])
    assert [step for step, _ in list_checkpoints(tmp_path / "run" / "checkpoints")] == [3]
    train_recipe(recipe, resume=True)
    assert_same_state(final_state(tmp_path), uninterrupted)


def test_resume_from_periodic_checkpoint_after_a_kill(uninterrupted, tone_manifest, tmp_path):
    """A process killed after step 6 restarts from the step-4 checkpoint and still matches."""
    source = tmp_path / "first"
    train_recipe(tiny_recipe(tone_manifest, source, *FAST))
    killed = tmp_path / "killed"
    (killed / "run" / "checkpoints").mkdir(parents=True)
    step4 = dict(list_checkpoints(source / "run" / "checkpoints"))[4]
    shutil.copy(step4, killed / "run" / "checkpoints" / step4.name)
    train_recipe(tiny_recipe(tone_manifest, killed, *FAST), resume=True)
    assert_same_state(final_state(killed), uninterrupted)


def test_existing_run_needs_resume_and_resume_needs_a_checkpoint(tone_manifest, tmp_path):
    recipe = tiny_recipe(tone_manifest, tmp_path, *FAST, "train.steps=1")
    with pytest.raises(RunDirectoryError, match="no checkpoint"):
        train_recipe(recipe, resume=True)
    train_recipe(recipe)
    with pytest.raises(RunDirectoryError, match="--resume"):
        train_recipe(recipe)


def test_a_single_level_recipe_trains_and_exports_only_that_level(tone_manifest, tmp_path):
    from jukelite.bundle import read_manifest

    recipe = tiny_recipe(tone_manifest, tmp_path, *FAST, "level=1", "train.steps=2")
    metrics = train_recipe(recipe)
    assert sorted(read_manifest(recipe.output.bundle)["vqvae"]) == ["1"]
    assert {key.split("/")[0] for key in metrics if "/" in key} == {"level_1"}
    assert (tmp_path / "bundle" / "vqvae_level_1.safetensors").is_file()
    assert not (tmp_path / "bundle" / "vqvae_level_0.safetensors").exists()
