"""Tiny priors trained on real codes use their conditioning: labels and the codes above."""

from __future__ import annotations

import math
import shutil

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from jukelite.audio import save_audio
from jukelite.bundle import load_prior_level, read_manifest
from jukelite.data.labels import ARTIST, GENRES, LabelVocabulary
from jukelite.data.manifest import ManifestEntry, write_manifest
from jukelite.data.synth import synth_song
from jukelite.recipes import load_recipe
from jukelite.train import train_recipe
from jukelite.train.prior_task import PriorTask

from .conftest import REPO

# Two artists whose sound differs completely: chiptune pulses against soft ambient pads. The songs
# are rendered without the singer (voice=False): sung over, the two styles share much of their
# sound and 300 steps learn too little of the labels to measure reliably (first token 7.05 vs
# 7.41 bits).
STYLES = (("Nova Lark", "chiptune"), ("Mira Vale", "ambient"))


@pytest.fixture(scope="module")
def labelled_manifest(tmp_path_factory):
    folder = tmp_path_factory.mktemp("labelled")
    entries = []
    for index in range(8):
        artist, genre = STYLES[index % 2]
        song = synth_song(seed=100 + index, seconds=6.0, sample_rate=22050, artist=artist,
                          genre=genre, voice=False)
        path = folder / f"song_{index}.flac"
        save_audio(path, song.audio, 22050)
        entries.append(ManifestEntry(path=path, artist=artist, genres=[genre], lyrics=song.lyrics,
                                     lyrics_timing=song.lyrics_timing, duration=6.0))
    write_manifest(entries, folder / "manifest.jsonl")
    return folder / "manifest.jsonl"


def prior_recipe(name: str, manifest, vqvae, workdir, *overrides: str):
    """A shipped tiny prior recipe writing into a copy of the trained VQ-VAE bundle."""
    recipe, _, vqvae_dir = vqvae
    bundle = workdir / "bundle"
    if not bundle.exists():
        shutil.copytree(recipe.output.bundle, bundle)
    return load_recipe(REPO / "recipes" / "tiny" / f"prior_{name}.yaml", [
        f"data.manifest={manifest}", f"data.cache_dir={vqvae_dir / 'cache'}",
        f"output.dir={workdir / ('run_' + name)}", f"output.bundle={bundle}",
        "train.progress=false", "data.valid_fraction=0.0", *overrides,
    ])


def exchange(values: torch.Tensor, a: int, b: int) -> torch.Tensor:
    return torch.where(values == a, b, torch.where(values == b, a, values))


def bits_per_position(prior, batches, swap=None, upper_shift: int = 0) -> torch.Tensor:
    """Validation bits of every window position [windows, n_ctx], optionally with the two
    styles' artist and genre ids swapped, or (upsamplers) with the upper codes of the window
    `upper_shift` places further on in the batch."""
    rows = []
    with torch.no_grad():
        for batch in batches:
            y = batch["y"].clone()
            if swap:
                (artist_a, artist_b), (genre_a, genre_b) = swap
                y[:, ARTIST] = exchange(y[:, ARTIST], artist_a, artist_b)
                y[:, GENRES:] = exchange(y[:, GENRES:], genre_a, genre_b)
            upper = batch.get("upper")
            if upper_shift:
                upper = upper.roll(upper_shift, 0)
            logits = prior(batch["codes"], y, upper, batch.get("lyrics")).logits
            nats = F.cross_entropy(logits.transpose(1, 2), batch["codes"], reduction="none")
            rows.append(nats / math.log(2))
    return torch.cat(rows)


def test_top_prior_uses_its_labels(labelled_manifest, trained_vqvae, tmp_path):
    recipe = prior_recipe("top", labelled_manifest, trained_vqvae, tmp_path, "train.steps=300",
                          "train.eval_every=300", "train.save_every=300")
    metrics = train_recipe(recipe)
    assert metrics["music_bits_per_token"] < 7.0  # uniform over 256 codes is 8 bits
    prior = load_prior_level(recipe.output.bundle, 2)
    vocabulary = LabelVocabulary.from_dict(read_manifest(recipe.output.bundle)["labels"])
    (a0, g0), (a1, g1) = STYLES
    swap = ((vocabulary.artist_id(a0), vocabulary.artist_id(a1)),
            (vocabulary.genre_ids([g0])[0], vocabulary.genre_ids([g1])[0]))
    batches = list(DataLoader(PriorTask(recipe).valid_dataset(), batch_size=8))
    true_bits = bits_per_position(prior, batches)
    swapped_bits = bits_per_position(prior, batches, swap)
    # Labels matter most where the context has not yet revealed the style: above all for the
    # first token of a window, which only the labels and timing predict. Measured with the sung
    # synth songs after 300 steps: first token 7.05 bits with the true labels vs 7.41 swapped,
    # first 8 tokens 5.179 vs 5.218 (a model ignoring its labels scores the same either way).
    assert true_bits[:, 0].mean() < swapped_bits[:, 0].mean() - 0.15
    assert true_bits[:, :8].mean() < swapped_bits[:, :8].mean()


def test_upsampler_predicts_from_the_codes_of_the_level_above(
    labelled_manifest, trained_vqvae, tmp_path
):
    recipe = prior_recipe("mid", labelled_manifest, trained_vqvae, tmp_path, "train.steps=400",
                          "train.eval_every=400", "train.save_every=400", "model.n_ctx=256",
                          "model.blocks=8")
    train_recipe(recipe)
    prior = load_prior_level(recipe.output.bundle, 1)
    batches = list(DataLoader(PriorTask(recipe).valid_dataset(), batch_size=8))
    true_bits = bits_per_position(prior, batches).mean()
    other_bits = bits_per_position(prior, batches, upper_shift=1).mean()
    # Each window's own level-2 codes vs those of the next window in the batch: measured 5.70 vs
    # 9.78 bits per token (an upsampler ignoring the codes above scores the same either way).
    assert true_bits < other_bits - 1.0


def test_parallel_upsampler_predicts_hidden_codes_better_than_their_unigram(
    labelled_manifest, trained_vqvae, tmp_path
):
    from jukelite.prior.masking import draw_training_mask

    recipe = prior_recipe("mid_parallel", labelled_manifest, trained_vqvae, tmp_path,
                          "train.steps=400", "train.eval_every=400", "train.save_every=400",
                          "model.n_ctx=256", "model.blocks=8")
    train_recipe(recipe)
    prior = load_prior_level(recipe.output.bundle, 1)
    assert prior.config.parallel
    task = PriorTask(recipe)
    train_codes = torch.cat([batch["codes"].flatten()
                             for batch in DataLoader(task.train_dataset(), batch_size=64)])
    counts = torch.bincount(train_codes, minlength=prior.config.bins).float()
    frequency = counts / counts.sum()
    batches = list(DataLoader(task.valid_dataset(), batch_size=8))
    masks = torch.Generator().manual_seed(0)
    hidden_bits, other_bits, unigram_bits = [], [], []
    with torch.no_grad():
        for batch in batches:
            codes = batch["codes"]
            mask = draw_training_mask(codes.shape[0], codes.shape[1], masks)
            hidden_bits.append(prior(codes, batch["y"], batch["upper"], mask=mask).loss.item())
            other_bits.append(prior(codes, batch["y"], batch["upper"].roll(1, 0),
                                    mask=mask).loss.item())
            unigram_bits.append(-frequency[codes[mask]].clamp_min(1e-9).log2().mean().item())
    model_bits, other = sum(hidden_bits) / len(batches), sum(other_bits) / len(batches)
    baseline = sum(unigram_bits) / len(batches)
    # measured after 400 steps: 6.31 bits per hidden code against 6.71 for the unigram of the
    # training codes (the autoregressive twin, on demo songs at 300 steps: 6.67 bits per token
    # against the parallel's 6.76, both about 1 bit under their unigram); with the upper codes
    # of another window the parallel upsampler loses more than a bit
    assert model_bits < baseline - 0.2, (model_bits, baseline)
    assert model_bits < other - 1.0, (model_bits, other)
