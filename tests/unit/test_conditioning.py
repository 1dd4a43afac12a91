"""The upsampler conditioner: Jukebox's parameter count, shapes and causal reach."""

from __future__ import annotations

import pytest
import torch

from jukelite.data.labels import TimingRange, label_vector
from jukelite.prior.conditioning import LabelConditioner, UpsamplerConditioner
from jukelite.vqvae.model import count_parameters

pytestmark = pytest.mark.usefixtures("single_thread")


def test_released_upsampler_conditioner_has_jukebox_parameter_count():
    with torch.device("meta"):
        conditioner = UpsamplerConditioner(bins=2048, out_width=1920, down_t=2, stride=2,
                                           width=1024, depth=16, dilation_cycle=8)
    assert count_parameters(conditioner) == 156_180_096


@pytest.mark.parametrize("down_t", [1, 2])
def test_stretches_upper_codes_to_the_lower_token_rate(down_t):
    torch.manual_seed(0)
    conditioner = UpsamplerConditioner(bins=16, out_width=12, down_t=down_t, stride=2, width=8,
                                       depth=2, dilation_cycle=1)
    codes = torch.randint(0, 16, (3, 5))
    out = conditioner(codes)
    assert out.shape == (3, 5 * 2**down_t, 12)
    # LayerNorm output: zero mean, unit variance over the width at every position.
    torch.testing.assert_close(out.mean(-1), torch.zeros(3, 5 * 2**down_t), atol=1e-5, rtol=0)


def test_res_scale_scales_the_residual_branch():
    torch.manual_seed(0)
    full = UpsamplerConditioner(bins=8, out_width=6, down_t=1, stride=2, width=4, depth=2)
    torch.manual_seed(0)
    scaled = UpsamplerConditioner(bins=8, out_width=6, down_t=1, stride=2, width=4, depth=2,
                                  res_scale=0.0)
    codes = torch.randint(0, 8, (2, 4))
    assert not torch.allclose(full(codes), scaled(codes))
    block = scaled.cond.model[1][0].model[0]
    assert block.res_scale == 0.0


def test_rejects_codes_without_a_batch_dimension():
    conditioner = UpsamplerConditioner(bins=8, out_width=6, down_t=1, stride=2, width=4, depth=1)
    with pytest.raises(ValueError, match=r"\[batch, tokens\]"):
        conditioner(torch.zeros(4, dtype=torch.long))


@pytest.mark.parametrize(
    ("width", "artists", "genres", "t_bins", "timing", "expected"),
    [
        (4800, 4111, 120, 128, True, 22_152_000),  # prior_5b / prior_5b_lyrics labels
        (2048, 7898, 604, 64, True, 17_805_312),  # prior_1b_lyrics labels (v3)
        (1920, 4111, 120, 128, False, 8_123_520),  # upsamplers: no timing signal
    ],
)
def test_label_conditioner_matches_jukebox_parameter_counts(
    width, artists, genres, t_bins, timing, expected
):
    timing_range = TimingRange(60.0, 600.0, 44100) if timing else None
    with torch.device("meta"):
        conditioner = LabelConditioner(width, 8192, artists, genres, 5, timing_range, t_bins)
    assert count_parameters(conditioner) == expected


def make_labels(timing: TimingRange | None = None) -> LabelConditioner:
    torch.manual_seed(0)
    return LabelConditioner(width=8, n_ctx=6, artist_bins=3, genre_bins=4, max_bow_genre_size=2,
                            timing=timing, t_bins=10)


def test_start_token_is_artist_plus_bag_of_genre_words():
    labels = make_labels()
    y = torch.stack([label_vector(1000, 0, 100, 2, [1, 3]), label_vector(1000, 0, 100, 1, [2, -1])])
    start, timing = labels(y)
    assert timing is None and start.shape == (2, 1, 8)
    a, g = labels.artist_emb.weight, labels.bow_genre_emb.weight
    torch.testing.assert_close(start[0, 0], a[2] + g[1] + g[3])
    torch.testing.assert_close(start[1, 0], a[1] + g[2])  # the padded slot adds nothing


def test_timing_signal_sums_three_range_embeddings():
    timing = TimingRange(min_duration=1.0, max_duration=10.0, sample_rate=100)
    labels = make_labels(timing)
    y = label_vector(total_length=500, offset=200, sample_length=60, artist_id=0, genre_ids=[0, -1])
    _, signal = labels(y[None])
    assert signal.shape == (1, 6, 8)
    total_bin = int(10 * (500 - 100) / (1000 - 100))
    abs_bins = [int(10 * (200 + 60 * i / 6) / 1000) for i in range(6)]
    rel_bins = [int(10 * (0.4 + 0.12 * i / 6)) for i in range(6)]
    expected = (labels.total_length_emb.emb.weight[total_bin]
                + labels.absolute_pos_emb.emb.weight[abs_bins]
                + labels.relative_pos_emb.emb.weight[rel_bins])
    torch.testing.assert_close(signal[0], expected)


def test_song_length_outside_the_timing_range_is_a_clear_error():
    labels = make_labels(TimingRange(min_duration=1.0, max_duration=10.0, sample_rate=100))
    y = label_vector(total_length=50, offset=0, sample_length=20, artist_id=0, genre_ids=[0])
    with pytest.raises(ValueError, match="at least 1.00 s"):
        labels.check(y[None])  # run once per request or batch, outside forward
    with pytest.raises(ValueError, match="start must be in"):
        labels(y[None])  # forward reads no value back itself; the bins still refuse it
    labels.check(label_vector(500, 0, 20, 0, [0])[None])  # 5 s is inside [1, 10)
