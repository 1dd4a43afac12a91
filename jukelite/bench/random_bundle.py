"""Complete bundles with random weights, built from recipes in seconds.

Sampling speed does not depend on what the weights learned, so `jukelite bench sample` and the
end-to-end tests build the exact model shapes of a set of recipes (every VQ-VAE level and every
prior) without training them.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence
from pathlib import Path

import torch

from jukelite.bundle import save_prior_level, save_vqvae_level
from jukelite.data.labels import LabelVocabulary
from jukelite.data.lyrics import LyricsTokenizer
from jukelite.data.manifest import ManifestEntry
from jukelite.data.synth import ARTISTS, GENRES
from jukelite.prior.model import LevelPrior
from jukelite.recipes import PriorRecipe, RecipeError, VQVAERecipe, load_recipe
from jukelite.vqvae.model import LevelVQVAE

RECIPES_DIR = Path(__file__).resolve().parents[2] / "recipes"
TINY_PRIOR_RECIPES = ("prior_top.yaml", "prior_mid.yaml", "prior_bottom.yaml")
TINY_PARALLEL_PRIOR_RECIPES = ("prior_top.yaml", "prior_mid_parallel.yaml",
                               "prior_bottom_parallel.yaml")


def tiny_recipes(parallel: bool = False) -> tuple[Path, list[Path]]:
    """The tiny VQ-VAE recipe and the tiny prior recipes shipped in the repository (with
    `parallel`, the upsamplers' parallel twins)."""
    tiny = RECIPES_DIR / "tiny"
    names = TINY_PARALLEL_PRIOR_RECIPES if parallel else TINY_PRIOR_RECIPES
    paths = [tiny / "vqvae.yaml", *(tiny / name for name in names)]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(
            f"the tiny recipes are not there ({', '.join(missing)}); they ship with the "
            "repository checkout, not with an installed wheel: pass recipe paths instead"
        )
    return paths[0], paths[1:]


@torch.no_grad()
def build_random_bundle(
    directory: str | Path,
    vqvae_recipe: str | Path,
    prior_recipes: Sequence[str | Path],
    overrides: Sequence[str] = (),
    artists: Sequence[str] = ARTISTS,
    genres: Sequence[str] = GENRES,
    seed: int = 0,
) -> Path:
    """Write every VQ-VAE level of `vqvae_recipe` and the prior of each prior recipe, randomly
    initialised, into the bundle `directory` (which must not hold a bundle yet).

    `overrides` (`model.key=value`) apply to the prior recipes, e.g. to shrink them in tests.
    Artists and genres form the label vocabulary; lyric priors get the v2 tokenizer.
    """
    directory = Path(directory)
    if (directory / "jukelite.json").exists():
        raise FileExistsError(f"{directory} already holds a bundle; pick an empty directory")
    vqvae = load_recipe(vqvae_recipe)
    if not isinstance(vqvae, VQVAERecipe):
        raise RecipeError(f"{vqvae_recipe}: expected a vqvae recipe, got kind {vqvae.kind!r}")
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        for level in range(vqvae.model.levels):
            model = LevelVQVAE(vqvae.model, level).eval()
            model.quantizer.codebook.normal_()  # distinct codes decode to distinct audio
            model.quantizer.initialized.fill_(True)
            save_vqvae_level(directory, model, provenance={"random_weights": True})
        songs = [ManifestEntry(path=Path(f"{i}.wav"), artist=artist, genres=[genre])
                 for i, (artist, genre) in enumerate(itertools.product(artists, genres))]
        vocabulary = LabelVocabulary.from_entries(songs, max_bow_genre_size=2)
        for path in prior_recipes:
            _save_random_prior(directory, path, list(overrides), vocabulary)
    finally:
        torch.random.set_rng_state(generator_state)
    return directory


def _save_random_prior(
    directory: Path, path: str | Path, overrides: list[str], vocabulary: LabelVocabulary
) -> None:
    from jukelite.train.prior_task import resolve_prior_config

    recipe = load_recipe(path, overrides)
    if not isinstance(recipe, PriorRecipe):
        raise RecipeError(f"{path}: expected a prior recipe, got kind {recipe.kind!r}")
    recipe = dataclasses.replace(
        recipe, output=dataclasses.replace(recipe.output, bundle=str(directory))
    )
    config = resolve_prior_config(recipe, vocabulary if recipe.model.labels else None)
    if config.labels:
        config = dataclasses.replace(config, max_bow_genre_size=vocabulary.max_bow_genre_size)
    prior = LevelPrior(config).eval()
    tokenizer = LyricsTokenizer(recipe.data.lyrics_version) if config.lyrics != "none" else None
    save_prior_level(
        directory, prior,
        {"labels": vocabulary.to_dict() if config.labels else None,
         "lyrics": tokenizer.to_dict() if tokenizer else None},
        provenance={"recipe": str(path), "random_weights": True},
    )
