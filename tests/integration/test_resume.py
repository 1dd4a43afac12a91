"""An interrupted run, resumed, ends with exactly the weights of an uninterrupted run."""

from __future__ import annotations

import shutil

import pytest
import torch

from jukelite.bundle import load_prior_level, read_manifest
from jukelite.train import train_recipe
from jukelite.train.checkpoint import list_checkpoints, load_checkpoint
from jukelite.train.trainer import RunDirectoryError

from .conftest import tiny_prior_recipe, tiny_recipe

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
    recipe = tiny_recipe(tone_manifest, tmp_path, *FAST, "level=1", "train.steps=2")
    metrics = train_recipe(recipe)
    assert sorted(read_manifest(recipe.output.bundle)["vqvae"]) == ["1"]
    assert {key.split("/")[0] for key in metrics if "/" in key} == {"level_1"}
    assert (tmp_path / "bundle" / "vqvae_level_1.safetensors").is_file()
    assert not (tmp_path / "bundle" / "vqvae_level_0.safetensors").exists()


# The level-0 upsampler: labels and the codes of level 1 as inputs, EMA and a linear decay on.
PRIOR_FAST = (
    "train.steps=6",
    "train.save_every=3",
    "train.eval_every=100",
    "train.batch_size=2",
    "train.ema_decay=0.9",
    "train.schedule=linear",
    "train.warmup=2",
)


@pytest.fixture(scope="module")
def uninterrupted_prior(tone_manifest, prior_base, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("straight_prior")
    train_recipe(tiny_prior_recipe("bottom", tone_manifest, prior_base, workdir, *PRIOR_FAST))
    return workdir


@pytest.mark.parametrize("interruption", ["stop_request", "kill"])
def test_prior_resumes_exactly(
    interruption, uninterrupted_prior, tone_manifest, prior_base, tmp_path
):
    """Stopped at step 2 (checkpointed there), or killed after step 4 so that only the step-3
    checkpoint survives: the resumed run ends in the uninterrupted run's state. (Both runs use
    the same number of threads: a different count changes float sums in the last bits.)"""
    recipe = tiny_prior_recipe("bottom", tone_manifest, prior_base, tmp_path, *PRIOR_FAST)
    checkpoints = tmp_path / "run" / "checkpoints"
    if interruption == "stop_request":
        def stop_at_two(trainer):
            if trainer.step == 2:
                trainer.request_stop()

        train_recipe(recipe, callbacks=[stop_at_two])
    else:
        checkpoints.mkdir(parents=True)
        step3 = dict(list_checkpoints(uninterrupted_prior / "run" / "checkpoints"))[3]
        shutil.copy(step3, checkpoints / step3.name)
    assert [step for step, _ in list_checkpoints(checkpoints)] == [
        2 if interruption == "stop_request" else 3
    ]
    train_recipe(recipe, resume=True)
    expected = final_state(uninterrupted_prior)
    assert expected["step"] == 6 and expected["data_position"] == 12
    assert_same_state(final_state(tmp_path), expected)
    # The bundle gets the same (EMA) prior, and the same label vocabulary, as without a break.
    exported, straight = (load_prior_level(run / "bundle", 0).state_dict()
                          for run in (tmp_path, uninterrupted_prior))
    for key, value in exported.items():
        assert torch.equal(value, straight[key]), key
    assert read_manifest(tmp_path / "bundle")["labels"] == read_manifest(
        uninterrupted_prior / "bundle")["labels"]
