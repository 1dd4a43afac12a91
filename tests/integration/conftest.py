"""Shared pieces of the integration tests: a generated dataset, tiny VQ-VAE and prior recipes."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from jukelite.data.synth import write_synth_dataset
from jukelite.recipes import load_recipe

REPO = Path(__file__).resolve().parents[2]
TINY_RECIPE = REPO / "recipes" / "tiny" / "vqvae.yaml"
# The shipped tiny priors shrunk to train in well under a second per step on the two-level
# test bundle (8 kHz, hops 4 and 8): the top prior keeps its lyrics encoder, timing and labels.
TINY_PRIOR_RECIPES = {name: REPO / "recipes" / "tiny" / f"prior_{name}.yaml"
                      for name in ("top", "bottom")}
TINY_PRIORS = {
    "top": ("level=1", "model.n_ctx=32", "model.blocks=4", "model.width=32",
            "model.n_tokens=8", "model.lyrics_width=16", "model.lyrics_depth=1",
            "model.lyrics_blocks=2"),
    "bottom": ("model.n_ctx=32", "model.blocks=4", "model.width=32", "model.depth=2",
               "model.cond_down_t=1", "model.cond_width=16", "model.cond_depth=1",
               "model.cond_dilation_cycle=1"),
}


@pytest.fixture(scope="session")
def tone_manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Eight procedural songs (tones, chords, drums) of 4 s each."""
    return write_synth_dataset(
        tmp_path_factory.mktemp("songs"), n_songs=8, seconds=4.0, sample_rate=22050, seed=1
    )


@pytest.fixture(scope="session")
def trained_vqvae(tone_manifest, tmp_path_factory):
    """The tiny recipe trained 300 steps on the tone songs: (recipe, final metrics, workdir)."""
    from jukelite.train import train_recipe

    workdir = tmp_path_factory.mktemp("tiny_vqvae")
    recipe = tiny_recipe(tone_manifest, workdir, "train.steps=300", "train.eval_every=300",
                         "train.save_every=300")
    return recipe, train_recipe(recipe), workdir


def tiny_recipe(manifest: Path, workdir: Path, *overrides: str):
    """The shipped tiny recipe pointed at `manifest`, writing under `workdir`."""
    return load_recipe(
        TINY_RECIPE,
        [
            f"data.manifest={manifest}",
            f"data.cache_dir={workdir / 'cache'}",
            f"output.dir={workdir / 'run'}",
            f"output.bundle={workdir / 'bundle'}",
            "train.progress=false",
            *overrides,
        ],
    )


@pytest.fixture(scope="session")
def prior_base(tone_manifest, tmp_path_factory) -> Path:
    """A folder holding `bundle/`, a built (untrained) two-level VQ-VAE to train priors into,
    and `cache/`, the audio and codes every prior test shares."""
    from ..conftest import _make_bundle

    base = tmp_path_factory.mktemp("prior_base")
    _make_bundle(base / "bundle")
    return base


def tiny_prior_overrides(name: str, manifest: Path, base: Path, workdir: Path) -> list[str]:
    """Overrides that point the shipped tiny prior `name` (shrunk by TINY_PRIORS) at `manifest`,
    writing under `workdir` into a copy of the bundle in `base` (see `prior_base`)."""
    bundle = workdir / "bundle"
    if not bundle.exists():
        shutil.copytree(base / "bundle", bundle)
    return [
        f"data.manifest={manifest}",
        f"data.cache_dir={base / 'cache'}",
        f"output.dir={workdir / 'run'}",
        f"output.bundle={bundle}",
        "train.progress=false",
        "data.valid_fraction=0.0",  # validate on training songs: every artist is known
        "data.valid_windows=2",
        *TINY_PRIORS[name],
    ]


def tiny_prior_recipe(name: str, manifest: Path, base: Path, workdir: Path, *overrides: str):
    """The shipped tiny prior `name`, shrunk, writing under `workdir` (see tiny_prior_overrides)."""
    return load_recipe(
        TINY_PRIOR_RECIPES[name],
        [*tiny_prior_overrides(name, manifest, base, workdir), *overrides],
    )
