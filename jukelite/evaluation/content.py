"""Band-limited content features: what a song is made of below 2 kHz, for the second scorer.

The first scorer (:mod:`jukelite.evaluation.features`) hears up to 8 kHz, where a model's
sampling noise lives as a bright buzz that it may take for a genre or a singer; a model can
also score well there by copying a timbre. This one hears only the *content*: the audio is
resampled to 4 kHz in the frequency domain with every bin from 2 kHz up zeroed, only spectrum
bins below :data:`BAND_EDGE_HZ` are read, and the band-limited signal is scaled to a fixed RMS,
so that nothing above 2 kHz (not even its level) reaches a feature. From that it measures:

* **register**: where a harmonic-sum pitch salience lies (three-semitone bins from C2 to C6,
  bass and voice both), the pitch-class profile and percentiles of the dominant pitch, and
  percentiles of the low-band spectral centroid and spread;
* **vibrato**: depth, rate, rate bands and roughness of the dominant pitch on held notes;
* **long-term average spectrum**: log power in log-spaced bands below 2 kHz, level removed;
* **tempo and rhythm**: a tempogram summary (the strongest onset autocorrelation in each tempo
  band), pulse clarity, the strongest tempo, the beat's subdivisions and onset peakiness.

None of it reuses the first scorer's vector; torch and numpy only.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor

from jukelite.evaluation.features import AudioLike

CONTENT_RATE = 4000  # Nyquist 2 kHz
BAND_EDGE_HZ = 1900.0  # no bin above is read; the band-limiting taper ends at 2 kHz
BAND_LOW_HZ = 50.0
TARGET_RMS = 0.1
EPS = 1e-10

# Long-term average spectrum and register: ~256 ms frames.
LONG_FFT, LONG_HOP = 1024, 256
LTAS_BANDS = 24
# Pitch tracking: 64 ms Hann windows, zero-padded 4x, every 20 ms (50 frames per second).
PITCH_WIN, PITCH_FFT, PITCH_HOP = 256, 1024, 80
PITCH_FPS = CONTENT_RATE / PITCH_HOP
F0_LOW, F0_HIGH, F0_STEP = 36.0, 84.0, 0.2  # MIDI C2..C6 in fifths of a semitone
HARMONICS = 8
HARMONIC_DECAY = 0.85
REGISTER_STEP = 3  # semitones per bin of the register histogram
# Vibrato: held notes of at least this long (the demo voices swell into vibrato after ~0.1 s).
HELD_SECONDS = 0.3
HELD_SPREAD = 1.5  # semitones from the note's start: further is a new note, not vibrato
NOTE_STEP = 0.6  # semitones in one frame: faster than any vibrato (0.45 at 6.5 Hz moves 0.37)
VIBRATO_EDGES = (2.0, 4.0, 5.0, 6.0, 7.0, 9.0, 12.0)  # Hz
# Onsets: 32 ms windows every 10 ms.
ONSET_WIN, ONSET_HOP = 128, 40
ONSET_FPS = CONTENT_RATE / ONSET_HOP
TEMPO_GRID = np.geomspace(40.0, 320.0, 96)  # beats per minute, read finely ...
# ... and summarised as the strongest periodicity in each of these tempo bands: a few robust
# numbers that a classifier trained on tens of songs cannot overfit the way it can 96.
TEMPO_BANDS = (40.0, 56.0, 70.0, 88.0, 110.0, 140.0, 175.0, 220.0, 320.0)
SUBDIVISIONS = (2, 3, 4)  # how strongly the beat splits in halves, thirds, quarters


def band_limit(audio: AudioLike, sample_rate: int) -> Tensor:
    """Mono float32 ``[S]`` at 4 kHz with nothing above 2 kHz, scaled to a fixed RMS.

    The level is set *after* filtering, so a loud sound above 2 kHz cannot turn the content
    below it up or down.
    """
    x = torch.as_tensor(audio).detach().to("cpu", torch.float32)
    if x.ndim == 2:
        x = x.mean(dim=0)
    if x.ndim != 1:
        raise ValueError(f"audio must be [S] or [C, S], got shape {tuple(x.shape)}")
    if int(sample_rate) < CONTENT_RATE:
        raise ValueError(f"need a sample rate of at least {CONTENT_RATE} Hz, got {sample_rate}")
    n = x.numel()
    m = max(1, round(n * CONTENT_RATE / int(sample_rate)))
    # Resampled in the frequency domain: every bin at or above 2 kHz is zeroed (a short
    # raised-cosine taper from BAND_EDGE_HZ avoids ringing), so nothing above can alias into
    # the band, as it would through a time-domain filter's finite stopband.
    spectrum = torch.fft.rfft(x.double())[: m // 2 + 1]
    freqs = torch.arange(spectrum.numel(), dtype=torch.float64) * int(sample_rate) / max(n, 1)
    ramp = ((freqs - BAND_EDGE_HZ) / (CONTENT_RATE / 2 - BAND_EDGE_HZ)).clamp(0.0, 1.0)
    x = torch.fft.irfft(spectrum * 0.5 * (1.0 + torch.cos(math.pi * ramp)), n=m).float()
    x = x * (m / max(n, 1))
    rms = float(x.pow(2).mean().sqrt()) if x.numel() else 0.0
    return x * (TARGET_RMS / rms) if rms > 1e-8 else x


def _frames_power(x: Tensor, window: int, n_fft: int, hop: int) -> Tensor:
    """Power spectrogram ``[frames, bins]`` of the bins below :data:`BAND_EDGE_HZ`."""
    if x.numel() < n_fft:
        x = torch.nn.functional.pad(x, (0, n_fft - x.numel()))
    spec = torch.stft(x, n_fft, hop_length=hop, win_length=window,
                      window=torch.hann_window(window), center=False, return_complex=True)
    keep = int(BAND_EDGE_HZ * n_fft / CONTENT_RATE)
    return spec[:keep].abs().pow(2).T


@lru_cache(maxsize=2)
def _ltas_bands() -> Tensor:
    """Band-membership matrix ``[bins, LTAS_BANDS]`` (rows of each band average to 1)."""
    freqs = torch.arange(int(BAND_EDGE_HZ * LONG_FFT / CONTENT_RATE)) * CONTENT_RATE / LONG_FFT
    edges = torch.from_numpy(np.geomspace(BAND_LOW_HZ, BAND_EDGE_HZ, LTAS_BANDS + 1)).float()
    band = torch.bucketize(freqs, edges, right=True) - 1
    member = torch.nn.functional.one_hot(band.clamp(0, LTAS_BANDS - 1), LTAS_BANDS).float()
    member[(band < 0) | (band >= LTAS_BANDS)] = 0.0
    return member / member.sum(dim=0).clamp_min(1.0)


@lru_cache(maxsize=2)
def _salience_weights() -> tuple[Tensor, np.ndarray]:
    """Harmonic-sum weights ``[bins, candidates]`` and the candidates' MIDI pitches.

    Each candidate f0 collects the magnitude at its first :data:`HARMONICS` harmonics below the
    band edge (linear interpolation between bins), each weighted a little less than the one
    before, so that the true f0 outscores its octave below.
    """
    midi = np.arange(F0_LOW, F0_HIGH + 1e-9, F0_STEP)
    n_bins = int(BAND_EDGE_HZ * PITCH_FFT / CONTENT_RATE)
    weights = np.zeros((n_bins, midi.size), dtype=np.float32)
    f0 = 440.0 * 2.0 ** ((midi - 69.0) / 12.0)
    for h in range(1, HARMONICS + 1):
        position = h * f0 * PITCH_FFT / CONTENT_RATE
        inside = position < n_bins - 1
        low = np.floor(position[inside]).astype(np.int64)
        frac = position[inside] - low
        cols = np.nonzero(inside)[0]
        weight = HARMONIC_DECAY ** (h - 1)
        np.add.at(weights, (low, cols), weight * (1.0 - frac))
        np.add.at(weights, (low + 1, cols), weight * frac)
    return torch.from_numpy(weights), midi


def pitch_salience(x: Tensor) -> np.ndarray:
    """Harmonic-sum salience ``[frames, candidates]`` of band-limited audio, every 20 ms."""
    magnitude = _frames_power(x, PITCH_WIN, PITCH_FFT, PITCH_HOP).sqrt()
    return (magnitude @ _salience_weights()[0]).numpy()


def pitch_track(salience: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(dominant pitch in MIDI, its salience) per frame of :func:`pitch_salience`.

    The candidate with the largest harmonic sum wins; a parabola through it and its neighbours
    refines it below the grid step, which vibrato depths of a tenth of a semitone need.
    """
    midi = _salience_weights()[1]
    best = salience.argmax(axis=1)
    inner = np.clip(best, 1, midi.size - 2)
    rows = np.arange(salience.shape[0])
    left, mid, right = (salience[rows, inner - 1], salience[rows, inner],
                        salience[rows, inner + 1])
    curve = left - 2 * mid + right
    shift = np.where(curve < 0, 0.5 * (left - right) / np.where(curve < 0, curve, -1.0), 0.0)
    shift = np.where(best == inner, np.clip(shift, -0.5, 0.5), 0.0)
    return midi[best] + shift * F0_STEP, salience[rows, best]


def _register(
    salience: np.ndarray, pitch: np.ndarray, strength: np.ndarray, power: Tensor
) -> np.ndarray:
    """Where the pitch salience lies (3-semitone bins: bass and voice both show), pitch classes
    and percentiles of the dominant pitch, and percentiles of the low-band spectral centroid
    and spread (octaves)."""
    n_bins = math.ceil((F0_HIGH - F0_LOW) / REGISTER_STEP)
    midi = _salience_weights()[1]
    index = np.clip(((midi - F0_LOW) // REGISTER_STEP).astype(np.int64), 0, n_bins - 1)
    shares = salience / np.maximum(salience.sum(axis=1, keepdims=True), EPS)
    octaves = np.bincount(index, weights=shares.mean(axis=0), minlength=n_bins)
    weight = strength / max(float(strength.sum()), EPS)
    classes = np.bincount(np.round(pitch).astype(np.int64) % 12, weights=weight, minlength=12)
    if pitch.size:
        order = np.argsort(pitch)
        cumulative = np.cumsum(weight[order])
        spots = np.searchsorted(cumulative, (0.1, 0.5, 0.9)).clip(0, pitch.size - 1)
        levels = (pitch[order][spots] - 60.0) / 12.0
    else:
        levels = np.zeros(3)
    freqs = torch.arange(1, power.shape[1] + 1) * CONTENT_RATE / LONG_FFT  # skip DC's log
    octave = torch.log2(freqs / 440.0)
    p = power + EPS
    p = p / p.sum(dim=1, keepdim=True)
    centroid = (p * octave).sum(dim=1)
    spread = (p * (octave - centroid[:, None]).pow(2)).sum(dim=1).sqrt()
    q = torch.tensor([0.1, 0.5, 0.9])
    shape = torch.cat([torch.quantile(centroid, q), torch.quantile(spread, q[1:2])])
    return np.concatenate([octaves, classes, levels, shape.numpy()])


def _held_notes(pitch: np.ndarray, strength: np.ndarray) -> list[np.ndarray]:
    """Runs of frames where a strong dominant pitch stays within :data:`HELD_SPREAD`."""
    need = max(4, round(HELD_SECONDS * PITCH_FPS))
    strong = strength > 0.25 * (np.median(strength) if strength.size else 0.0)
    runs, start = [], 0
    for i in range(1, pitch.size + 1):
        if (i == pitch.size or not strong[i] or abs(pitch[i] - pitch[i - 1]) > NOTE_STEP
                or abs(pitch[i] - pitch[start]) > HELD_SPREAD):
            if i - start >= need and strong[start:i].all():
                runs.append(pitch[start:i])
            start = i
    return runs


def _vibrato(pitch: np.ndarray, strength: np.ndarray) -> np.ndarray:
    """Depth (median and upper RMS, semitones), mean rate (Hz), frame-to-frame roughness, the
    held-note fraction and the share of the pitch movement in each rate band.

    Each held note's pitch is detrended by a line first, so a scoop or slow drift into the note
    does not count as vibrato; a clip with no held note gets zeros.
    """
    runs = _held_notes(pitch, strength)
    n_bands = len(VIBRATO_EDGES) - 1
    if not runs:
        return np.zeros(5 + n_bands)
    depths, shares, rates, rough = [], [], [], []
    for run in runs:
        t = np.arange(run.size)
        residual = run - np.polyval(np.polyfit(t, run, 1), t)
        depths.append(float(np.sqrt(np.mean(residual**2))))
        rough.append(float(np.median(np.abs(np.diff(residual)))))
        if depths[-1] < 1e-3:  # a steady tone: no movement to share out or to give a rate
            shares.append(np.zeros(n_bands))
            rates.append(0.0)
            continue
        n_fft = max(128, 2 ** math.ceil(math.log2(run.size)))  # 0.4 Hz steps or finer
        spectrum = np.abs(np.fft.rfft(residual * np.hanning(run.size), n_fft)) ** 2
        freqs = np.fft.rfftfreq(n_fft, 1.0 / PITCH_FPS)
        bands = np.array([spectrum[(freqs >= lo) & (freqs < hi)].sum()
                          for lo, hi in zip(VIBRATO_EDGES[:-1], VIBRATO_EDGES[1:], strict=True)])
        shares.append(bands / max(float(bands.sum()), EPS))
        inside = (freqs >= VIBRATO_EDGES[0]) & (freqs < VIBRATO_EDGES[-1])
        rates.append(float(freqs[inside] @ spectrum[inside])
                     / max(float(spectrum[inside].sum()), EPS))
    weights = np.array([run.size for run in runs], dtype=np.float64)
    weights /= weights.sum()
    held = sum(run.size for run in runs) / max(pitch.size, 1)
    return np.concatenate([
        [np.median(depths), np.percentile(depths, 75), float(weights @ np.array(rates)),
         float(np.median(rough)), held],
        weights @ np.stack(shares),
    ])


def _ltas(power: Tensor) -> np.ndarray:
    """Log mean power per band, minus its mean over bands (the level is not content)."""
    per_band = torch.log(power.mean(dim=0) @ _ltas_bands() + EPS)
    return (per_band - per_band.mean()).numpy()


def _rhythm(x: Tensor) -> np.ndarray:
    """Tempogram summary (strongest onset autocorrelation per tempo band), pulse clarity,
    strongest tempo (octaves from 120 per minute), the beat's subdivisions and the onset
    envelope's peakiness."""
    n_out = len(TEMPO_BANDS) - 1 + 3 + len(SUBDIVISIONS)
    power = _frames_power(x, ONSET_WIN, ONSET_WIN, ONSET_HOP)
    if power.shape[0] < 8:
        return np.zeros(n_out)
    log_power = torch.log(power + 1e-6)
    flux = (log_power[1:] - log_power[:-1]).clamp_min(0).mean(dim=1).numpy()
    envelope = flux - flux.mean()
    n = envelope.size
    spectrum = np.fft.rfft(envelope, 2 * n)
    acf = np.fft.irfft(np.abs(spectrum) ** 2)[:n]
    acf = acf / max(float(acf[0]), EPS)
    lags = np.minimum(60.0 * ONSET_FPS / TEMPO_GRID, n - 1)
    profile = np.interp(lags, np.arange(n), acf)
    bands = [profile[(TEMPO_GRID >= lo) & (TEMPO_GRID < hi)].max()
             for lo, hi in zip(TEMPO_BANDS[:-1], TEMPO_BANDS[1:], strict=True)]
    best = int(profile.argmax())
    split = np.interp(lags[best] / np.array(SUBDIVISIONS), np.arange(n), acf)
    peakiness = float(flux.std() / max(float(flux.mean()), EPS))
    return np.concatenate([bands, [profile[best], math.log2(TEMPO_GRID[best] / 120.0),
                                   math.log(1.0 + peakiness)], split])


def content_features(audio: AudioLike, sample_rate: int) -> Tensor:
    """One vector per clip from content below 2 kHz (see :func:`content_feature_names`)."""
    x = band_limit(audio, sample_rate)
    with torch.no_grad():
        power = _frames_power(x, LONG_FFT, LONG_FFT, LONG_HOP)
        salience = pitch_salience(x)
        pitch, strength = pitch_track(salience)
        return torch.from_numpy(np.concatenate([
            _register(salience, pitch, strength, power[:, 1:]), _vibrato(pitch, strength),
            _ltas(power), _rhythm(x),
        ])).float()


def content_feature_names() -> list[str]:
    """Names of the entries of :func:`content_features`, in order."""
    n_register = math.ceil((F0_HIGH - F0_LOW) / REGISTER_STEP)
    bands = zip(VIBRATO_EDGES[:-1], VIBRATO_EDGES[1:], strict=True)
    return [
        *(f"register_salience_midi{F0_LOW + REGISTER_STEP * i:.0f}" for i in range(n_register)),
        *(f"pitch_class_{c}" for c in range(12)),
        "pitch_p10", "pitch_p50", "pitch_p90",
        "centroid_p10", "centroid_p50", "centroid_p90", "spread_p50",
        "vibrato_depth_p50", "vibrato_depth_p75", "vibrato_rate", "vibrato_roughness",
        "held_fraction",
        *(f"vibrato_share_{lo:g}_{hi:g}hz" for lo, hi in bands),
        *(f"ltas_{i}" for i in range(LTAS_BANDS)),
        *(f"tempo_{lo:g}_{hi:g}bpm" for lo, hi in zip(TEMPO_BANDS[:-1], TEMPO_BANDS[1:],
                                                       strict=True)),
        "pulse_clarity", "tempo_octave", "onset_peakiness",
        *(f"beat_split_{k}" for k in SUBDIVISIONS),
    ]
