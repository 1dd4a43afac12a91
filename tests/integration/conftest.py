"""Shared pieces of the integration tests: a generated dataset and a tiny VQ-VAE recipe."""

from __future__ import annotations

from pathlib import Path

import pytest

from jukelite.data.synth import write_synth_dataset
from jukelite.recipes import load_recipe

REPO = Path(__file__).resolve().parents[2]
TINY_RECIPE = REPO / "recipes" / "tiny" / "vqvae.yaml"


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
