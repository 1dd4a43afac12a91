"""Classifier-free guidance: learned null conditioning, dropped in training, mixed at sampling."""

from __future__ import annotations

import pytest
import torch

import jukelite
from jukelite.inference.options import SamplingSettings
from jukelite.inference.window import sample_window
from jukelite.prior.model import LevelPrior, PriorConfig, SongConditions

BASE = dict(level=1, bins=16, n_ctx=16, width=16, depth=4, heads=2, blocks=4, attn_order=6,
            artist_bins=3, genre_bins=3, max_bow_genre_size=1, guidance=True)
LYRICS = {
    "encoder": dict(lyrics="encoder", n_tokens=8, lyrics_width=16, lyrics_depth=1,
                    lyrics_heads=2, lyrics_blocks=2),
    "single": dict(attn_order=12, depth=16, lyrics="single", n_tokens=8, blocks=4),
}


def prior(lyrics: str = "encoder", **overrides) -> LevelPrior:
    torch.manual_seed(0)
    model = LevelPrior(PriorConfig(**{**BASE, **LYRICS[lyrics], **overrides})).eval()
    for p in model.parameters():  # nothing zero: every input must be able to matter
        p.data.add_(torch.randn_like(p) * 0.05)
    return model


def y(artist: int) -> torch.Tensor:
    return torch.tensor([[44100, 0, 100, artist, 1]] * 2)


@pytest.mark.parametrize("lyrics", ["encoder", "single"])
def test_dropped_rows_ignore_artist_genre_and_lyrics(lyrics):
    model = prior(lyrics)
    codes = torch.randint(0, 16, (2, 16))
    words = [torch.randint(1, 80, (2, 8)), torch.randint(1, 80, (2, 8))]
    drop = torch.tensor([True, False])
    with torch.no_grad():
        a = model(codes, y(1), lyrics=words[0], drop=drop).logits
        b = model(codes, y(2), lyrics=words[1], drop=drop).logits
    assert torch.equal(a[0], b[0])  # the dropped row sees neither artist nor lyrics
    assert not torch.allclose(a[1], b[1])  # the kept row sees both
    with torch.no_grad():
        both = model(codes, y(1), lyrics=words[0], drop=torch.tensor([True, True]))
    if lyrics == "single":  # no lyrics left to predict: no lyric loss
        assert "lyrics_bits_per_token" not in both.metrics


def test_only_dropped_rows_train_the_null():
    model = prior("encoder").train()
    codes, words = torch.randint(0, 16, (2, 16)), torch.randint(1, 80, (2, 8))
    for drop, learns in ((None, False), (torch.tensor([False, False]), False),
                         (torch.tensor([True, False]), True)):
        model.zero_grad()
        model(codes, y(1), lyrics=words, drop=drop).loss.backward()
        for null in (model.null_start, model.null_lyrics):
            assert (null.grad is not None and bool(null.grad.abs().sum() > 0)) == learns


def test_a_prior_without_null_conditioning_refuses_to_drop():
    model = prior(guidance=False)
    with pytest.raises(ValueError, match="trained without train.cond_dropout"):
        model(torch.zeros(2, 16, dtype=torch.long), y(1), lyrics=torch.ones(2, 8).long(),
              drop=torch.tensor([True, False]))


@pytest.mark.parametrize("lyrics", ["encoder", "single"])
def test_scale_one_is_conditional_sampling_and_zero_the_unconditioned_model(lyrics):
    model = prior(lyrics)
    song = SongConditions(44100 * 5, 1, (1,), tuple(range(1, 30)))
    cond = model.window_inputs(song, 128, 0, 2)
    null = model.window_inputs(song, 128, 0, 2, null=True)
    settings = SamplingSettings(temperature=1.0)

    def draw(inputs, **guidance):
        return sample_window(model, inputs.cond, inputs.prefix, settings,
                             torch.Generator().manual_seed(4), **guidance)

    plain, unconditioned = draw(cond), draw(null)
    uncond = (null.cond, null.prefix)
    assert torch.equal(draw(cond, guidance=1.0, uncond=uncond), plain)
    assert torch.equal(draw(cond, guidance=0.0, uncond=uncond)[:, -16:],
                       unconditioned[:, -16:])
    pushed = draw(cond, guidance=30.0, uncond=uncond)  # far enough to change the draws
    assert not torch.equal(pushed, plain)
    if lyrics == "single":  # music positions never emit lyric ids, guided or not
        assert (pushed[:, 8:] >= 80).all()


def test_guidance_from_the_api_and_its_checks(tmp_path, make_complete_bundle, monkeypatch):
    import jukelite.inference.level as level_sampling

    guided = jukelite.load(make_complete_bundle(tmp_path / "g", "encoder", guidance=True))
    song = dict(artist="Ada", genre="rock", lyrics="la la", seconds=0.05, seed=1)
    plain = guided.generate(**song)
    assert torch.equal(guided.generate(**song, guidance=1.0).codes[0], plain.codes[0])
    seen = []  # what each window was sampled with (the mixing itself is tested above)

    def spy(prior, *args, **kwargs):
        seen.append((prior.config.level, kwargs["guidance"], kwargs["uncond"] is not None))
        return sample_window(prior, *args, **kwargs)

    monkeypatch.setattr(level_sampling, "sample_window", spy)
    pushed = guided.generate(**song, guidance={1: 3.0})
    assert pushed.record["request"]["guidance"] == {"1": 3.0}
    assert {(1, 3.0, True), (0, 1.0, False)} == set(seen)
    unguided = jukelite.load(make_complete_bundle(tmp_path / "u", "encoder"))
    with pytest.raises(ValueError, match=r"prior level\(s\) \[0, 1\] were not"):
        unguided.generate(**song, guidance=2.0)
    with pytest.raises(ValueError, match="guidance must be a finite number >= 0"):
        guided.generate(**song, guidance=-1.0)
