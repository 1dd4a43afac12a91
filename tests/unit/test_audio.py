"""Tests for jukelite.audio: I/O round trips, resampling, channel handling and every error."""

import math

import numpy as np
import pytest
import soundfile as sf
import torch

from jukelite.audio import (
    AUDIO_EXTENSIONS,
    AudioError,
    AudioInfo,
    audio_info,
    convert_channels,
    load_audio,
    resample,
    save_audio,
)


def sine(freq: float, sr: int, seconds: float, amp: float = 0.5) -> torch.Tensor:
    t = torch.arange(int(sr * seconds), dtype=torch.float64) / sr
    return (amp * torch.sin(2 * math.pi * freq * t)).float()


def peak_hz(x: torch.Tensor, sr: int) -> float:
    spec = torch.fft.rfft(x.double()).abs()
    return float(spec.argmax()) * sr / x.shape[-1]


@pytest.mark.parametrize("suffix", [".wav", ".flac"])
def test_round_trip_values(tmp_path, suffix):
    sr = 16000
    audio = torch.stack([sine(440, sr, 0.5), sine(660, sr, 0.5, amp=0.3)])
    path = tmp_path / f"a{suffix}"
    save_audio(path, audio, sr)
    info = audio_info(path)
    assert info == AudioInfo(path=path, sample_rate=sr, channels=2, frames=8000)
    assert info.duration == pytest.approx(0.5)
    back = load_audio(path)
    assert back.dtype == torch.float32 and back.shape == (2, 8000)
    assert torch.allclose(back, audio, atol=1.0 / 32768 + 1e-6)


def test_save_accepts_1d_numpy_clamps_and_makes_parents(tmp_path):
    path = tmp_path / "deep" / "er" / "x.wav"
    save_audio(path, np.array([0.0, 2.0, -3.0, 0.25], dtype=np.float64), 8000)
    back = load_audio(path)
    assert back.shape == (1, 4)
    assert back[0, 1].item() == pytest.approx(1.0, abs=1e-4)
    assert back[0, 2].item() == pytest.approx(-1.0, abs=1e-4)
    assert back[0, 3].item() == pytest.approx(0.25, abs=1e-4)
    assert [p.name for p in path.parent.iterdir()] == ["x.wav"]


def test_save_rejects_nan_and_writes_nothing(tmp_path):
    audio = torch.zeros(1, 100)
    audio[0, 5] = float("nan")
    audio[0, 7] = float("inf")
    with pytest.raises(AudioError, match=r"x\.wav.*2 NaN or infinite"):
        save_audio(tmp_path / "x.wav", audio, 8000)
    assert list(tmp_path.iterdir()) == []


def test_save_rejects_unknown_suffix_and_bad_subtype(tmp_path):
    with pytest.raises(AudioError, match=r"x\.xyz.*suffix"):
        save_audio(tmp_path / "x.xyz", torch.zeros(1, 10), 8000)
    with pytest.raises(AudioError, match="subtype"):
        save_audio(tmp_path / "x.flac", torch.zeros(1, 10), 8000, subtype="FLOAT")


def test_span_read_offset_and_duration(tmp_path):
    sr = 8000
    ramp = torch.arange(sr, dtype=torch.float32)[None] / sr  # value = time in seconds
    path = tmp_path / "ramp.wav"
    save_audio(path, ramp, sr, subtype="FLOAT")
    part = load_audio(path, offset=0.25, duration=0.5)
    assert part.shape == (1, 4000)
    assert part[0, 0].item() == pytest.approx(0.25)
    assert part[0, -1].item() == pytest.approx(0.75 - 1 / sr)
    tail = load_audio(path, offset=0.9, duration=10.0)  # cut at the end of the file
    assert tail.shape == (1, 800)
    with pytest.raises(AudioError, match="past the end"):
        load_audio(path, offset=1.0)


def test_resample_ratio_and_frequency():
    x = sine(1000, 16000, 1.0)
    y = resample(x, 16000, 24000)
    assert y.shape == (24000,)
    assert peak_hz(y, 24000) == pytest.approx(1000, abs=2)
    z = resample(torch.stack([x, x]), 16000, 8000)
    assert z.shape == (2, 8000)
    assert peak_hz(z[1], 8000) == pytest.approx(1000, abs=2)
    assert resample(x, 16000, 16000) is x


def test_load_with_resample_and_channels(tmp_path):
    path = tmp_path / "m.flac"
    save_audio(path, sine(440, 22050, 1.0), 22050)
    out = load_audio(path, sample_rate=11025, channels=2)
    assert out.shape == (2, 11025)
    assert torch.equal(out[0], out[1])
    assert peak_hz(out[0], 11025) == pytest.approx(440, abs=2)


def test_load_downmix_is_mean_and_refuses_odd_conversions(tmp_path):
    left, right = torch.full((1, 50), 0.5), torch.full((1, 50), -0.25)
    path = tmp_path / "s.wav"
    save_audio(path, torch.cat([left, right]), 8000, subtype="FLOAT")
    mono = load_audio(path, channels=1)
    assert mono.shape == (1, 50)
    assert torch.allclose(mono, torch.full((1, 50), 0.125))
    assert load_audio(path, channels=2).shape == (2, 50)
    with pytest.raises(AudioError, match=r"s\.wav.*2 channels.*3"):
        load_audio(path, channels=3)
    six = tmp_path / "six.wav"
    save_audio(six, torch.zeros(6, 10), 8000)
    with pytest.raises(AudioError, match=r"six\.wav.*6 channels"):
        load_audio(six, channels=2)


def test_convert_channels_mix_and_duplicate():
    stereo = torch.tensor([[1.0, 2.0], [3.0, 5.0]])
    assert torch.allclose(convert_channels(stereo, 1, mix=0.25), torch.tensor([[2.5, 4.25]]))
    assert torch.allclose(convert_channels(stereo, 1), torch.tensor([[2.0, 3.5]]))
    assert torch.allclose(convert_channels(stereo, 1, mix=0.0), stereo[1:2])
    mono = torch.tensor([[0.1, -0.2, 0.3]])
    dup = convert_channels(mono, 2)
    assert dup.shape == (2, 3) and torch.equal(dup[0], mono[0]) and torch.equal(dup[1], mono[0])
    assert convert_channels(stereo, 2) is stereo
    with pytest.raises(ValueError, match="3-channel"):
        convert_channels(torch.zeros(3, 4), 1)
    with pytest.raises(ValueError, match="mix"):
        convert_channels(stereo, 1, mix=1.5)


def test_error_missing(tmp_path):
    path = tmp_path / "nope.wav"
    with pytest.raises(AudioError, match=r"nope\.wav: file not found"):
        load_audio(path)
    with pytest.raises(AudioError, match="not found"):
        audio_info(path)


def test_error_corrupt(tmp_path):
    path = tmp_path / "bad.flac"
    path.write_bytes(b"this is not audio at all" * 10)
    with pytest.raises(AudioError, match=r"bad\.flac: cannot read audio"):
        audio_info(path)
    with pytest.raises(AudioError, match=r"bad\.flac"):
        load_audio(path)


def test_error_empty(tmp_path):
    path = tmp_path / "empty.wav"
    sf.write(path, np.zeros((0, 1), dtype=np.float32), 8000)
    with pytest.raises(AudioError, match=r"empty\.wav: audio is empty"):
        audio_info(path)
    with pytest.raises(AudioError, match="empty"):
        load_audio(path)
    zero_bytes = tmp_path / "zero.wav"
    zero_bytes.write_bytes(b"")
    with pytest.raises(AudioError, match=r"zero\.wav: file is empty \(0 bytes\)"):
        load_audio(zero_bytes)


def test_error_too_short(tmp_path):
    path = tmp_path / "short.wav"
    save_audio(path, torch.zeros(1, 4000), 8000)
    with pytest.raises(AudioError, match=r"short\.wav: too short: 0\.500 s.*at least 2\.000 s"):
        load_audio(path, min_duration=2.0)
    assert load_audio(path, min_duration=0.5).shape == (1, 4000)


def test_error_nan_samples(tmp_path):
    path = tmp_path / "nan.wav"
    data = np.zeros((100, 2), dtype=np.float32)
    data[3, 0] = np.nan
    data[10, 1] = np.inf
    data[11, 1] = np.nan
    sf.write(path, data, 8000, subtype="FLOAT")
    with pytest.raises(AudioError, match=r"nan\.wav: contains 3 NaN or infinite"):
        load_audio(path)


def test_extensions_are_lowercase_and_readable(tmp_path):
    assert all(ext == ext.lower() and ext.startswith(".") for ext in AUDIO_EXTENSIONS)
    assert {".wav", ".flac"} <= set(AUDIO_EXTENSIONS)
    # every listed compressed container really decodes here
    x = sine(440, 48000, 0.2).numpy()
    for ext, fmt, subtype in [(".ogg", "OGG", "VORBIS"), (".opus", "OGG", "OPUS"),
                              (".mp3", "MP3", "MPEG_LAYER_III")]:
        path = tmp_path / f"c{ext}"
        sf.write(path, x, 48000, format=fmt, subtype=subtype)
        assert audio_info(path).sample_rate == 48000
        assert load_audio(path).shape[0] == 1
