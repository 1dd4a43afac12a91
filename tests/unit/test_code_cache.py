"""Codes are encoded once per song and per VQ-VAE weights, and equal a direct encode."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import jukelite.train.code_cache as code_cache
from jukelite.audio import load_audio, save_audio
from jukelite.bundle import BundleError, load_vqvae_level
from jukelite.data.dataset import AudioCache
from jukelite.data.manifest import ManifestEntry
from jukelite.train.code_cache import CodeCache
from jukelite.vqvae.chunked import encode_audio

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture
def songs(tmp_path):
    entries = []
    for index, seconds in enumerate((0.25, 0.4)):
        t = torch.arange(int(8000 * seconds)) / 8000
        tone = 0.4 * torch.sin(2 * torch.pi * (220 + 110 * index) * t)
        path = tmp_path / f"song{index}.wav"
        save_audio(path, torch.stack([tone, 0.5 * tone]), 8000)  # stereo: tests the downmix
        entries.append(ManifestEntry(path=path))
    return entries


def test_codes_equal_a_direct_encode_and_are_reused(songs, tmp_path, make_bundle, monkeypatch):
    bundle = make_bundle(tmp_path / "bundle")
    audio_cache = AudioCache(8000, tmp_path / "audio")
    cache = CodeCache(bundle, 1, tmp_path / "codes", audio_cache)
    lengths = cache.prepare(songs, progress=False)
    model = load_vqvae_level(bundle, 1)
    for entry, length in zip(songs, lengths, strict=True):
        audio = load_audio(entry.path, sample_rate=8000, channels=1)[None]
        expected = encode_audio(model, audio)[0].numpy()
        assert length == len(expected) == -(-audio.shape[-1] // model.hop_length)
        np.testing.assert_array_equal(cache.load(entry.path), expected)

    calls = []
    monkeypatch.setattr(code_cache, "encode_audio", lambda *a, **k: calls.append(a))
    again = CodeCache(bundle, 1, tmp_path / "codes", audio_cache)
    assert again.prepare(songs, progress=False) == lengths
    assert calls == []


def test_new_weights_get_a_new_folder(songs, tmp_path, make_bundle):
    first = CodeCache(make_bundle(tmp_path / "a", seed=0), 0, tmp_path / "codes")
    second = CodeCache(make_bundle(tmp_path / "b", seed=1), 0, tmp_path / "codes")
    assert first.folder != second.folder
    assert first.path_for(songs[0].path).parent == first.folder


def test_missing_level_is_named(tmp_path, make_bundle):
    bundle = make_bundle(tmp_path / "bundle", levels=(0,))
    with pytest.raises(BundleError, match="no VQ-VAE level 1 to encode with"):
        CodeCache(bundle, 1, tmp_path / "codes")
