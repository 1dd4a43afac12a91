"""Fine-tuning an imported Jukebox prior with a recipe (`train.init_from`): it starts from the
imported weights and vocabularies, learns the new songs, and lands back in the bundle."""

from __future__ import annotations

import json

import pytest
import torch
from torch.utils.data import DataLoader

from jukelite.bundle import Bundle
from jukelite.convert.jukebox import import_jukebox
from jukelite.recipes import RecipeError, load_recipe
from jukelite.train import train_recipe
from jukelite.train.prior_task import PriorTask
from tests.unit.test_jukebox_import import make_checkpoints, tiny_hps, write_ids

from .conftest import REPO


def _recipe(manifest, bundle, workdir, *extra):
    return load_recipe(REPO / "recipes" / "tiny" / "prior_top.yaml", [
        f"data.manifest={manifest}", f"data.cache_dir={workdir / 'cache'}",
        f"output.dir={workdir / 'run'}", f"output.bundle={bundle}", f"train.init_from={bundle}",
        "train.steps=40", "train.batch_size=4", "train.warmup=5", "train.lr=3e-3",
        "train.schedule=constant", "train.save_every=40", "train.eval_every=40",
        "train.progress=false", "data.valid_windows=4", *extra])


@pytest.mark.slow
def test_an_imported_prior_fine_tunes_from_a_recipe(tone_manifest, tmp_path):
    hps = tiny_hps("5b")
    paths, _, originals = make_checkpoints(tmp_path, "5b", hps)
    bundle = import_jukebox(tmp_path / "bundle", paths["vqvae"], {2: paths["priors"][2]}, "5b",
                            hps, write_ids(tmp_path / "ids"))
    recipe = _recipe(tone_manifest, bundle, tmp_path)
    with pytest.warns(UserWarning, match="model section is not used"):
        task = PriorTask(recipe)
    assert task.config == originals[2].config
    assert torch.equal(task.model.embedding.x_emb.weight, originals[2].embedding.x_emb.weight)
    batch = next(iter(DataLoader(task.train_dataset(), batch_size=8)))

    def bits(prior) -> float:
        with torch.no_grad():
            return float(prior.eval()(batch["codes"], batch.get("y")).loss)

    before = bits(task.model)
    train_recipe(recipe)
    after = bits(Bundle.open(bundle).prior(2))
    assert after < before - 0.5, (before, after)  # it learned the new songs' codes
    entry = json.loads((bundle / "jukelite.json").read_text())["priors"]["2"]
    assert entry["provenance"]["init_from"]["bundle"] == str(bundle)
    assert entry["vocabularies"]["labels"]["normalization"] == "jukebox_v2"


def test_init_from_is_checked(tone_manifest, tmp_path):
    hps = tiny_hps("5b")
    paths, _, _ = make_checkpoints(tmp_path, "5b", hps)
    bundle = import_jukebox(tmp_path / "bundle", paths["vqvae"], {2: paths["priors"][2]}, "5b",
                            hps, write_ids(tmp_path / "ids"))
    with pytest.raises(ValueError, match="has no prior for level 1"):
        PriorTask(_recipe(tone_manifest, bundle, tmp_path, "level=1"))
    with pytest.raises(RecipeError, match="init_from"):
        load_recipe(REPO / "recipes" / "tiny" / "vqvae.yaml", [f"train.init_from={bundle}"])
