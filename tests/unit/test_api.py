"""jukelite.load / Jukebox.generate on a tiny random bundle built here: shapes, seeds, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import jukelite
from jukelite.bundle import BundleError, save_prior_level
from jukelite.codes import load_codes
from jukelite.data.labels import LabelVocabulary, UnknownLabelError
from jukelite.data.manifest import ManifestEntry
from jukelite.prior.model import LevelPrior, PriorConfig

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture
def complete_bundle(tmp_path, make_bundle) -> Path:
    """Two VQ-VAE levels (hops 4 and 8 at 8 kHz), a labelled top prior with timing on level 1
    and an upsampler on level 0 (x2 from level 1)."""
    bundle = make_bundle(tmp_path / "bundle")
    vocabulary = LabelVocabulary.from_entries(
        [ManifestEntry(path=Path("a.wav"), artist="Ada", genres=["rock"]),
         ManifestEntry(path=Path("b.wav"), artist="Bo", genres=["folk"])], max_bow_genre_size=2)
    shared = dict(bins=16, n_ctx=16, width=16, depth=2, heads=2, blocks=4, attn_order=2,
                  artist_bins=vocabulary.n_artists, genre_bins=vocabulary.n_genres,
                  max_bow_genre_size=2, sample_rate=8000)
    torch.manual_seed(0)
    top = LevelPrior(PriorConfig(level=1, timing=True, t_bins=8, min_duration=0.01,
                                 max_duration=10.0, **shared))
    upsampler = LevelPrior(PriorConfig(level=0, upsampler=True, cond_down_t=1, cond_stride=2,
                                       cond_width=8, cond_depth=1, cond_dilation_cycle=1,
                                       **shared))
    for prior in (top, upsampler):
        save_prior_level(bundle, prior, {"labels": vocabulary.to_dict(), "lyrics": None})
    return bundle


def test_generate_renders_every_sample_top_down(complete_bundle, tmp_path):
    jb = jukelite.load(complete_bundle)
    calls = []
    song = jb.generate(artist="Ada", genre="rock", seconds=0.05, n_samples=2, seed=1,
                       progress=lambda level, window, done: calls.append(level))
    samples = 400  # 0.05 s at 8 kHz, a multiple of the top hop (8)
    assert song.audio.shape == (2, 1, samples) and song.sample_rate == 8000
    assert song.audio.abs().max() <= 1.0
    assert song.codes[1].shape == (2, samples // 8) and song.codes[0].shape == (2, samples // 4)
    assert set(calls) == {0, 1} and calls[0] == 1  # the top level first
    out = song.save(tmp_path / "out")
    assert (out / "level_0" / "sample_1.wav").is_file()
    codes, _ = load_codes(out / "codes.safetensors")
    assert torch.equal(codes[0], song.codes[0])
    assert json.loads((out / "song.json").read_text())["seed"] == 1


def test_same_seed_same_song_other_seed_other_song(complete_bundle):
    jb = jukelite.load(complete_bundle)
    first = jb.generate(artist="Bo", genre="folk", seconds=0.03, seed=4)
    again = jb.generate(artist="Bo", genre="folk", seconds=0.03, seed=4)
    other = jb.generate(artist="Bo", genre="folk", seconds=0.03, seed=5)
    assert torch.equal(first.codes[0], again.codes[0]) and torch.equal(first.audio, again.audio)
    assert not torch.equal(first.codes[1], other.codes[1])


def test_bad_requests_are_clear(complete_bundle, tmp_path, make_bundle):
    jb = jukelite.load(complete_bundle)
    with pytest.raises(UnknownLabelError, match="Ada|ada"):
        jb.generate(artist="Adda", genre="rock", seconds=0.03)
    with pytest.raises(ValueError, match="timing range"):
        jb.generate(artist="Ada", genre="rock", seconds=20.0)
    with pytest.raises(BundleError, match="no prior for level"):
        jukelite.load(make_bundle(tmp_path / "vqvae_only"))
    with pytest.raises(BundleError, match="no demo model"):
        jukelite.load()
