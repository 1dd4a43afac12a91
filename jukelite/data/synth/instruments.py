"""The backing band of a demo song: tones, drums and the mixer they are summed in.

Tones are additive (a waveform's Fourier series, band-limited to the sample rate and tilted by
the artist) under an ADSR envelope; drums are short synthesised hits (a pitch-swept kick, a noise
snare and hat). :class:`Mixer` pans mono parts into a mono or stereo buffer. The sine-partial
recurrence here also drives the sung voice (:mod:`.voice`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np

from jukelite.data.synth.score import Adsr, midi_hz


def sine_partials(phase: np.ndarray, count: int) -> Iterator[np.ndarray]:
    """``sin(k * phase)`` for k = 1..``count``, by the Chebyshev recurrence: a multiply-add per
    partial instead of a sin. Each array yielded is fresh; do not modify it in place."""
    two_cos = 2.0 * np.cos(phase)
    prev, cur = np.zeros_like(phase), np.sin(phase)
    for _ in range(count):
        yield cur
        prev, cur = cur, two_cos * cur - prev


def _harmonics(wave: str, tilt: float) -> np.ndarray:
    """Fourier amplitudes (harmonic 1..K) of a band-limitable waveform, tilted by the artist."""
    k = np.arange(1, 33, dtype=np.float64)
    if wave == "sine":
        amps = (k == 1).astype(np.float64)
    elif wave == "sine2":  # soft pad: fundamental plus a quiet octave and twelfth
        amps = np.where(k == 1, 1.0, 0.0) + np.where(k == 2, 0.3, 0.0) + np.where(k == 3, 0.1, 0.0)
    elif wave == "triangle":
        amps = np.where(k % 2 == 1, 1.0 / k**2, 0.0)
    elif wave == "square":
        amps = np.where(k % 2 == 1, 1.0 / k, 0.0)
    elif wave == "pulse25":
        amps = np.abs(np.sin(np.pi * k * 0.25)) / k
    elif wave == "saw":
        amps = 1.0 / k
    elif wave == "saw_dark":
        amps = np.where(k <= 8, 1.0 / k**1.5, 0.0)
    elif wave == "pluck":
        amps = 1.0 / k**1.3
    else:  # pragma: no cover - internal table only
        raise ValueError(f"unknown waveform {wave!r}")
    if wave not in ("sine", "sine2"):
        amps = amps * k ** (-tilt)
    return amps / np.sqrt((amps**2).sum())  # equal power, so bright waves are not louder


def _envelope(n_gate: int, env: Adsr, sr: int) -> np.ndarray:
    """ADSR gain for a note held ``n_gate`` samples, followed by its release tail."""
    a = max(1, int(env.attack * sr))
    d = max(1, int(env.decay * sr))
    r = max(1, int(env.release * sr))
    t = np.arange(n_gate, dtype=np.float64)
    held = np.where(
        t < a,
        t / a,
        env.sustain + (1.0 - env.sustain) * np.exp(-np.maximum(t - a, 0.0) / (d / 4.0)),
    )
    last = held[-1] if n_gate else 0.0
    tail = last * (1.0 - np.arange(r, dtype=np.float64) / r)
    return np.concatenate([held, tail])


def tone(
    midi: float, seconds: float, wave: str, env: Adsr, sr: int, tilt: float = 0.0,
    vibrato: float = 0.0, pluck_decay: float = 0.0,
) -> np.ndarray:
    """Render one note as additive synthesis (band-limited: harmonics above 0.45*sr dropped)."""
    n_gate = max(1, int(round(seconds * sr)))
    gain = _envelope(n_gate, env, sr)
    t = np.arange(gain.size, dtype=np.float64) / sr
    f0 = midi_hz(midi)
    if vibrato > 0.0:
        freq = f0 * 2.0 ** (vibrato * np.sin(2 * np.pi * 5.5 * t) * np.minimum(t / 0.3, 1.0) / 12)
        phase = 2 * np.pi * np.cumsum(freq) / sr
    else:
        phase = 2 * np.pi * f0 * t
    amps = _harmonics(wave, tilt)
    n_partials = min(int(np.flatnonzero(amps)[-1]) + 1, int(0.45 * sr / f0))
    decay = np.exp(-t / pluck_decay) if pluck_decay > 0.0 else None
    weight = decay.copy() if decay is not None else None  # upper partials of a pluck die first
    out = np.zeros_like(t)
    for k, partial in enumerate(sine_partials(phase, n_partials)):
        if amps[k] != 0.0:
            out += amps[k] * (partial if weight is None else partial * weight)
        if weight is not None:
            weight *= decay
    return out * gain


def kick(sr: int) -> np.ndarray:
    t = np.arange(int(0.3 * sr)) / sr
    freq = 48.0 + 110.0 * np.exp(-t / 0.03)
    return np.sin(2 * np.pi * np.cumsum(freq) / sr) * np.exp(-t / 0.12)


def snare(sr: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(int(0.25 * sr)) / sr
    noise = np.diff(rng.standard_normal(t.size + 1))  # first difference: a gentle high-pass
    body = 0.5 * np.sin(2 * np.pi * 190.0 * t) * np.exp(-t / 0.04)
    return (0.35 * noise * np.exp(-t / 0.06) + body)


def hat(sr: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(int(0.06 * sr)) / sr
    noise = np.diff(rng.standard_normal(t.size + 2), n=2)  # second difference: brighter
    return 0.15 * noise * np.exp(-t / 0.015)


class Mixer:
    """Accumulates mono voices into a (possibly stereo) buffer with constant-power panning."""

    def __init__(self, n: int, channels: int) -> None:
        self.buf = np.zeros((channels, n), dtype=np.float64)

    def add(self, signal: np.ndarray, start: int, pan: float = 0.0, gain: float = 1.0) -> None:
        n = self.buf.shape[1]
        if start >= n or start + signal.size <= 0:
            return
        sig = signal[: n - start] * gain
        if self.buf.shape[0] == 1:
            self.buf[0, start : start + sig.size] += sig
            return
        angle = (min(max(pan, -1.0), 1.0) + 1.0) * np.pi / 4
        # Scale by sqrt(2) so a centred voice keeps the level it has in the mono mix.
        self.buf[0, start : start + sig.size] += sig * np.cos(angle) * math.sqrt(2.0)
        self.buf[1, start : start + sig.size] += sig * np.sin(angle) * math.sqrt(2.0)
