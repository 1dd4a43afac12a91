"""Spectrogram and alignment PNGs: valid files of the expected size, written atomically."""

from __future__ import annotations

import math
import warnings

import matplotlib.image
import numpy as np
import pytest
import torch
import torchaudio.functional as taf

from jukelite.inference.plots import (
    _fft_size,
    _hz_to_mel,
    _max_pool,
    _mel_bands,
    _mel_db,
    _spectrogram_figure,
    _word_ticks,
    save_alignment_png,
    save_spectrogram_png,
)

pytestmark = pytest.mark.usefixtures("single_thread")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def assert_png(path, height: int, width: int) -> None:
    assert path.read_bytes()[:8] == PNG_MAGIC
    assert matplotlib.image.imread(path).shape == (height, width, 4)
    leftovers = [p.name for p in path.parent.iterdir() if p.name.startswith(".")]
    assert leftovers == []  # the temporary file was renamed away


def test_spectrogram_of_stereo_tensor_and_mono_array(tmp_path):
    stereo = torch.randn(2, 8000, generator=torch.Generator().manual_seed(0)) * 0.1
    path = save_spectrogram_png(tmp_path / "a" / "stereo.png", stereo, 8000, title="sample 0")
    assert path == tmp_path / "a" / "stereo.png"
    assert_png(path, 400, 1000)
    mono = np.sin(np.linspace(0, 2000, 22050)).astype(np.float32)
    assert_png(save_spectrogram_png(tmp_path / "mono.png", mono, 22050), 400, 1000)


@pytest.mark.parametrize("samples", [0, 1, 10, 300])
def test_short_and_silent_audio_draw_without_warnings(tmp_path, samples):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        path = save_spectrogram_png(tmp_path / "s.png", torch.zeros(1, samples), 8000)
        image = _spectrogram_figure(np.zeros(samples, dtype=np.float32), 8000, "").axes[0]
    assert_png(path, 400, 1000)
    shown = image.images[0].get_array()
    assert shown.shape[0] == 128 and shown.shape[1] >= 1
    assert np.isfinite(shown).all() and shown.max() == shown.min()


def test_silence_is_finite_and_flat():
    db, _, _ = _mel_db(np.zeros(4000, dtype=np.float32), 8000)
    assert np.isfinite(db).all()
    assert db.max() == db.min() == pytest.approx(-100.0)


def test_range_is_clipped_to_80_db_below_the_peak():
    t = np.arange(8000) / 8000
    db, _, _ = _mel_db(np.sin(2 * math.pi * 440 * t).astype(np.float32), 8000)
    assert db.max() > 0 and db.min() == pytest.approx(db.max() - 80.0)


@pytest.mark.parametrize("sample_rate", [8000, 22050, 44100])
@pytest.mark.parametrize(("hz", "label"), [(250, "250"), (1000, "1k"), (2000, "2k")])
def test_a_tone_is_drawn_at_the_tick_naming_its_frequency(sample_rate, hz, label):
    """Read off the figure: the brightest row of the image sits on the tick labelled `hz`."""
    t = np.arange(sample_rate) / sample_rate
    tone = np.sin(2 * math.pi * hz * t).astype(np.float32)
    axes = _spectrogram_figure(tone, sample_rate, "tone").axes[0]
    image = axes.images[0]
    rows = image.get_array().mean(axis=1)
    bottom, top = image.get_extent()[2:]
    band = (top - bottom) / len(rows)
    peak_y = bottom + (int(np.argmax(rows)) + 0.5) * band
    ticks = {tick.get_text(): y for tick, y in zip(axes.get_yticklabels(), axes.get_yticks(),
                                                    strict=True)}
    assert abs(peak_y - ticks[label]) <= band
    assert min(ticks, key=lambda name: abs(ticks[name] - peak_y)) == label
    assert axes.get_title() == "tone" and axes.get_xlabel() == "Time (s)"


@pytest.mark.parametrize(("sample_rate", "bands"), [
    (8000, 128), (22050, 128), (44100, 128), (96000, 128), (192000, 114), (400000, 61),
])
def test_band_count_leaves_no_empty_filter(sample_rate, bands):
    n_fft = _fft_size(sample_rate)
    assert _mel_bands(sample_rate, n_fft) == bands

    def empty_filters(n_mels: int) -> int:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torchaudio warns about all-zero filters
            bank = taf.melscale_fbanks(n_fft // 2 + 1, 0.0, sample_rate / 2, n_mels, sample_rate,
                                       norm="slaney", mel_scale="slaney")
        return int((bank.amax(dim=0) == 0).sum())

    assert empty_filters(bands) == 0
    if sample_rate == 400000:  # where 128 bands would leave one empty
        assert empty_filters(128) == 1


def test_bad_audio_is_refused_and_leaves_no_file(tmp_path):
    with pytest.raises(ValueError, match="channels, samples"):
        save_spectrogram_png(tmp_path / "bad.png", np.zeros((1, 2, 3)), 8000)
    with pytest.raises(ValueError, match="sample_rate"):
        save_spectrogram_png(tmp_path / "bad.png", np.zeros(100), 0)
    assert list(tmp_path.iterdir()) == []


def test_alignment_png(tmp_path):
    characters = "one two three four"
    matrix = np.random.default_rng(0).random((50, len(characters)))
    path = save_alignment_png(tmp_path / "align.png", matrix, 0.02, characters, title="x")
    assert_png(path, 600, 1000)
    empty = save_alignment_png(tmp_path / "empty.png", np.zeros((50, 0)), 0.02, "")
    assert_png(empty, 600, 1000)


def test_alignment_png_checks_its_inputs(tmp_path):
    with pytest.raises(ValueError, match="3 characters"):
        save_alignment_png(tmp_path / "a.png", np.zeros((4, 5)), 0.1, "abc")
    with pytest.raises(ValueError, match="tokens, chars"):
        save_alignment_png(tmp_path / "a.png", np.zeros(5), 0.1, "abcde")
    assert list(tmp_path.iterdir()) == []


def test_long_axes_are_max_pooled_keeping_peaks():
    matrix = np.zeros((5000, 3))
    matrix[4321, 1] = 1.0
    pooled = _max_pool(matrix, 0, 2048)
    assert pooled.shape == (1667, 3)  # groups of ceil(5000 / 2048) = 3
    assert pooled[4321 // 3, 1] == 1.0 and pooled.sum() == 1.0
    assert _max_pool(matrix, 1, 2048) is matrix


def test_word_ticks_label_word_starts_and_thin_out():
    assert _word_ticks(" hi  there\nyou") == ([1, 5, 11], ["hi", "there", "you"])
    positions, labels = _word_ticks(" ".join(f"w{i}" for i in range(100)))
    assert len(labels) == 34 and labels[:2] == ["w0", "w3"] and positions[1] == 9


def test_the_mel_scale_and_decibels_are_librosas():
    """Written out to keep librosa's import off the sampling path; checked against it here."""
    import librosa

    hz = np.array([0.0, 50.0, 999.0, 1000.0, 1001.0, 4000.0, 22050.0])
    np.testing.assert_allclose(_hz_to_mel(hz), librosa.hz_to_mel(hz), rtol=1e-9, atol=1e-9)
    noise = np.random.default_rng(0).standard_normal(8000).astype(np.float32) * 0.1
    db, hop, n_mels = _mel_db(noise, 8000)
    spec = torch.stft(torch.from_numpy(noise), 512, hop, window=torch.hann_window(512),
                      return_complex=True).abs().square()
    bank = taf.melscale_fbanks(257, 0.0, 4000.0, n_mels, 8000, norm="slaney", mel_scale="slaney")
    expected = librosa.power_to_db((bank.T @ spec).numpy(), amin=1e-10, top_db=80.0)
    np.testing.assert_allclose(db, expected, atol=1e-4)
