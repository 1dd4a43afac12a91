"""Logits filters and cached window sampling: seeded, prefix-preserving, equal to naive sampling."""

from __future__ import annotations

import math
import shutil

import pytest
import torch

from jukelite.data.labels import label_vector
from jukelite.sampling import (
    SamplingSettings,
    batch_chunks,
    filter_logits,
    sample_from_logits,
    sample_level,
    sample_window,
    window_starts,
)

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


@pytest.mark.parametrize(("total", "expected"), [
    (10, [0, 2, 4, 6]), (9, [0, 2, 4, 5]), (4, [0]), (3, [0]),
])
def test_window_starts_follow_jukebox(total, expected):
    assert window_starts(total, n_ctx=4, hop=2) == expected


def windowed(kind: str):
    """A tiny prior and a condition_for(start) giving each window its own labels."""
    prior, _, inputs = build(kind)

    def condition_for(start: int, rows: slice):
        y = torch.stack([label_vector(400, start, 16, 1, [2, 3]),
                         label_vector(900, start, 16, 2, [1, -1])])
        window_inputs = {**inputs, "y": y} if "y" in inputs else inputs
        window_inputs = {key: value[rows] for key, value in window_inputs.items()}
        lyrics = window_inputs.get("lyrics") if kind == "single" else None
        return prior.condition(**window_inputs), lyrics

    return prior, condition_for


@pytest.mark.parametrize("kind", ["top", "single"])
def test_windows_past_n_ctx_keep_earlier_codes_and_resume_exactly(kind):
    prior, condition_for = windowed(kind)
    snapshots = []
    start = torch.zeros(2, 0, dtype=torch.long)
    codes = sample_level(prior, 40, condition_for, seed=3, codes=start,
                         on_window=lambda index, c: snapshots.append(c.clone()))
    assert codes.shape == (2, 40)
    assert ((0 <= codes) & (codes < prior.config.bins)).all()
    assert len(snapshots) == len(window_starts(40, 16, 8))
    for snapshot in snapshots:  # each window only appends: earlier codes never change
        assert torch.equal(codes[:, : snapshot.shape[1]], snapshot)
    resumed = sample_level(prior, 40, condition_for, seed=3, codes=snapshots[1])
    assert torch.equal(resumed, codes)
    other = sample_level(prior, 40, condition_for, seed=4, codes=start)
    assert not torch.equal(other, codes)


def test_a_song_shorter_than_a_window_is_one_short_window():
    prior, condition_for = windowed("top")
    empty = torch.zeros(2, 0, dtype=torch.long)
    codes = sample_level(prior, 10, condition_for, seed=0, codes=empty)
    assert codes.shape == (2, 10)


def test_a_prompt_is_kept():
    prior, condition_for = windowed("top")
    prompt = torch.randint(0, prior.config.bins, (2, 12),
                           generator=torch.Generator().manual_seed(0))
    codes = sample_level(prior, 30, condition_for, seed=0, codes=prompt)
    assert torch.equal(codes[:, :12], prompt) and codes.shape == (2, 30)


def test_batch_chunks_cover_every_sample_once():
    assert batch_chunks(5, 2) == [slice(0, 2), slice(2, 4), slice(4, 5)]
    assert batch_chunks(3, None) == [slice(0, 3)]
    with pytest.raises(ValueError, match="max_batch_size"):
        batch_chunks(3, 0)


def test_chunked_batches_give_the_codes_and_progress_of_their_own_seeds():
    prior, condition_for = windowed("top")
    empty = torch.zeros(2, 0, dtype=torch.long)
    counted = []
    chunked = sample_level(prior, 30, condition_for, seed=2, codes=empty, max_batch_size=1,
                           on_tokens=counted.append)
    assert chunked.shape == (2, 30) and set(counted) == {1} and sum(counted) == 2 * 30
    again = sample_level(prior, 30, condition_for, seed=2, codes=empty, max_batch_size=1)
    assert torch.equal(chunked, again)
    assert not torch.equal(chunked[0], chunked[1])  # each chunk draws from its own stream


@pytest.mark.parametrize("kind", ["top", "upsampler", "encoder", "single"])
def test_static_steps_sample_what_cached_steps_sample(kind):
    prior, codes, inputs = build(kind)
    cond = prior.condition(**inputs)
    prefix = prior.sequence(codes, inputs.get("lyrics"))[:, : prior.config.seq_len // 2 + 3]

    def draw(step: str) -> torch.Tensor:
        generator = torch.Generator().manual_seed(5)
        return sample_window(prior, cond, prefix, generator=generator, step=step)

    assert torch.equal(draw("static"), draw("cached"))


@pytest.mark.skipif(shutil.which("c++") is None and shutil.which("g++") is None,
                    reason="torch.compile on the CPU needs a C++ compiler")
def test_a_compiled_step_samples_what_cached_steps_sample():
    prior, codes, inputs = build("top")
    cond = prior.condition(**inputs)

    def draw(step: str) -> torch.Tensor:
        generator = torch.Generator().manual_seed(6)
        return sample_window(prior, cond, codes[:, :5], generator=generator, step=step)

    assert torch.equal(draw("compiled"), draw("cached"))
    with pytest.raises(ValueError, match="step"):
        draw("fast")
