"""`train.cond_dropout` trains a prior's null conditioning, which `--guidance` then samples with."""

from __future__ import annotations

import pytest

import jukelite
from jukelite.bundle import Bundle
from jukelite.cli import main
from jukelite.recipes import RecipeError, load_recipe

from .conftest import TINY_PRIOR_RECIPES, TINY_RECIPE, tiny_prior_overrides


def test_condition_dropout_trains_the_null_that_guidance_samples_with(
    tone_manifest, prior_base, tmp_path, monkeypatch
):
    from jukelite.prior.model import LevelPrior

    dropped: list[int] = []
    forward = LevelPrior.forward

    def spy(self, codes, y=None, upper=None, lyrics=None, drop=None, mask=None):
        if self.training:
            dropped.append(-1 if drop is None else int(drop.sum()))
        return forward(self, codes, y, upper, lyrics, drop, mask)

    monkeypatch.setattr(LevelPrior, "forward", spy)
    overrides = [*tiny_prior_overrides("top", tone_manifest, prior_base, tmp_path),
                 "train.steps=30", "train.batch_size=4", "train.eval_every=100",
                 "train.save_every=100", "train.cond_dropout=0.5"]
    assert main(["train", str(TINY_PRIOR_RECIPES["top"]), *overrides]) == 0
    assert len(dropped) == 30 and -1 not in dropped
    assert 0.3 < sum(dropped) / (30 * 4) < 0.7  # about half of the windows, drawn per window
    bundle = tmp_path / "bundle"
    assert Bundle.open(bundle).prior_configs[1].guidance
    jb = jukelite.load(bundle)
    song = jb.generate(artist=jb.artists[0], genre="unknown", lyrics="la la la", seconds=0.2,
                       total_seconds=4.0, levels="top", guidance=3.0, seed=2)
    assert song.record["request"]["guidance"] == {"1": 3.0}


def test_condition_dropout_is_checked():
    with pytest.raises(RecipeError, match=r"train.cond_dropout' must lie in \[0, 1\)"):
        load_recipe(TINY_PRIOR_RECIPES["top"], ["train.cond_dropout=1.5"])
    with pytest.raises(RecipeError, match="cond_dropout' is for prior recipes"):
        load_recipe(TINY_RECIPE, ["train.cond_dropout=0.2"])


def test_fine_tuning_with_cond_dropout_adds_guidance_to_a_prior_trained_without(
    tone_manifest, prior_base, tmp_path
):
    import torch

    plain = tmp_path / "plain"
    overrides = [*tiny_prior_overrides("top", tone_manifest, prior_base, plain),
                 "train.steps=4", "train.batch_size=2", "train.eval_every=100",
                 "train.save_every=100"]
    assert main(["train", str(TINY_PRIOR_RECIPES["top"]), *overrides]) == 0
    source = plain / "bundle"
    assert not Bundle.open(source).prior_configs[1].guidance
    tuned = tmp_path / "tuned"
    overrides = [*tiny_prior_overrides("top", tone_manifest, prior_base, tuned),
                 "train.steps=4", "train.batch_size=2", "train.eval_every=100",
                 "train.save_every=100", "train.cond_dropout=0.5", f"train.init_from={source}",
                 "train.lr=1e-12"]  # no change: the fine-tuned prior is the source plus a null
    assert main(["train", str(TINY_PRIOR_RECIPES["top"]), *overrides]) == 0
    bundle = Bundle.open(tuned / "bundle")
    assert bundle.prior_configs[1].guidance
    provenance = bundle.manifest["priors"]["1"]["provenance"]
    assert provenance["init_from"]["bundle"] == str(source)
    before, after = Bundle.open(source).prior(1).state_dict(), bundle.prior(1).state_dict()
    assert set(after) - set(before) == {"null_start", "null_lyrics"}
    for key, value in before.items():
        torch.testing.assert_close(after[key], value, rtol=0, atol=1e-9)
    jb = jukelite.load(tuned / "bundle")
    song = jb.generate(artist=jb.artists[0], genre="unknown", lyrics="la la", seconds=0.2,
                       total_seconds=4.0, levels="top", guidance=2.0, seed=1)
    assert song.record["request"]["guidance"] == {"1": 2.0}
