"""Spectrogram and alignment PNGs: valid files of the expected size, written atomically."""

from __future__ import annotations

import math
import warnings

import matplotlib.image
import numpy as np
import pytest
import torch

from jukelite.inference.plots import (
    _hz_to_mel,
    _max_pool,
    _mel_db,
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
    assert_png(path, 400, 1000)


def test_silence_is_finite_and_flat():
    db, _, _ = _mel_db(np.zeros(4000, dtype=np.float32), 8000)
    assert np.isfinite(db).all()
    assert db.max() == db.min() == pytest.approx(-100.0)


@pytest.mark.parametrize("sample_rate", [8000, 22050, 44100])
def test_a_tone_peaks_at_the_band_its_tick_names(sample_rate):
    """The Hz tick positions and the filterbank agree: a 1 kHz tone lands at the 1k tick."""
    t = np.arange(sample_rate) / sample_rate
    db, _, n_mels = _mel_db(np.sin(2 * math.pi * 1000 * t).astype(np.float32), sample_rate)
    peak = int(np.argmax(db.mean(axis=1)))
    tick = _hz_to_mel(1000) / _hz_to_mel(sample_rate / 2) * (n_mels + 1) - 1
    assert abs(peak - tick) <= 1.0


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
