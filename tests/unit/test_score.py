"""Scoring codes under a level's prior: equal to the full pass's log-softmax window by window,
to the KV-cached sampling step, conditioned like sampling, and strict about its inputs."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import jukelite
from jukelite.bundle import Bundle, BundleError
from jukelite.data.labels import UnknownLabelError, label_vector
from jukelite.data.lyrics import LyricsTokenizer, lyric_window
from jukelite.inference.request import LyricsWarning, song_conditions
from jukelite.inference.schedule import HOP_FRACTION_TOP, HOP_FRACTION_UPSAMPLER, window_starts
from jukelite.inference.score import score_codes, score_timing
from jukelite.prior.model import SongConditions

from .test_prior_model import build

pytestmark = pytest.mark.usefixtures("single_thread")

HOP = 25  # audio samples per code of the tiny priors (timing range 2-20 s at 100 Hz)
LYRICS = tuple(torch.randint(1, 9, (30,), generator=torch.Generator().manual_seed(8)).tolist())
KINDS = ["top", "upsampler", "encoder", "single"]


def random_codes(n: int, t: int, bins: int, seed: int) -> torch.Tensor:
    return torch.randint(0, bins, (n, t), generator=torch.Generator().manual_seed(seed))


def setup(kind: str, tokens: int, offset_codes: int = 0, artist: int = 1, seed: int = 0):
    """A tiny prior, a song of `offset_codes + tokens` codes, its codes and upper codes."""
    prior, _, _ = build(kind)
    bins = prior.config.bins
    song = SongConditions((offset_codes + tokens) * HOP, artist_id=artist, genre_ids=(2, 3),
                          lyric_tokens=LYRICS)
    codes = random_codes(2, tokens, bins, seed)
    upper = None
    if prior.config.upsampler:
        upper = random_codes(2, tokens // prior.upsample_ratio, bins, seed + 100)
    return prior, song, codes, upper


@torch.no_grad()
def by_hand(prior, song, codes, upper, starts, first: int = 0) -> torch.Tensor:
    """Each code's log-probability from `prior.forward` over the windows starting at `starts`
    (indices into `codes`, which begin at song code `first`), taken from the first window
    in which the code is new rather than prefix."""
    c, (n, t) = prior.config, codes.shape
    out, done = torch.full((n, t), float("nan")), 0
    for s in starts:
        end = min(s + c.n_ctx, t)
        window = F.pad(codes[:, s:end], (0, c.n_ctx - (end - s)), value=3)  # any padding
        offset, length = (first + s) * HOP, c.n_ctx * HOP
        y = label_vector(song.total_samples, offset, length, song.artist_id,
                         list(song.genre_ids))[None].expand(n, -1)
        lyrics = up = None
        if c.lyrics != "none":
            chars = lyric_window(list(song.lyric_tokens), song.total_samples, offset, length,
                                 c.n_tokens).tokens
            lyrics = torch.tensor([chars] * n)
        if c.upsampler:
            r = prior.upsample_ratio
            up = upper[:, s // r : (s + c.n_ctx) // r]
            up = F.pad(up, (0, c.n_ctx // r - up.shape[1]))
        logp = prior(window, y, up, lyrics).logits[:, -c.n_ctx :].log_softmax(-1)
        target = prior.sequence(window, lyrics)[:, -c.n_ctx :]
        picked = logp.gather(-1, target[..., None])[..., 0]
        out[:, done:end] = picked[:, done - s : end - s]
        done = end
    return out


@pytest.mark.parametrize("kind", KINDS)
def test_one_window_is_the_log_softmax_of_the_full_pass(kind):
    prior, song, codes, upper = setup(kind, tokens=16)
    got = score_codes(prior, song, codes, HOP, HOP_FRACTION_TOP, upper=upper)
    assert got.dtype == torch.float32 and got.device.type == "cpu" and got.shape == (2, 16)
    torch.testing.assert_close(got, by_hand(prior, song, codes, upper, [0]), atol=1e-6, rtol=0)
    assert (got < 0).all()


@pytest.mark.parametrize("kind", KINDS)
def test_a_short_song_is_one_padded_window_returning_only_its_codes(kind):
    prior, song, codes, upper = setup(kind, tokens=8)
    got = score_codes(prior, song, codes, HOP, HOP_FRACTION_UPSAMPLER, upper=upper)
    assert got.shape == (2, 8)
    torch.testing.assert_close(got, by_hand(prior, song, codes, upper, [0]), atol=1e-6, rtol=0)


@pytest.mark.parametrize("step", ["cached", "static"])
@pytest.mark.parametrize("kind", KINDS)
def test_the_kv_cached_sampling_step_gives_the_same_log_probs(kind, step):
    prior, song, codes, upper = setup(kind, tokens=16)
    c = prior.config
    inputs = prior.window_inputs(song, HOP, 0, 2, upper)
    tokens = prior.sequence(codes, inputs.lyrics)
    lyric = c.seq_len - c.n_ctx
    caches, rows = prior.init_caches(2), []
    if lyric:  # the lyric prefix in one chunk, as sampling feeds it
        prior.logits_cached(tokens, 0, lyric, caches, inputs.cond)
    for position in range(lyric, c.seq_len):
        if step == "cached":
            logits = prior.logits_cached(tokens, position, 1, caches, inputs.cond)[:, -1]
        else:
            logits = prior.logits_step(tokens[:, max(position - 1, 0)],
                                       torch.tensor(position), caches, inputs.cond)
        rows.append(logits.float().log_softmax(-1).gather(-1, tokens[:, position, None]))
    cached = torch.cat(rows, dim=1)
    scored = score_codes(prior, song, codes, HOP, HOP_FRACTION_TOP, upper=upper)
    torch.testing.assert_close(scored, cached, atol=1e-5, rtol=0)


@pytest.mark.parametrize(("kind", "fraction", "first"), [
    ("top", HOP_FRACTION_TOP, 0), ("top", HOP_FRACTION_UPSAMPLER, 6),
    ("upsampler", HOP_FRACTION_UPSAMPLER, 8), ("encoder", HOP_FRACTION_TOP, 3),
    ("single", HOP_FRACTION_UPSAMPLER, 0),
])
def test_a_long_song_scores_each_code_in_the_first_window_where_it_is_new(kind, fraction, first):
    prior, song, codes, upper = setup(kind, tokens=40, offset_codes=first)
    starts = window_starts(40, 16, int(16 * fraction))
    assert len(starts) > 2 and starts[-1] == 40 - 16
    got = score_codes(prior, song, codes, HOP, fraction, offset=first * HOP, upper=upper)
    expected = by_hand(prior, song, codes, upper, starts, first)
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)
    # the prefix matters: the last 8 codes scored on their own, without it, score otherwise
    alone = score_codes(prior, song, codes[:, 32:], HOP, fraction, offset=(first + 32) * HOP,
                        upper=None if upper is None else upper[:, 8:])
    assert (alone - got[:, 32:]).abs().max() > 1e-4
    chunked = score_codes(prior, song, codes, HOP, fraction, offset=first * HOP, upper=upper,
                          max_batch_size=1)
    torch.testing.assert_close(chunked, got, atol=1e-6, rtol=0)


def test_scores_follow_the_artist_the_offset_the_lyrics_and_the_upper_codes():
    prior, song, codes, _ = setup("top", tokens=16, offset_codes=8)
    base = score_codes(prior, song, codes, HOP, HOP_FRACTION_TOP)
    other_artist = SongConditions(song.total_samples, 2, song.genre_ids, LYRICS)
    changed = score_codes(prior, other_artist, codes, HOP, HOP_FRACTION_TOP)
    assert (changed - base).abs().max() > 1e-3
    later = score_codes(prior, song, codes, HOP, HOP_FRACTION_TOP, offset=8 * HOP)
    assert (later - base).abs().max() > 1e-4  # the timing signal moved

    prior, song, codes, _ = setup("encoder", tokens=16)
    other_lyrics = SongConditions(song.total_samples, 1, (2, 3), tuple(reversed(LYRICS)))
    base = score_codes(prior, song, codes, HOP, HOP_FRACTION_TOP)
    changed = score_codes(prior, other_lyrics, codes, HOP, HOP_FRACTION_TOP)
    assert (changed - base).abs().max() > 1e-4

    prior, song, codes, upper = setup("upsampler", tokens=16)
    base = score_codes(prior, song, codes, HOP, HOP_FRACTION_UPSAMPLER, upper=upper)
    moved = score_codes(prior, song, codes, HOP, HOP_FRACTION_UPSAMPLER, upper=upper.roll(1, 1))
    assert (moved - base).abs().max() > 1e-3


# ---------------------------------------------------------------------- through the API
@pytest.fixture
def jb(tmp_path, make_complete_bundle) -> jukelite.Jukebox:
    """Two levels at 8 kHz (hops 4 and 8), top n_ctx 16 with timing 0.01-10 s, a x2 upsampler;
    artists Ada and Bo, genres rock and folk."""
    return jukelite.load(make_complete_bundle(tmp_path / "bundle", lyrics="encoder"))


def test_the_api_maps_names_like_sampling_and_scores_with_the_level_prior(jb):
    bundle = Bundle.open(jb.bundle)
    top = random_codes(2, 40, 16, 1)
    got = jb.score(top, 1, artist="Ada", genre=["rock", "folk"], lyrics="hey ho")
    song = song_conditions(bundle, 1, "Ada", ["rock", "folk"], "hey ho", 40 * 8)
    # artists: unknown, ada, bo; genre words: unknown, folk, rock; v2 characters from id 1
    assert song == SongConditions(320, 1, (2, 1), tuple(LyricsTokenizer().encode("hey ho")))
    assert song.lyric_tokens[:3] == (34, 31, 51)  # h, e, y
    expected = score_codes(bundle.prior(1), song, top, 8, HOP_FRACTION_TOP)
    torch.testing.assert_close(got, expected, atol=0, rtol=0)
    assert not torch.allclose(jb.score(top, 1, artist="Bo", genre=["rock", "folk"],
                                       lyrics="hey ho"), got, atol=1e-4)

    bottom = random_codes(2, 80, 16, 2)
    got = jb.score(bottom, 0, artist="Bo", genre="folk", upper_codes=top, max_batch_size=1)
    song = song_conditions(bundle, 0, "Bo", ["folk"], "", 80 * 4)
    expected = score_codes(bundle.prior(0), song, bottom, 4, HOP_FRACTION_UPSAMPLER, upper=top)
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)  # chunks: other summation order
    other = jb.score(bottom, 0, artist="Bo", genre="folk", upper_codes=top.flip(1))
    assert not torch.allclose(other, got, atol=1e-4)


def test_timing_in_samples_or_seconds_gives_the_same_scores(jb):
    codes = random_codes(1, 20, 16, 3)
    in_samples = jb.score(codes, 1, "Ada", "rock", total_length=800, offset=80)
    in_seconds = jb.score(codes, 1, "Ada", "rock", total_length_seconds=0.1, offset_seconds=0.01)
    torch.testing.assert_close(in_seconds, in_samples, atol=0, rtol=0)
    default = jb.score(codes, 1, "Ada", "rock", offset=80)  # the song ends with the codes
    explicit = jb.score(codes, 1, "Ada", "rock", total_length=240, offset=80)
    torch.testing.assert_close(default, explicit, atol=0, rtol=0)
    assert not torch.allclose(default, in_samples, atol=1e-5)  # total length is a condition
    bundle = Bundle.open(jb.bundle)
    assert score_timing(bundle, 1, 20, offset_seconds=0.0106) == (88 + 160, 88)  # whole codes
    assert score_timing(bundle, 0, 20, offset_seconds=0.0106) == (88 + 80, 88)  # of level 1


@pytest.mark.parametrize(("call", "error", "match"), [
    (dict(level=5), ValueError, r"level must be one of \[0, 1\]"),
    (dict(codes=torch.full((1, 20), 16)), ValueError, r"\[0, 16\).*\[16, 16\]"),
    (dict(codes=torch.full((1, 20), -1)), ValueError, r"must lie in \[0, 16\)"),
    (dict(codes=torch.zeros(1, 20)), ValueError, "integer codes"),
    (dict(codes=torch.zeros(20, dtype=torch.long)), ValueError, r"\[n, tokens\]"),
    (dict(total_length=800, total_length_seconds=0.1), ValueError, "not both"),
    (dict(offset=80, offset_seconds=0.01), ValueError, "not both"),
    (dict(offset=1.5), ValueError, "integer number of audio samples"),
    (dict(offset=4), ValueError, "multiple >= 0 of level 1's hop length 8"),
    (dict(total_length=100), ValueError, "total_length must reach past"),
    (dict(total_length_seconds=12.0), ValueError, "timing range"),
    (dict(upper_codes=torch.zeros(1, 10, dtype=torch.long)), ValueError, "not an upsampler"),
    (dict(level=0), ValueError, "is an upsampler: pass upper_codes"),
    (dict(level=0, upper_codes=torch.zeros(1, 9, dtype=torch.long)), ValueError,
     r"upper_codes must be \[1, 10\]"),
    (dict(level=0, codes=torch.zeros(1, 21, dtype=torch.long),
          upper_codes=torch.zeros(1, 10, dtype=torch.long)), ValueError, "multiple of 2"),
    (dict(artist="Adda"), UnknownLabelError, "did you mean 'ada'"),
    (dict(genre=[]), ValueError, "at least one genre"),
    (dict(max_batch_size=0), ValueError, "max_batch_size must be >= 1"),
])
def test_bad_input_is_refused_clearly(jb, call, error, match):
    kwargs = dict(codes=torch.zeros(1, 20, dtype=torch.long), level=1, artist="Ada",
                  genre="rock")
    kwargs.update(call)
    with pytest.raises(error, match=match):
        jb.score(**kwargs)


def test_lyrics_a_level_does_not_read_are_flagged(jb):
    with pytest.warns(LyricsWarning, match="not conditioned on lyrics"):
        jb.score(torch.zeros(1, 20, dtype=torch.long), 0, "Ada", "rock", "la la",
                 upper_codes=torch.zeros(1, 10, dtype=torch.long))


def test_a_bundle_without_the_level_prior_cannot_score(tmp_path: Path, make_bundle):
    from jukelite.inference.score import score_song

    bundle = Bundle.open(make_bundle(tmp_path / "vqvae_only"))
    with pytest.raises(BundleError, match="no prior for level 1"):
        score_song(bundle, 1, torch.zeros(1, 4, dtype=torch.long))


def test_bits_per_token_of_a_prior_that_knows_nothing_is_log2_bins(jb):
    """Zero output weights make every code equally likely: exactly log2(bins) bits each."""
    bundle = Bundle.open(jb.bundle)
    prior = bundle.prior(1)
    prior.x_out.weight = torch.nn.Parameter(torch.zeros_like(prior.x_out.weight))
    song = song_conditions(bundle, 1, "Ada", ["rock"], "", 320)
    scores = score_codes(prior, song, random_codes(3, 40, 16, 4), 8, HOP_FRACTION_TOP)
    bits = -scores.mean() / math.log(2)
    assert abs(float(bits) - 4.0) < 1e-6
