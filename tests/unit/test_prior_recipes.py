"""The shipped prior recipes: released Jukebox shapes dry-run to their exact sizes."""

from __future__ import annotations

from pathlib import Path

import pytest

from jukelite.cli import main
from jukelite.recipes import PriorRecipe, load_recipe

RECIPES = Path(__file__).resolve().parents[2] / "recipes"

JUKEBOX_SIZES = {
    "prior_5b.yaml": "5,060,452,800",
    "prior_5b_lyrics.yaml": "5,640,506,800",
    "prior_1b_lyrics.yaml": "942,643,200",
    "upsampler_level_0.yaml": "981,298,176",
    "upsampler_level_1.yaml": "981,298,176",
}


@pytest.mark.parametrize("name", sorted(JUKEBOX_SIZES))
def test_released_prior_recipes_dry_run_to_the_reference_size(name, capsys, tmp_path):
    # output.bundle points at a missing folder, so the codebook size is the recipe default (2048).
    code = main(["train", str(RECIPES / "jukebox" / name), "--dry-run",
                 f"output.bundle={tmp_path / 'none'}"])
    assert code == 0
    assert f"trainable parameters: {JUKEBOX_SIZES[name]}" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["prior_top", "prior_mid", "prior_bottom"])
def test_tiny_prior_recipes_load(name):
    recipe = load_recipe(RECIPES / "tiny" / f"{name}.yaml")
    assert isinstance(recipe, PriorRecipe)
    assert recipe.model.level == recipe.level == {"prior_top": 2, "prior_mid": 1,
                                                   "prior_bottom": 0}[name]
    assert recipe.model.upsampler == (name != "prior_top")


def test_prior_recipe_refuses_keys_read_from_the_bundle(capsys):
    code = main(["train", str(RECIPES / "tiny" / "prior_top.yaml"), "--dry-run", "model.bins=12"])
    assert code == 2
    assert "'model.bins' is read from the bundle's VQ-VAE; remove it" in capsys.readouterr().err


def test_training_a_prior_without_its_vqvae_says_what_to_do(capsys, tmp_path):
    code = main(["train", str(RECIPES / "tiny" / "prior_top.yaml"), "train.progress=false",
                 f"data.manifest={RECIPES.parent / 'data' / 'examples' / 'manifest.jsonl'}",
                 f"output.bundle={tmp_path / 'empty'}", f"output.dir={tmp_path / 'run'}"])
    assert code == 2
    assert "train a VQ-VAE recipe into it first" in capsys.readouterr().err
