"""Logits filters, cached window sampling and level sampling: seeded, prefix-preserving, equal
to naive sampling, conditioned per window by the prior itself."""

from __future__ import annotations

import math
import shutil

import pytest
import torch

from jukelite.data.labels import label_vector
from jukelite.data.lyrics import lyric_window
from jukelite.inference.level import LevelJob, sample_level
from jukelite.inference.options import SamplingSettings
from jukelite.inference.schedule import WindowSchedule, batch_chunks, window_starts
from jukelite.inference.window import filter_logits, sample_from_logits, sample_window
from jukelite.prior.model import SongConditions

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


HOP = 25  # audio samples per code of the tiny priors (timing range 2-20 s at 100 Hz)
SONG_LYRICS = tuple(torch.randint(1, 9, (30,), generator=torch.Generator().manual_seed(8)).tolist())


def level_job(kind: str, total: int, seed: int, max_batch_size: int | None = None) -> LevelJob:
    """A tiny prior sampling `total` codes of one song, windows overlapping by half."""
    prior, _, _ = build(kind)
    song = SongConditions(total * HOP, artist_id=1, genre_ids=(2, 3), lyric_tokens=SONG_LYRICS)
    schedule = WindowSchedule(total, prior.config.n_ctx, hop_fraction=0.5)
    return LevelJob(prior, song, HOP, schedule, SamplingSettings(), seed,
                    max_batch_size=max_batch_size)


def sample_all(job: LevelJob, codes: torch.Tensor, on_tokens=None) -> list[torch.Tensor]:
    return list(sample_level(job, codes, on_tokens))


EMPTY = torch.zeros(2, 0, dtype=torch.long)


@pytest.mark.parametrize("kind", ["top", "single"])
def test_windows_past_n_ctx_keep_earlier_codes_and_resume_exactly(kind):
    job = level_job(kind, 40, seed=3)
    snapshots = sample_all(job, EMPTY)
    codes = snapshots[-1]
    assert codes.shape == (2, 40)
    assert ((0 <= codes) & (codes < job.prior.config.bins)).all()
    assert len(snapshots) == len(window_starts(40, 16, 8))
    for snapshot in snapshots:  # each window only appends: earlier codes never change
        assert torch.equal(codes[:, : snapshot.shape[1]], snapshot)
    assert torch.equal(sample_all(job, snapshots[1])[-1], codes)  # resumed
    other = sample_all(level_job(kind, 40, seed=4), EMPTY)[-1]
    assert not torch.equal(other, codes)


def test_a_song_shorter_than_a_window_is_one_short_window():
    snapshots = sample_all(level_job("top", 10, seed=0), EMPTY)
    assert len(snapshots) == 1 and snapshots[0].shape == (2, 10)


def test_a_prompt_is_kept_and_a_complete_level_samples_nothing():
    job = level_job("top", 30, seed=0)
    prompt = torch.randint(0, job.prior.config.bins, (2, 12),
                           generator=torch.Generator().manual_seed(0))
    codes = sample_all(job, prompt)[-1]
    assert torch.equal(codes[:, :12], prompt) and codes.shape == (2, 30)
    assert sample_all(job, codes) == []


def test_batch_chunks_cover_every_sample_once():
    assert batch_chunks(5, 2) == [slice(0, 2), slice(2, 4), slice(4, 5)]
    assert batch_chunks(3, None) == [slice(0, 3)]
    with pytest.raises(ValueError, match="max_batch_size"):
        batch_chunks(3, 0)


def test_chunked_batches_give_the_codes_and_progress_of_their_own_seeds():
    job = level_job("top", 30, seed=2, max_batch_size=1)
    counted = []
    chunked = sample_all(job, EMPTY, counted.append)[-1]
    assert chunked.shape == (2, 30) and set(counted) == {1} and sum(counted) == 2 * 30
    assert torch.equal(chunked, sample_all(job, EMPTY)[-1])
    assert not torch.equal(chunked[0], chunked[1])  # each chunk draws from its own stream


@pytest.mark.parametrize("kind", ["top", "upsampler", "encoder", "single"])
def test_window_inputs_condition_a_window_as_training_windows_are(kind):
    """The prior's own window conditioning equals the data pipeline's label vector, linear
    lyric window and upper-code slice for the same stretch of the song."""
    prior, _, _ = build(kind)
    config = prior.config
    song = SongConditions(64 * HOP, artist_id=2, genre_ids=(1,), lyric_tokens=SONG_LYRICS)
    upper = torch.randint(0, config.bins, (2, 16), generator=torch.Generator().manual_seed(9))
    start, length = 8, config.n_ctx * HOP
    got = prior.window_inputs(song, HOP, start, 2, upper if config.upsampler else None)
    y = label_vector(song.total_samples, start * HOP, length, 2, [1])[None].expand(2, -1)
    lyrics = upper_window = None
    if config.lyrics != "none":
        window = lyric_window(list(SONG_LYRICS), song.total_samples, start * HOP, length,
                              config.n_tokens)
        lyrics = torch.tensor([window.tokens] * 2)
        assert torch.equal(got.lyrics, lyrics) and got.lyric_start == window.start
    if config.upsampler:
        ratio = prior.upsample_ratio
        upper_window = upper[:, start // ratio : (start + config.n_ctx) // ratio]
    expected = prior.condition(y, upper_window, lyrics)
    for name in ("start", "x_cond", "encoder_kv"):
        a, b = getattr(got.cond, name), getattr(expected, name)
        assert (a is None and b is None) or torch.equal(a, b), name
    assert got.prefix.shape == ((2, config.n_tokens) if config.lyrics == "single" else (2, 0))


def test_an_upsampler_window_needs_the_upper_codes():
    prior, _, _ = build("upsampler")
    with pytest.raises(ValueError, match="upper codes"):
        prior.window_inputs(SongConditions(640), HOP, 0, 2)


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
