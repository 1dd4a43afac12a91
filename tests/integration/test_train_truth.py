"""`jukelite train` tells the truth about a run: unreadable checkpoints are skipped by name, a
changed recipe is refused key by key (safe keys are applied and recorded), Ctrl-C ends with
status 130 and the command that resumes, and a folder that is not a run is one line.

Every test goes through `jukelite.cli.main` on the tiny level-0 upsampler (about a second per
run); a finished six-step run is trained once and copied into each test's folder."""

from __future__ import annotations

import functools
import json
import os
import shlex
import shutil
import signal
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

import jukelite.train
from jukelite.bundle import read_manifest
from jukelite.cli import main
from jukelite.recipes import TrainSection
from jukelite.train.checkpoint import list_checkpoints, load_checkpoint
from jukelite.train.distributed import DistributedContext
from jukelite.train.trainer import RunDirectoryError, Trainer

from ..unit.test_trainer import Regression
from .conftest import TINY_PRIOR_RECIPES, tiny_prior_overrides

RECIPE = str(TINY_PRIOR_RECIPES["bottom"])
# EMA and a linear decay: every piece of resumed state matters for the final weights.
FAST = ("train.steps=6", "train.save_every=3", "train.eval_every=100", "train.batch_size=2",
        "train.ema_decay=0.9", "train.schedule=linear", "train.warmup=2")


def overrides(manifest: Path, base: Path, workdir: Path, *extra: str) -> list[str]:
    return [*tiny_prior_overrides("bottom", manifest, base, workdir), *FAST, *extra]


def train(capsys, manifest, base, workdir, *extra: str) -> tuple[int, str]:
    """`jukelite train` on the tiny upsampler into `workdir`; (exit status, stderr)."""
    capsys.readouterr()
    status = main(["train", RECIPE, *overrides(manifest, base, workdir, *extra)])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return status, err


def checkpoints(workdir: Path) -> dict[int, Path]:
    return dict(list_checkpoints(workdir / "run" / "checkpoints"))


@pytest.fixture(scope="module")
def finished(tone_manifest, prior_base, tmp_path_factory) -> Path:
    """A folder with a finished six-step run (checkpoints at steps 3 and 6) and its bundle."""
    workdir = tmp_path_factory.mktemp("finished")
    assert main(["train", RECIPE, *overrides(tone_manifest, prior_base, workdir)]) == 0
    assert sorted(checkpoints(workdir)) == [3, 6]
    return workdir


@pytest.fixture
def run_copy(finished, tmp_path) -> Path:
    """The finished run and its bundle copied to a fresh folder (moved runs may resume)."""
    for part in ("run", "bundle"):
        shutil.copytree(finished / part, tmp_path / part)
    return tmp_path


def test_an_unreadable_newest_checkpoint_is_skipped_and_the_run_ends_exact(
    capsys, run_copy, tone_manifest, prior_base
):
    newest = checkpoints(run_copy)[6]
    uninterrupted = load_checkpoint(newest)
    newest.write_bytes(newest.read_bytes()[:1000])  # a copy cut short
    status, err = train(capsys, tone_manifest, prior_base, run_copy, "--resume")
    assert status == 0, err
    assert f"skipped unreadable checkpoint {newest} (truncated" in err
    assert "resuming from step_00000003.pt" in err
    assert (newest.parent / "step_00000006.pt.unreadable").is_file()  # set aside, not pruned
    resumed = load_checkpoint(checkpoints(run_copy)[6])
    assert resumed["step"] == 6 and resumed["data_position"] == uninterrupted["data_position"]
    for part in ("model", "ema"):
        expected = uninterrupted[part] if part == "model" else uninterrupted[part]["shadow"]
        got = resumed[part] if part == "model" else resumed[part]["shadow"]
        for key, value in expected.items():
            assert torch.equal(got[key], value), (part, key)


def test_no_readable_checkpoint_is_one_line_naming_the_run_and_the_files(
    capsys, run_copy, tone_manifest, prior_base
):
    found = checkpoints(run_copy)
    found[6].write_bytes(b"")
    found[3].write_text("not a checkpoint\n")
    status, err = train(capsys, tone_manifest, prior_base, run_copy, "--resume")
    assert status == 2
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"error: cannot resume {run_copy / 'run'}: none of its 2 checkpoint")
    assert "step_00000006.pt: the file is empty" in err and "step_00000003.pt: truncated" in err
    assert sorted(checkpoints(run_copy)) == [3, 6]  # a refused resume moves nothing


def test_a_changed_recipe_is_refused_listing_every_key(
    capsys, run_copy, tone_manifest, prior_base
):
    recipe_before = (run_copy / "run" / "recipe.yaml").read_text()
    newest = checkpoints(run_copy)[6]
    stored = load_checkpoint(newest)["recipe"]["train"]
    before = newest.read_bytes()
    status, err = train(capsys, tone_manifest, prior_base, run_copy, "--resume",
                        "train.lr=0.5", "train.warmup=1", "train.steps=9")
    assert status == 2
    assert f"train.lr: was {json.dumps(stored['lr'])} in this run, the recipe now says 0.5" in err
    assert "train.warmup: was 2 in this run, the recipe now says 1" in err
    assert "train.steps" not in err.split("only ")[0]  # a safe key is not refused
    # Nothing was written: the recipe, the checkpoint and the bundle still say the old lr.
    assert (run_copy / "run" / "recipe.yaml").read_text() == recipe_before
    assert newest.read_bytes() == before and sorted(checkpoints(run_copy)) == [3, 6]
    provenance = read_manifest(run_copy / "bundle")["priors"]["0"]["provenance"]
    assert provenance["recipe"]["train"]["lr"] == stored["lr"]


def test_a_model_size_change_is_refused_the_same_way(capsys, run_copy, tone_manifest, prior_base):
    status, err = train(capsys, tone_manifest, prior_base, run_copy, "--resume",
                        "model.width=64")
    assert status == 2
    assert "model.width: was 32 in this run, the recipe now says 64" in err
    assert "size mismatch" not in err and "state_dict" not in err


def test_more_steps_on_resume_are_applied_and_recorded(
    capsys, run_copy, tone_manifest, prior_base
):
    status, err = train(capsys, tone_manifest, prior_base, run_copy, "--resume", "train.steps=8")
    assert status == 0, err
    assert "train.steps: was 6 in this run, now 8" in err
    change = {"step": 6, "key": "train.steps", "old": 6, "new": 8}
    state = load_checkpoint(checkpoints(run_copy)[8])
    assert state["step"] == 8 and state["recipe"]["train"]["steps"] == 8
    assert change in state["recipe_changes"]
    provenance = read_manifest(run_copy / "bundle")["priors"]["0"]["provenance"]
    assert provenance["steps"] == 8 and change in provenance["recipe_changes"]
    recipe_text = (run_copy / "run" / "recipe.yaml").read_text()
    assert "at step 6: train.steps: 6 -> 8" in recipe_text
    assert yaml.safe_load(recipe_text)["train"]["steps"] == 8


def test_fewer_steps_than_the_run_reached_are_refused(capsys, run_copy, tone_manifest, prior_base):
    status, err = train(capsys, tone_manifest, prior_base, run_copy, "--resume", "train.steps=4")
    assert status == 2 and len(err.strip().splitlines()) == 1, err
    assert "train.steps is 4 but the run already reached step 6" in err


@pytest.mark.parametrize("how", ["signal", "raise"])
def test_ctrl_c_exits_130_with_the_command_that_resumes(
    how, capsys, monkeypatch, tone_manifest, prior_base, tmp_path
):
    """SIGINT finishes the step and saves it; a KeyboardInterrupt inside the loop (a second
    Ctrl-C) leaves the last periodic checkpoint. Either way the printed command resumes."""
    stop_at = {"signal": 2, "raise": 4}[how]

    def interrupt(trainer):
        if trainer.step == stop_at:
            # The trainer's handler turns SIGINT into a stop request; without it (not the main
            # thread) a signal would end the test session, so raise instead.
            trainer_handles_it = signal.getsignal(signal.SIGINT) is not signal.default_int_handler
            if how == "signal" and trainer_handles_it:
                os.kill(os.getpid(), signal.SIGINT)
            else:
                raise KeyboardInterrupt

    monkeypatch.setattr(jukelite.train, "train_recipe",
                        functools.partial(jukelite.train.train_recipe, callbacks=[interrupt]))
    status, err = train(capsys, tone_manifest, prior_base, tmp_path)
    monkeypatch.undo()
    assert status == 130
    command = shlex.join(["jukelite", "train", RECIPE, "--resume",
                          *overrides(tone_manifest, prior_base, tmp_path)])
    where = "at step 2" if how == "signal" else "at step 4 (the last checkpoint is step 3)"
    assert err.strip().splitlines()[-1] == f"interrupted {where}; resume with: {command}"
    assert sorted(checkpoints(tmp_path)) == [stop_at if how == "signal" else 3]
    status, err = train(capsys, tone_manifest, prior_base, tmp_path, "--resume")
    assert status == 0, err
    assert sorted(checkpoints(tmp_path))[-1] == 6


@pytest.mark.parametrize("folder", ["missing", "empty", "recipe_only"])
def test_resuming_a_folder_that_is_not_a_run_is_one_line(
    folder, capsys, tone_manifest, prior_base, tmp_path
):
    run = tmp_path / "run"
    if folder != "missing":
        run.mkdir()
    if folder == "recipe_only":
        (run / "recipe.yaml").write_text("kind: prior\n")
    status, err = train(capsys, tone_manifest, prior_base, tmp_path, "--resume")
    assert status == 2
    assert len(err.strip().splitlines()) == 1, err
    expected = "no checkpoint yet" if folder == "recipe_only" else "not a training run"
    assert err.startswith(f"error: cannot resume {run}: ") and expected in err


def test_weights_that_do_not_fit_are_listed_per_tensor(tmp_path):
    """A checkpoint without a stored recipe (a bare Trainer) is still refused one tensor per
    line when the model changed, not with load_state_dict's wall of text."""
    config = TrainSection(steps=2, batch_size=4, warmup=0, save_every=2, eval_every=100,
                          progress=False)
    Trainer(Regression(), config, tmp_path / "run", DistributedContext()).fit()
    wider = Regression()
    wider.model = nn.Linear(5, 1, bias=False)
    with pytest.raises(RunDirectoryError) as caught:
        Trainer(wider, config, tmp_path / "run", DistributedContext(), resume=True)
    assert str(caught.value).splitlines()[1:] == [
        "  weight: [1, 4] in the checkpoint, [1, 5] in the model"]
