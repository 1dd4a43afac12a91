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

    def spy(self, codes, y=None, upper=None, lyrics=None, drop=None):
        if self.training:
            dropped.append(-1 if drop is None else int(drop.sum()))
        return forward(self, codes, y, upper, lyrics, drop)

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
