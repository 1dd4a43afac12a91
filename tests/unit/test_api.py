"""jukelite.load / Jukebox.generate on a tiny random bundle built here: shapes, seeds, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import jukelite
from jukelite.api import LyricsWarning
from jukelite.audio import AudioError
from jukelite.bundle import BundleError
from jukelite.data.labels import UnknownLabelError
from jukelite.inference.codes import load_codes
from jukelite.inference.schedule import window_starts
from jukelite.prior.model import LevelPrior

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture
def complete_bundle(tmp_path, make_complete_bundle) -> Path:
    return make_complete_bundle(tmp_path / "bundle")


def test_generate_renders_every_sample_top_down(complete_bundle, tmp_path):
    jb = jukelite.load(complete_bundle)
    calls = []
    song = jb.generate(artist="Ada", genre="rock", seconds=0.05, n_samples=2, seed=1,
                       progress=lambda level, done, total: calls.append(level))
    samples = 400  # 0.05 s at 8 kHz, a multiple of the top hop (8)
    assert song.audio.shape == (2, 1, samples) and song.sample_rate == 8000
    assert torch.equal(song.audio, jb.decode(song.codes[0], level=0))  # the finest level
    assert song.codes[1].shape == (2, samples // 8) and song.codes[0].shape == (2, samples // 4)
    assert set(calls) == {0, 1} and calls[0] == 1  # the top level first
    out = song.save(tmp_path / "out")
    assert (out / "level_0" / "sample_1.wav").is_file()
    codes, _ = load_codes(out / "codes.safetensors")
    assert torch.equal(codes[0], song.codes[0])
    assert json.loads((out / "song.json").read_text())["request"]["seed"] == 1


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
    vqvae_only = jukelite.load(make_bundle(tmp_path / "vqvae_only"))  # encodes and decodes
    assert vqvae_only.encode(torch.zeros(1, 1, 64))[0].shape == (1, 16)
    with pytest.raises(BundleError, match="no prior for level"):
        vqvae_only.generate(artist="Ada", genre="rock", seconds=0.03)



def test_continuing_a_song_keeps_the_prompt_codes_at_every_level(complete_bundle):
    jb = jukelite.load(complete_bundle)
    prompt = torch.randn(1, 1, 200, generator=torch.Generator().manual_seed(0)) * 0.3
    song = jb.continue_(prompt, seconds=0.05, prime_seconds=0.01, artist="Ada", genre="rock",
                        n_samples=2, seed=3)
    primed = 80  # 0.01 s at 8 kHz, whole top-level tokens (hop 8)
    expected = jb.encode(prompt[..., :primed])
    for level, hop in ((1, 8), (0, 4)):
        assert song.codes[level].shape == (2, 400 // hop)
        assert torch.equal(song.codes[level][:, : primed // hop],
                           expected[level].expand(2, -1))
    assert song.record["request"]["prime"] == {"source": "tensor", "samples": primed}


def test_bad_prompts_are_refused_clearly(complete_bundle, tmp_path):
    jb = jukelite.load(complete_bundle)
    with pytest.raises(ValueError, match="shorter than the song"):
        jb.continue_(torch.zeros(1, 1, 800), seconds=0.05)
    with pytest.raises(ValueError, match="shorter than one top-level token"):
        jb.continue_(torch.zeros(1, 1, 5), seconds=0.05)
    missing = tmp_path / "no_such_song.wav"
    with pytest.raises(AudioError, match="no_such_song.wav"):
        jb.continue_(missing, seconds=0.05)


def test_upsampling_keeps_the_top_codes_and_resamples_below(complete_bundle):
    jb = jukelite.load(complete_bundle)
    song = jb.generate(artist="Bo", genre="folk", seconds=0.04, n_samples=2, seed=1)
    again = jb.upsample(song.codes[1], artist="Bo", genre="folk", seed=1)
    other = jb.upsample({1: song.codes[1]}, artist="Bo", genre="folk", seed=2)
    assert torch.equal(again.codes[0], song.codes[0])  # same seed, same lower codes
    assert torch.equal(other.codes[1], song.codes[1])
    assert not torch.equal(other.codes[0], song.codes[0])
    with pytest.raises(ValueError, match="top level"):
        jb.upsample({0: song.codes[0]})


def test_upsampler_windows_see_the_matching_slice_of_upper_codes(complete_bundle, monkeypatch):
    seen = []
    original = LevelPrior.condition

    def spy(self, y=None, upper=None, lyrics=None, drop=None):
        if upper is not None:
            seen.append(upper.clone())
        return original(self, y, upper, lyrics, drop)

    monkeypatch.setattr(LevelPrior, "condition", spy)
    song = jukelite.load(complete_bundle).generate(artist="Ada", genre="rock", seconds=0.03,
                                                   seed=0)
    tokens = song.codes[0].shape[1]  # 60 level-0 codes, windows of 16 every 8, ratio 2
    starts = window_starts(tokens, 16, 8)
    assert len(seen) == len(starts)
    for start, upper in zip(starts, seen, strict=True):
        assert torch.equal(upper, song.codes[1][:, start // 2 : start // 2 + 8])


def test_an_interrupted_run_resumes_to_the_uninterrupted_codes(complete_bundle, tmp_path):
    jb = jukelite.load(complete_bundle)
    request = dict(artist="Ada", genre="rock", seconds=0.05, n_samples=3, seed=9,
                   max_batch_size=2)
    whole = jb.generate(**request)

    def stop_midway(level, done, total):
        if level == 0 and done > total // 2:
            raise KeyboardInterrupt

    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        jb.generate(**request, output_dir=out, progress=stop_midway)
    record = json.loads((out / "song.json").read_text())
    partial, _ = load_codes(out / "codes.safetensors")
    assert record["status"] == "running" and 0 < partial[0].shape[1] < whole.codes[0].shape[1]
    assert (out / "level_1" / "sample_2.wav").is_file()  # the finished top level: a preview
    resumed = jb.resume(out)
    assert torch.equal(resumed.codes[0], whole.codes[0]) and torch.equal(resumed.audio, whole.audio)
    assert json.loads((out / "song.json").read_text())["status"] == "complete"


def test_a_top_level_preview_extends_to_the_full_song(complete_bundle, tmp_path):
    jb = jukelite.load(complete_bundle)
    preview = jb.generate(artist="Bo", genre="rock", seconds=0.03, seed=2, levels="top",
                          output_dir=tmp_path / "run")
    assert set(preview.codes) == {1} and preview.audio.shape[-1] == 240
    assert not (tmp_path / "run" / "level_0").exists()
    full = jb.resume(tmp_path / "run", levels="all")
    direct = jb.generate(artist="Bo", genre="rock", seconds=0.03, seed=2)
    assert torch.equal(full.codes[0], direct.codes[0])


def test_per_level_temperature_and_settings_are_checked(complete_bundle):
    jb = jukelite.load(complete_bundle)
    song = jb.generate(artist="Ada", genre="rock", seconds=0.02, temperature={1: 0.5})
    assert song.record["request"]["temperature"] == {"0": 0.99, "1": 0.5}
    with pytest.raises(ValueError, match="level"):
        jb.generate(artist="Ada", genre="rock", seconds=0.02, temperature={5: 0.5})
    with pytest.raises(ValueError, match="temperature"):
        jb.generate(artist="Ada", genre="rock", seconds=0.02, temperature=0.0)
    with pytest.raises(ValueError, match="levels"):
        jb.generate(artist="Ada", genre="rock", seconds=0.02, levels="middle")


def test_lyrics_a_model_cannot_use_are_warned_about(complete_bundle):
    jb = jukelite.load(complete_bundle)
    with pytest.warns(LyricsWarning, match="not conditioned on lyrics"):
        jb.generate(artist="Ada", genre="rock", lyrics="la la", seconds=0.02)


def test_a_resumed_run_refuses_a_different_bundle(complete_bundle, tmp_path, make_complete_bundle):
    jb = jukelite.load(complete_bundle)
    jb.generate(artist="Ada", genre="rock", seconds=0.02, levels="top", output_dir=tmp_path / "r")
    other = jukelite.load(make_complete_bundle(tmp_path / "other", seed=1))
    with pytest.raises(BundleError, match="different bundle"):
        other.resume(tmp_path / "r")


def test_sampling_options_as_one_value_or_as_keywords(complete_bundle):
    from jukelite import SamplingOptions

    jb = jukelite.load(complete_bundle)
    options = SamplingOptions(seed=6, temperature={0: 0.5}, top_k=4, max_batch_size=1)
    by_value = jb.generate(artist="Ada", genre="rock", seconds=0.03, n_samples=2,
                           options=options)
    by_keywords = jb.generate(artist="Ada", genre="rock", seconds=0.03, n_samples=2, seed=6,
                              temperature={0: 0.5}, top_k=4, max_batch_size=1)
    assert torch.equal(by_value.codes[0], by_keywords.codes[0])
    assert by_value.record["request"] == by_keywords.record["request"]
    overridden = jb.generate(artist="Ada", genre="rock", seconds=0.03, n_samples=2,
                             options=options, seed=7)
    assert overridden.record["request"]["seed"] == 7
    assert overridden.record["request"]["top_k"] == 4  # the rest from the options
    with pytest.raises(TypeError, match="unknown sampling option.*sed.*valid: seed"):
        jb.generate(artist="Ada", genre="rock", seconds=0.03, sed=1)
    with pytest.raises(ValueError, match="nothing to align"):
        jb.upsample(by_value.codes[1], artist="Ada", genre="rock", alignment=True)
