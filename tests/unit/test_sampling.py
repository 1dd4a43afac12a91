"""Logits filters and cached window sampling: seeded, prefix-preserving, equal to naive sampling."""

from __future__ import annotations

import math

import pytest
import torch

from jukelite.sampling import SamplingSettings, filter_logits, sample_from_logits, sample_window

from .test_prior_model import build

pytestmark = pytest.mark.usefixtures("single_thread")


def probs_logits(*probs: float) -> torch.Tensor:
    return torch.tensor([[math.log(p) for p in probs]])


def test_top_k_keeps_exactly_the_k_largest():
    kept = filter_logits(probs_logits(0.1, 0.4, 0.2, 0.3), top_k=2)
    assert torch.isfinite(kept).tolist() == [[False, True, False, True]]


@pytest.mark.parametrize(("top_p", "expected"), [
    (0.5, [True, False, False, False]),   # the first token alone reaches 0.5
    (0.7, [True, True, False, False]),    # 0.5 + 0.3 reaches 0.7
    (0.95, [True, True, True, False]),
])
def test_top_p_keeps_the_smallest_set_reaching_p(top_p, expected):
    kept = filter_logits(probs_logits(0.5, 0.3, 0.15, 0.05), top_p=top_p)
    assert torch.isfinite(kept).tolist() == [expected]


def test_sampling_is_seeded_and_respects_the_filters():
    logits = torch.randn(64, 50, generator=torch.Generator().manual_seed(0))
    settings = SamplingSettings(temperature=1.0, top_k=3)
    first = sample_from_logits(logits, settings, torch.Generator().manual_seed(7))
    again = sample_from_logits(logits, settings, torch.Generator().manual_seed(7))
    assert torch.equal(first, again)
    allowed = logits.topk(3, dim=-1).indices
    assert (allowed == first[:, None]).any(-1).all()


@pytest.mark.parametrize("bad", [dict(temperature=0.0), dict(top_k=-1), dict(top_p=1.5)])
def test_bad_settings_are_refused(bad):
    with pytest.raises(ValueError):
        SamplingSettings(**bad)


@pytest.mark.parametrize("kind", ["top", "upsampler", "encoder", "single"])
def test_cached_window_sampling_equals_naive_sampling(kind):
    prior, codes, inputs = build(kind)
    cond = prior.condition(**inputs)
    sequence = prior.sequence(codes, inputs.get("lyrics"))
    known = prior.config.n_tokens + 3  # the lyric prefix (if any) and three codes
    settings = SamplingSettings(temperature=1.0)
    cached = sample_window(prior, cond, sequence[:, :known], settings,
                           torch.Generator().manual_seed(5))
    assert torch.equal(cached[:, :known], sequence[:, :known])

    naive = sequence.clone()
    generator = torch.Generator().manual_seed(5)
    music_from = prior.config.n_vocab if prior.config.lyrics == "single" else 0
    with torch.no_grad():
        for position in range(known, naive.shape[1]):
            logits = prior.logits(naive, cond)[:, position].clone()
            logits[:, :music_from] = float("-inf")
            naive[:, position] = sample_from_logits(logits, settings, generator)
    assert torch.equal(cached, naive)
    if music_from:
        assert (cached[:, known:] >= music_from).all()


def test_same_seed_same_codes_other_seed_other_codes():
    prior, codes, inputs = build("top")
    cond = prior.condition(**inputs)

    def draw(seed: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(seed)
        return sample_window(prior, cond, codes[:, :0], generator=generator)

    assert torch.equal(draw(1), draw(1))
    assert not torch.equal(draw(1), draw(2))
