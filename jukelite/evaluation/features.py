"""Audio features shared by the conditioning scorers: log-mel frames and song-level statistics.

Audio is mixed to mono, resampled down to at most 16 kHz (formants and drums live below 8 kHz,
and one rate keeps the models small) and scaled to a fixed RMS, so that the scorers judge the
*sound* of a clip and not its loudness: a generated song may be quieter than a peak-normalised
demo song and still be the asked-for genre.

The log-mel frames come from torchaudio, torch-native like the recognizer that reads them;
chroma, onset strength and its autocorrelation from librosa.
"""

from __future__ import annotations

import math
from functools import lru_cache

import librosa
import numpy as np
import torch
import torchaudio
from torch import Tensor

MAX_ANALYSIS_RATE = 16000
FRAME_RATE = 100  # log-mel frames per second, whatever the sample rate
N_MELS = 40  # few enough bands that none is empty at 8 kHz
TARGET_RMS = 0.1
LOG_FLOOR = 1e-6

# Song-level pitch profile: semitones from E2 to B6, where bass, chords and melodies sit.
PITCH_LOW, PITCH_HIGH = 40, 96
# Level percentiles of each mel band: the quiet, typical and loud sound of the clip.
PERCENTILES = (0.1, 0.5, 0.9)
# Modulation spectrum: how fast the log-mel of 8 band groups moves, in these bands (Hz);
# vibrato (4-7 Hz), syllable rate and beat subdivisions all show here.
MODULATION_GROUPS = 8
MODULATION_EDGES = (1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 10.0, 12.0, 16.0)
# Tempo profile: onset autocorrelation read at these periodicities (per minute), up to the
# sixteenth notes of fast songs, finely enough to separate neighbouring tempo ranges.
TEMPO_BPM = np.geomspace(40.0, 400.0, 64)

AudioLike = Tensor | np.ndarray


def analysis_rate(sample_rate: int) -> int:
    """The rate features are computed at: the input rate, capped at 16 kHz."""
    return min(int(sample_rate), MAX_ANALYSIS_RATE)


def prepare_audio(audio: AudioLike, sample_rate: int) -> Tensor:
    """Mono float32 ``[S]`` at :func:`analysis_rate`, scaled to a fixed RMS (silence stays 0).

    Accepts ``[S]`` or ``[C, S]`` (numpy or torch, any device).
    """
    x = torch.as_tensor(audio).detach().to("cpu", torch.float32)
    if x.ndim == 2:
        x = x.mean(dim=0)
    if x.ndim != 1:
        raise ValueError(f"audio must be [S] or [C, S], got shape {tuple(x.shape)}")
    rate = analysis_rate(sample_rate)
    if rate != sample_rate:
        x = torchaudio.functional.resample(x, int(sample_rate), rate)
    rms = float(x.pow(2).mean().sqrt()) if x.numel() else 0.0
    return x * (TARGET_RMS / rms) if rms > 1e-8 else x


@lru_cache(maxsize=8)
def _mel_transform(rate: int) -> torchaudio.transforms.MelSpectrogram:
    n_fft = 2 ** round(math.log2(0.032 * rate))  # ~32 ms windows: 512 at 16 kHz, 256 at 8 kHz
    return torchaudio.transforms.MelSpectrogram(
        sample_rate=rate, n_fft=n_fft, hop_length=rate // FRAME_RATE, n_mels=N_MELS,
        f_min=20.0, f_max=rate / 2, power=2.0,
    )


def _log_mel_frames(x: Tensor, rate: int) -> Tensor:
    transform = _mel_transform(rate)
    if x.numel() <= transform.n_fft // 2:  # too short for the centred STFT's reflect padding
        x = torch.nn.functional.pad(x, (0, transform.n_fft // 2 + 1 - x.numel()))
    with torch.no_grad():
        return torch.log(transform(x) + LOG_FLOOR).T.contiguous()


def log_mel(audio: AudioLike, sample_rate: int) -> Tensor:
    """Log-mel frames ``[frames, N_MELS]`` at :data:`FRAME_RATE` frames per second."""
    rate = analysis_rate(sample_rate)
    return _log_mel_frames(prepare_audio(audio, sample_rate), rate)


@lru_cache(maxsize=8)
def _semitone_of_bin(rate: int, n_fft: int) -> np.ndarray:
    """The nearest MIDI note of every STFT bin (the DC bin gets -1, outside any profile)."""
    freqs = librosa.fft_frequencies(sr=rate, n_fft=n_fft)
    midi = np.full(freqs.shape, -1, dtype=np.int64)
    midi[1:] = np.round(librosa.hz_to_midi(freqs[1:]))
    return midi


@lru_cache(maxsize=8)
def _chroma_filters(rate: int, n_fft: int) -> np.ndarray:
    """librosa's chroma filterbank, built once: ``chroma_stft`` rebuilds it on every call,
    which took a third of the song features' time."""
    return librosa.filters.chroma(sr=rate, n_fft=n_fft, tuning=0.0)


def _pitch_profile(x: Tensor, rate: int) -> tuple[np.ndarray, np.ndarray]:
    """(log energy per semitone, minus its mean; chroma summing to 1) of the whole clip.

    A ~256 ms window resolves semitones from about E2 up, which the 32 ms log-mel cannot: the
    artists of the demo songs differ by register and preferred keys. The semitone profile bins
    this STFT directly: a constant-Q transform gives the same profile but costs ten times the
    whole feature vector, and scored the held-out songs no better.
    """
    n_fft = 2 ** round(math.log2(0.256 * rate))
    if x.numel() < n_fft:
        x = torch.nn.functional.pad(x, (0, n_fft - x.numel()))
    power = torch.stft(x, n_fft, hop_length=n_fft // 4, window=torch.hann_window(n_fft),
                       return_complex=True).abs().pow(2).numpy()  # [bins, frames]
    midi = _semitone_of_bin(rate, n_fft)
    keep = (midi >= PITCH_LOW) & (midi < PITCH_HIGH)
    semis = np.bincount(midi[keep] - PITCH_LOW, weights=power.mean(axis=1)[keep],
                        minlength=PITCH_HIGH - PITCH_LOW)
    log_semis = np.log(semis + LOG_FLOOR)
    chroma = librosa.util.normalize(_chroma_filters(rate, n_fft) @ power, norm=np.inf, axis=0)
    chroma = chroma.mean(axis=1)  # frames normalised as in librosa.feature.chroma_stft
    return log_semis - log_semis.mean(), chroma / max(chroma.sum(), LOG_FLOOR)


def _tempo_profile(frames: Tensor) -> np.ndarray:
    """Onset-strength autocorrelation at the :data:`TEMPO_BPM` lags, in [-1, 1]."""
    if frames.shape[0] < 5:
        return np.zeros(len(TEMPO_BPM))
    # Natural-log mel instead of dB: a scale the normalised autocorrelation ignores. The first
    # value is the padding that aligns the envelope with the frames.
    onsets = librosa.onset.onset_strength(S=frames.T.numpy(), center=False)[1:]
    acf = librosa.autocorrelate(onsets - onsets.mean())
    acf = acf / max(acf[0], LOG_FLOOR)
    lags = np.minimum(60.0 * FRAME_RATE / TEMPO_BPM, acf.size - 1)
    return np.interp(lags, np.arange(acf.size), acf)


def _modulation_profile(frames: Tensor) -> Tensor:
    """Log share of each modulation band in each band group's movement (groups x bands)."""
    n_bands = len(MODULATION_EDGES) - 1
    if frames.shape[0] < 8:
        return torch.zeros(n_bands * MODULATION_GROUPS)
    groups = frames.reshape(frames.shape[0], MODULATION_GROUPS, -1).mean(dim=2)
    groups = groups - groups.mean(dim=0)
    n_fft = max(256, 2 ** math.ceil(math.log2(groups.shape[0])))
    window = torch.hann_window(groups.shape[0], periodic=False)[:, None]
    spectrum = torch.fft.rfft(groups * window, n=n_fft, dim=0).abs()
    freqs = torch.fft.rfftfreq(n_fft, 1.0 / FRAME_RATE)
    bands = torch.stack([
        spectrum[(freqs >= lo) & (freqs < hi)].mean(dim=0)
        for lo, hi in zip(MODULATION_EDGES[:-1], MODULATION_EDGES[1:], strict=True)
    ])
    return torch.log(bands / bands.sum(dim=0).clamp_min(LOG_FLOOR) + LOG_FLOOR).flatten()


def song_features(audio: AudioLike, sample_rate: int) -> Tensor:
    """One vector per clip for the artist and genre classifiers (see :func:`feature_names`).

    Timbre and dynamics (percentiles of each mel band), articulation (mean absolute
    frame-to-frame change per band), register and key (semitone profile, chroma), vibrato and
    rhythm (modulation spectrum) and tempo (onset autocorrelation): the things the demo songs'
    genres and artists (singers) are made of.
    """
    x = prepare_audio(audio, sample_rate)
    rate = analysis_rate(sample_rate)
    with torch.no_grad():
        frames = _log_mel_frames(x, rate)  # [T, N_MELS]
        levels = torch.quantile(frames, torch.tensor(PERCENTILES), dim=0).flatten()
        if frames.shape[0] > 1:
            change = (frames[1:] - frames[:-1]).abs().mean(dim=0)
        else:
            change = torch.zeros(N_MELS)
        semitones, chroma = _pitch_profile(x, rate)
        return torch.cat([
            levels, change, torch.from_numpy(semitones), torch.from_numpy(chroma),
            _modulation_profile(frames), torch.from_numpy(_tempo_profile(frames)),
        ]).float()


def feature_names() -> list[str]:
    """Names of the entries of :func:`song_features`, in order (for inspection)."""
    bands = range(N_MELS)
    bounds = zip(MODULATION_EDGES[:-1], MODULATION_EDGES[1:], strict=True)
    return [
        *(f"mel_p{round(100 * q)}_{b}" for q in PERCENTILES for b in bands),
        *(f"mel_change_{b}" for b in bands),
        *(f"semitone_{m}" for m in range(PITCH_LOW, PITCH_HIGH)),
        *(f"chroma_{c}" for c in range(12)),
        *(f"modulation_{lo:g}_{hi:g}hz_group{g}" for lo, hi in bounds
          for g in range(MODULATION_GROUPS)),
        *(f"tempo_{bpm:.0f}" for bpm in TEMPO_BPM),
    ]
