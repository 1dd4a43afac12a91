"""Procedural demo songs with a singing voice, so tests, the tiny recipe and the demo need no
downloads.

The songs are small but musically structured, so a model trained on them has something to learn
that labels and lyrics actually predict: each song has a key, a mode and a tempo, a repeating
chord progression played in the genre's accompaniment pattern (held pads, arpeggios, power chords
or strums), a bass line, drums for most genres, and a **formant-synthesised voice** singing the
melody, one syllable of pseudo-English lyrics per note, so word timings are exact.

The voice is a source-filter model: a glottal harmonic series at the note's pitch (with the
artist's spectral tilt, vibrato, jitter, shimmer and breath noise) shaped by the vowel's formants
(a cascade of two-pole resonators, evaluated at each harmonic), with consonants from the same
letters: fricatives as band-passed noise, plosives as a closure and a burst, nasals and liquids as
short voiced segments with their own formants. The *genre* decides the accompaniment (tempo range,
modes, rhythms, waveforms, drums) and the *artist* the voice (vocal-tract length, register,
tilt, vibrato, breathiness, attack and release) and a key preference.

Everything is a deterministic function of the seed (one ``numpy.random.Generator``, from which the
voice's own generator is drawn, so switching the voice or the backing off changes nothing else).
"""

from __future__ import annotations

import csv
import functools
import io
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

GENRES: tuple[str, ...] = ("chiptune", "ambient", "rock", "folk")
ARTISTS: tuple[str, ...] = (
    "Nova Lark",
    "The Copper Owls",
    "Mira Vale",
    "Dusty Static",
    "Juniper Tide",
)

_PEAK = 10.0 ** (-1.0 / 20.0)  # -1 dBFS: loud, but leaves room for resampling overshoot
_NOTE_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
_SCALES = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10),
    "dorian": (0, 2, 3, 5, 7, 9, 10),
    "mixolydian": (0, 2, 4, 5, 7, 9, 10),
    "lydian": (0, 2, 4, 6, 7, 9, 11),
}
# Progressions as 0-based scale degrees, one chord per bar; each mode gets the moves that make it
# recognisable (bVII-IV in mixolydian, the major IV in dorian, the major II in lydian).
_PROGRESSIONS = {
    "major": ((0, 4, 5, 3), (0, 5, 3, 4), (0, 3, 4, 0), (5, 3, 0, 4)),
    "minor": ((0, 5, 2, 6), (0, 3, 4, 0), (0, 6, 5, 6), (0, 5, 3, 4)),
    "dorian": ((0, 3, 0, 3), (0, 6, 3, 0), (0, 2, 3, 0), (0, 3, 6, 0)),
    "mixolydian": ((0, 6, 3, 0), (0, 3, 6, 0), (0, 6, 3, 3), (0, 4, 6, 3)),
    "lydian": ((0, 1, 0, 1), (0, 1, 4, 0), (0, 1, 5, 0), (5, 1, 0, 0)),
}


@dataclass(frozen=True)
class _Adsr:
    attack: float
    decay: float
    sustain: float
    release: float


@dataclass(frozen=True)
class _Genre:
    bpm: tuple[float, float]  # ranges do not overlap, so tempo alone tells the genres apart
    modes: tuple[str, str]  # (bright, dark); the artist's p_bright picks one
    lead: str  # waveform of the quiet instrumental doubling of the melody, see _harmonics
    pad: str
    bass: str
    lead_env: _Adsr
    pad_env: _Adsr
    bass_env: _Adsr
    rhythms: tuple[tuple[float, ...], ...]  # melody bar patterns, note lengths in beats
    pad_pattern: tuple[tuple[float, float, tuple[int, ...]], ...]  # (beat, length, triad voices)
    bass_pattern: tuple[tuple[float, float, int], ...]  # (beat, length, degree offset in triad)
    kick: tuple[float, ...]  # beats within the bar
    snare: tuple[float, ...]
    hat: tuple[float, ...]
    drum_gain: float
    echo: float  # feedback gain of the beat-synced echo (0 = dry)
    levels: tuple[float, float, float]  # voice, pad, bass
    double: float  # level of the instrumental doubling of the melody (0 = voice alone)


_EIGHTHS = tuple(x / 2 for x in range(8))
_ALL = (0, 1, 2)
_GENRE_SPECS: dict[str, _Genre] = {
    "chiptune": _Genre(
        bpm=(144.0, 172.0), modes=("major", "minor"),
        lead="pulse25", pad="square", bass="triangle",
        lead_env=_Adsr(0.004, 0.05, 0.7, 0.03),
        pad_env=_Adsr(0.002, 0.05, 0.6, 0.02),
        bass_env=_Adsr(0.004, 0.03, 0.8, 0.02),
        rhythms=((0.5,) * 8, (0.25, 0.25, 0.5) * 2 + (1.0, 1.0), (1.0, 0.5, 0.5, 1.0, 1.0),
                 (0.5, 0.5, 0.25, 0.25, 0.5, 1.0, 1.0)),
        # Sixteenth-note arpeggio up and down the triad: the classic sound of a three-voice chip.
        pad_pattern=tuple((i / 4, 0.22, ((0, 1, 2, 1)[i % 4],)) for i in range(16)),
        bass_pattern=tuple((b, 0.45, 0 if i % 2 == 0 else 2) for i, b in enumerate(_EIGHTHS)),
        kick=(0.0, 2.0), snare=(1.0, 3.0), hat=_EIGHTHS, drum_gain=0.45, echo=0.0,
        levels=(0.35, 0.1, 0.22), double=0.1,
    ),
    "ambient": _Genre(
        bpm=(64.0, 80.0), modes=("lydian", "minor"),
        lead="sine", pad="sine2", bass="sine",
        lead_env=_Adsr(0.15, 0.3, 0.8, 0.6),
        pad_env=_Adsr(0.9, 0.5, 0.8, 1.5),
        bass_env=_Adsr(0.4, 0.5, 0.9, 1.0),
        rhythms=((2.0, 2.0), (1.0, 1.0, 2.0), (2.0, 1.0, 1.0), (3.0, 1.0)),
        pad_pattern=((0.0, 3.92, _ALL),),  # the triad held for the whole bar
        bass_pattern=((0.0, 4.0, 0),),
        kick=(), snare=(), hat=(), drum_gain=0.0, echo=0.45,
        levels=(0.4, 0.14, 0.22), double=0.0,
    ),
    "rock": _Genre(
        bpm=(112.0, 136.0), modes=("mixolydian", "dorian"),
        lead="saw", pad="saw", bass="saw_dark",
        lead_env=_Adsr(0.01, 0.1, 0.75, 0.08),
        pad_env=_Adsr(0.005, 0.1, 0.6, 0.04),
        bass_env=_Adsr(0.005, 0.08, 0.8, 0.05),
        rhythms=((1.0, 1.0, 1.0, 1.0), (0.5, 0.5, 1.0, 0.5, 0.5, 1.0), (1.5, 0.5, 1.0, 1.0),
                 (1.0, 0.5, 0.5, 2.0)),
        pad_pattern=tuple((b, 0.42, (0, 2)) for b in _EIGHTHS),  # root-fifth power chords
        bass_pattern=tuple((b, 0.45, 0) for b in _EIGHTHS),
        kick=(0.0, 2.0, 2.5), snare=(1.0, 3.0), hat=_EIGHTHS, drum_gain=0.55, echo=0.15,
        levels=(0.42, 0.08, 0.25), double=0.07,
    ),
    "folk": _Genre(
        bpm=(86.0, 104.0), modes=("major", "dorian"),
        lead="triangle", pad="pluck", bass="triangle",
        lead_env=_Adsr(0.03, 0.15, 0.7, 0.15),
        pad_env=_Adsr(0.005, 1.2, 0.0, 0.3),
        bass_env=_Adsr(0.01, 0.6, 0.3, 0.2),
        rhythms=((1.0, 1.0, 2.0), (1.0, 0.5, 0.5, 1.0, 1.0), (2.0, 1.0, 1.0), (1.5, 0.5, 2.0)),
        # A strummed pattern (down, down-up, up, down) on a plucked string.
        pad_pattern=((0.0, 1.4, _ALL), (1.5, 0.9, _ALL), (2.5, 0.45, _ALL), (3.0, 0.9, _ALL)),
        bass_pattern=((0.0, 1.8, 0), (2.0, 1.8, 2)),
        kick=(0.0, 2.0), snare=(), hat=_EIGHTHS, drum_gain=0.25, echo=0.2,
        levels=(0.22, 0.12, 0.25), double=0.0,
    ),
}


@dataclass(frozen=True)
class _Voice:
    """A singer: what makes one artist's voice recognisable whatever the song."""

    tract: float  # formant scale; > 1 is a shorter vocal tract (higher formants)
    slope: float  # glottal source roll-off, harmonic k has amplitude k**-slope (higher = darker)
    vibrato: float  # depth in semitones (peak)
    vibrato_rate: float  # Hz
    breath: float  # aspiration noise relative to the voiced sound
    attack: float  # seconds for the voicing to swell in
    release: float  # seconds for it to fade at the end of a note
    jitter: float  # slow random pitch wobble, as a fraction of the pitch
    shimmer: float  # random amplitude wobble, as a fraction of the level
    scoop: float  # semitones below the note that each note starts from (glides up)


@dataclass(frozen=True)
class _Artist:
    center: int  # MIDI note of the singer's register: the tune's tonic is the nearest one
    tonics: tuple[int, ...]  # preferred key roots (pitch classes)
    p_bright: float  # chance of the genre's bright mode rather than its dark one
    tilt: float  # instrument harmonic roll-off exponent: > 0 darker, < 0 brighter
    pan: float  # voice position, -1 (left) .. 1 (right)
    voice: _Voice


_ARTIST_SPECS: dict[str, _Artist] = {
    # A light, bright soprano with a quick, wide vibrato.
    "Nova Lark": _Artist(69, (0, 7, 2), 0.85, 0.0, 0.15, _Voice(
        tract=1.18, slope=1.05, vibrato=0.35, vibrato_rate=5.9, breath=0.05,
        attack=0.02, release=0.06, jitter=0.003, shimmer=0.04, scoop=0.0)),
    # A pressed, bright rock tenor: hard attacks, rough, scoops into notes, little vibrato.
    "The Copper Owls": _Artist(55, (9, 4), 0.3, -0.15, -0.25, _Voice(
        tract=0.93, slope=0.7, vibrato=0.1, vibrato_rate=6.5, breath=0.04,
        attack=0.008, release=0.03, jitter=0.008, shimmer=0.1, scoop=1.2)),
    # A dark, breathy mezzo: slow swells, long fades, slow wide vibrato.
    "Mira Vale": _Artist(64, (5, 10, 3), 0.5, 0.35, 0.3, _Voice(
        tract=1.1, slope=1.8, vibrato=0.45, vibrato_rate=4.8, breath=0.35,
        attack=0.08, release=0.2, jitter=0.003, shimmer=0.03, scoop=0.3)),
    # A low, straight-toned baritone with a long vocal tract.
    "Dusty Static": _Artist(50, (4, 11, 6), 0.2, -0.1, -0.1, _Voice(
        tract=0.86, slope=1.25, vibrato=0.04, vibrato_rate=4.5, breath=0.12,
        attack=0.015, release=0.05, jitter=0.006, shimmer=0.06, scoop=0.0)),
    # A warm alto in between, gently scooped, moderate vibrato.
    "Juniper Tide": _Artist(60, (2, 9, 0), 0.65, 0.15, 0.0, _Voice(
        tract=1.03, slope=1.35, vibrato=0.25, vibrato_rate=5.4, breath=0.15,
        attack=0.04, release=0.12, jitter=0.004, shimmer=0.05, scoop=0.5)),
}
_NEUTRAL_VOICE = _Voice(tract=1.0, slope=1.2, vibrato=0.2, vibrato_rate=5.5, breath=0.1,
                        attack=0.03, release=0.08, jitter=0.004, shimmer=0.04, scoop=0.3)

_ONSETS = ("b", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "y",
           "j", "z", "ch", "sh", "th", "st", "br", "gr", "pl", "fl", "tr", "dr", "sl", "cl")
_VOWELS = ("a", "e", "i", "o", "u", "ay", "ee", "oo", "ow", "ai")
_CODAS = ("", "", "", "", "n", "t", "s", "r", "l", "nd", "ng", "m", "k", "st")
_SMALL_WORDS = ("the", "and", "my", "you", "in", "on", "we", "oh", "to", "all", "so", "me")


@dataclass
class SynthSong:
    """One procedural song: audio ``[channels, T]`` float32 and its labels and timed lyrics."""

    audio: np.ndarray
    sample_rate: int
    artist: str
    genre: str
    lyrics: str
    lyrics_timing: list[tuple[float, float, str]]
    key: str = ""  # e.g. "A dorian"; handy for checks, not needed for training
    bpm: float = 0.0
    gain: float = 1.0  # what the raw mix was scaled by to peak at -1 dBFS (to compare renders)


def _midi_hz(midi: float) -> float:
    return 440.0 * 2.0 ** ((midi - 69.0) / 12.0)


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


def _envelope(n_gate: int, env: _Adsr, sr: int) -> np.ndarray:
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


def _tone(
    midi: float, seconds: float, wave: str, env: _Adsr, sr: int, tilt: float = 0.0,
    vibrato: float = 0.0, pluck_decay: float = 0.0,
) -> np.ndarray:
    """Render one note as additive synthesis (band-limited: harmonics above 0.45*sr dropped)."""
    n_gate = max(1, int(round(seconds * sr)))
    gain = _envelope(n_gate, env, sr)
    t = np.arange(gain.size, dtype=np.float64) / sr
    f0 = _midi_hz(midi)
    if vibrato > 0.0:
        freq = f0 * 2.0 ** (vibrato * np.sin(2 * np.pi * 5.5 * t) * np.minimum(t / 0.3, 1.0) / 12)
        phase = 2 * np.pi * np.cumsum(freq) / sr
    else:
        phase = 2 * np.pi * f0 * t
    amps = _harmonics(wave, tilt)
    n_partials = min(int(np.flatnonzero(amps)[-1]) + 1, int(0.45 * sr / f0))
    # sin(k x) by the Chebyshev recurrence: a multiply-add per partial instead of a sin.
    two_cos = 2.0 * np.cos(phase)
    prev, cur = np.zeros_like(phase), np.sin(phase)
    decay = np.exp(-t / pluck_decay) if pluck_decay > 0.0 else None
    weight = decay.copy() if decay is not None else None  # upper partials of a pluck die first
    out = np.zeros_like(t)
    for k in range(n_partials):
        if amps[k] != 0.0:
            out += amps[k] * (cur if weight is None else cur * weight)
        if weight is not None:
            weight *= decay
        prev, cur = cur, two_cos * cur - prev
    return out * gain


def _kick(sr: int) -> np.ndarray:
    t = np.arange(int(0.3 * sr)) / sr
    freq = 48.0 + 110.0 * np.exp(-t / 0.03)
    return np.sin(2 * np.pi * np.cumsum(freq) / sr) * np.exp(-t / 0.12)


def _snare(sr: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(int(0.25 * sr)) / sr
    noise = np.diff(rng.standard_normal(t.size + 1))  # first difference: a gentle high-pass
    body = 0.5 * np.sin(2 * np.pi * 190.0 * t) * np.exp(-t / 0.04)
    return (0.35 * noise * np.exp(-t / 0.06) + body)


def _hat(sr: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(int(0.06 * sr)) / sr
    noise = np.diff(rng.standard_normal(t.size + 2), n=2)  # second difference: brighter
    return 0.15 * noise * np.exp(-t / 0.015)


class _Mixer:
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

# ------------------------------------------------------------------------------ phonetics
# Formant targets (F1, F2, F3 in Hz) of an adult voice with a tract scale of 1.0, close to the
# classic Peterson-Barney averages; each artist's voice scales them by its ``tract``.
_VOWEL_FORMANTS: dict[str, tuple[float, float, float]] = {
    "IY": (270.0, 2290.0, 3010.0),  # ee
    "IH": (390.0, 1990.0, 2550.0),  # i
    "EY": (480.0, 2050.0, 2650.0),  # start of ay
    "EH": (530.0, 1840.0, 2480.0),  # e
    "AE": (660.0, 1720.0, 2410.0),  # start of ai
    "AA": (730.0, 1090.0, 2440.0),  # a
    "AO": (570.0, 840.0, 2410.0),  # o
    "UH": (440.0, 1020.0, 2240.0),  # u
    "UW": (300.0, 870.0, 2240.0),  # oo
}
# Fixed F4 and F5 round off the timbre above F3 (without them the cascade falls off too fast).
_HIGH_FORMANTS = (3400.0, 4500.0)
_BANDWIDTHS = (80.0, 100.0, 150.0, 250.0, 300.0)  # Hz, of F1..F5
# Orthographic vowels: single letters, then the digraphs (two targets = a gliding diphthong).
_LETTER_VOWELS = {"a": "AA", "e": "EH", "i": "IH", "o": "AO", "u": "UH", "y": "IY", "w": "UW"}
_NUCLEI: dict[str, tuple[str, ...]] = {
    "ee": ("IY",), "ea": ("IY",), "oo": ("UW",), "ou": ("UW",), "ay": ("EY", "IY"),
    "ey": ("EY", "IY"), "ai": ("AE", "IY"), "ow": ("AA", "UW"), "oy": ("AO", "IY"),
    "y": ("AA", "IY"),  # a lone y is sung as in "my"
}


@dataclass(frozen=True)
class _Consonant:
    kind: str  # fric, voiced_fric, aspirate, stop, voiced_stop, nasal, approximant
    dur: float  # nominal seconds; squeezed on short notes
    formants: tuple[float, float, float]  # murmur formants, or the locus vowels glide from
    amp: float = 0.0  # level of the voiced part (nasal, approximant, voiced fricative)
    cf: float = 0.0  # noise centre frequency (Hz): frication or the release burst
    bw: float = 0.0  # noise bandwidth (Hz)
    gain: float = 0.0  # noise level, relative to a sung "a"


_CONSONANTS: dict[str, _Consonant] = {
    "s": _Consonant("fric", 0.09, (320, 1700, 2600), cf=6200, bw=2400, gain=0.35),
    "sh": _Consonant("fric", 0.09, (300, 1900, 2500), cf=2800, bw=1400, gain=0.45),
    "f": _Consonant("fric", 0.08, (300, 1000, 2300), cf=5200, bw=5000, gain=0.14),
    "th": _Consonant("fric", 0.08, (320, 1500, 2600), cf=4300, bw=4500, gain=0.11),
    "h": _Consonant("aspirate", 0.06, (500, 1500, 2500), gain=0.3),
    "v": _Consonant("voiced_fric", 0.07, (280, 1100, 2300), amp=0.3, cf=4500, bw=5000,
                    gain=0.09),
    "z": _Consonant("voiced_fric", 0.08, (280, 1600, 2600), amp=0.3, cf=6000, bw=2500,
                    gain=0.22),
    "zh": _Consonant("voiced_fric", 0.08, (280, 1800, 2500), amp=0.3, cf=2700, bw=1400,
                     gain=0.28),
    "p": _Consonant("stop", 0.08, (300, 900, 2100), cf=800, bw=1600, gain=0.5),
    "t": _Consonant("stop", 0.08, (320, 1750, 2700), cf=4200, bw=3000, gain=0.6),
    "k": _Consonant("stop", 0.09, (320, 1950, 2250), cf=1900, bw=900, gain=0.6),
    "b": _Consonant("voiced_stop", 0.06, (250, 850, 2100), amp=0.08, cf=800, bw=1600, gain=0.25),
    "d": _Consonant("voiced_stop", 0.06, (280, 1700, 2650), amp=0.08, cf=3800, bw=3000,
                    gain=0.3),
    "g": _Consonant("voiced_stop", 0.07, (280, 1950, 2200), amp=0.08, cf=1900, bw=900, gain=0.3),
    "m": _Consonant("nasal", 0.08, (250, 1000, 2200), amp=0.35),
    "n": _Consonant("nasal", 0.08, (250, 1500, 2500), amp=0.35),
    "ng": _Consonant("nasal", 0.09, (250, 2100, 2700), amp=0.3),
    "l": _Consonant("approximant", 0.07, (360, 1300, 2900), amp=0.6),
    "r": _Consonant("approximant", 0.07, (320, 1100, 1450), amp=0.55),  # the low F3 of r
    "w": _Consonant("approximant", 0.06, (300, 650, 2150), amp=0.5),
    "y": _Consonant("approximant", 0.06, (260, 2100, 3000), amp=0.5),
}
# Spellings that are not one sound of the table: digraphs, affricates and letter stand-ins.
_SPELLINGS: dict[str, tuple[str, ...]] = {
    "ch": ("t", "sh"), "j": ("d", "zh"), "x": ("k", "s"), "qu": ("k", "w"), "c": ("k",),
    "q": ("k",), "ck": ("k",), "ph": ("f",), "wh": ("w",), "gh": ("h",),
}
_DIGRAPHS = ("ch", "sh", "th", "zh", "ng", "ck", "ph", "wh", "qu", "gh")


def _consonant_phones(cluster: str) -> list[str]:
    """The consonant sounds of a letter cluster; a doubled letter ("ll") is one sound."""
    phones: list[str] = []
    i = 0
    while i < len(cluster):
        key = cluster[i : i + 2] if cluster[i : i + 2] in _DIGRAPHS else cluster[i]
        i += len(key)
        for phone in _SPELLINGS.get(key, (key,)):
            if phone in _CONSONANTS and (not phones or phones[-1] != phone):
                phones.append(phone)
    return phones


def _split_syllable(syllable: str) -> tuple[list[str], str, list[str]]:
    """(onset consonants, vowel letters, coda consonants) of one syllable.

    The nucleus is the first run of a, e, i, o, u, extended by a y or w that closes it ("ay",
    "ow"); a syllable without those letters sings its y ("my"), or else hums on a neutral vowel.
    """
    s = "".join(ch for ch in syllable.lower() if "a" <= ch <= "z")
    first = next((i for i, ch in enumerate(s) if ch in "aeiou"), None)
    if first is None:
        first = next((i for i, ch in enumerate(s) if ch == "y" and i > 0), None)
    if first is None:
        return _consonant_phones(s), "", []
    end = first + 1
    while end < len(s) and (
        s[end] in "aeiou" or (s[end] in "wy" and (end + 1 == len(s) or s[end + 1] not in "aeiou"))
    ):
        end += 1
    return _consonant_phones(s[:first]), s[first:end], _consonant_phones(s[end:])


def vowel_formants(nucleus: str) -> tuple[tuple[float, float, float], ...]:
    """Formant targets (F1, F2, F3) in Hz that the vowel letters ``nucleus`` are sung with, for a
    vocal-tract scale of 1.0; two targets mean a diphthong gliding from the first to the second.
    """
    nucleus = nucleus.lower()
    if nucleus in _NUCLEI:
        names = _NUCLEI[nucleus]
    else:  # spell it out letter by letter, keeping the first two distinct sounds
        names = tuple(dict.fromkeys(_LETTER_VOWELS[c] for c in nucleus if c in _LETTER_VOWELS))
        names = names[:2] or ("UH",)
    return tuple(_VOWEL_FORMANTS[name] for name in names)


@functools.lru_cache(maxsize=4096)
def _resonator(freq: float, bandwidth: float, sr: int) -> tuple[float, float]:
    """Feedback coefficients (a1, a2) of a two-pole resonator; unit gain at 0 Hz is (1+a1+a2)."""
    freq = min(freq, 0.47 * sr)
    r = math.exp(-math.pi * bandwidth / sr)
    return -2.0 * r * math.cos(2.0 * math.pi * freq / sr), r * r


def _formant_gain(
    freqs: np.ndarray, formants: Sequence[np.ndarray | float], sr: int
) -> np.ndarray:
    """Magnitude response of the formant cascade at ``freqs`` (broadcast with each formant).

    Each stage is normalised to unit gain at 0 Hz, so, as in a real vocal tract, the levels of the
    formant peaks follow from their frequencies and bandwidths rather than being set by hand.
    """
    w = 2.0 * np.pi * freqs / sr
    cw, sw, c2w, s2w = np.cos(w), np.sin(w), np.cos(2.0 * w), np.sin(2.0 * w)
    gain = np.ones(np.broadcast_shapes(freqs.shape, *(np.shape(f) for f in formants)))
    for formant, bandwidth in zip(formants, _BANDWIDTHS, strict=False):
        f = np.minimum(np.asarray(formant, dtype=np.float64), 0.47 * sr)
        r = math.exp(-math.pi * bandwidth / sr)
        a1, a2 = -2.0 * r * np.cos(2.0 * np.pi * f / sr), r * r
        re = 1.0 + a1 * cw + a2 * c2w
        im = a1 * sw + a2 * s2w
        gain = gain * ((1.0 + a1 + a2) / np.sqrt(re * re + im * im))
    return gain


def _filtered_noise(
    rng: np.random.Generator, n: int, sr: int, bands: Sequence[tuple[float, float]],
    highpass: bool = False,
) -> np.ndarray:
    """``n`` samples of white noise through a cascade of resonators ``(freq, bw)``, unit RMS;
    ``highpass`` adds two first differences (+12 dB/octave) to clear the lows."""
    from scipy.signal import lfilter

    warm = 64  # let the filters settle before the kept part starts
    x = rng.standard_normal(n + warm + 2)
    x = np.diff(x, n=2) if highpass else x[2:]
    a = np.ones(1)
    for freq, bandwidth in bands:
        a1, a2 = _resonator(float(freq), float(bandwidth), sr)
        a = np.convolve(a, [1.0, a1, a2])
    y = lfilter([1.0], a, x)[warm:]
    return y / (float(np.sqrt(np.mean(y * y))) + 1e-12)


@dataclass(frozen=True)
class _Noise:
    """A noise event of a syllable: frication, a plosive burst or aspiration."""

    start: float  # seconds from the note onset
    end: float
    gain: float
    envelope: str  # "ramp" (fricative: fades in and out), "burst" (fast decay), "fade" (linear)
    bands: tuple[tuple[float, float], ...]  # (centre, bandwidth) in Hz at a tract scale of 1.0
    highpass: bool = False  # frication has next to nothing below its band


_Key = tuple[float, tuple[float, float, float], float]  # (time, formants, voiced amplitude)


def _vowel_bands(formants: tuple[float, float, float]) -> tuple[tuple[float, float], ...]:
    """Resonances that make noise sound like breath through the mouth shape of ``formants``."""
    return tuple((f, 1.5 * b) for f, b in zip(formants, _BANDWIDTHS, strict=False))


def _consonant_plan(
    c: _Consonant, t: float, d: float, vowel: tuple[float, float, float], onset: bool
) -> tuple[list[_Key], list[_Noise]]:
    """Keyframes and noise of consonant ``c`` sung from ``t`` for ``d`` seconds.

    At the onset the voicing then glides from the consonant's formants into ``vowel``; in the
    coda it glides out of ``vowel`` (the formants the previous keyframe left) into the consonant.
    """
    f, band = c.formants, ((c.cf, c.bw),)
    hiss = (c.cf, c.bw), (c.cf, c.bw)  # two resonators in cascade: a band with steeper skirts
    if c.kind in ("nasal", "approximant"):
        keys = [(t, f, c.amp), (t + 0.75 * d, f, c.amp)] if onset else [
            (t + 0.4 * d, f, c.amp), (t + d, f, 0.8 * c.amp)]
        return keys, []
    if c.kind == "voiced_fric":
        keys = [(t, f, c.amp), (t + 0.8 * d, f, c.amp)] if onset else [
            (t + 0.3 * d, f, c.amp), (t + d, f, 0.5 * c.amp)]
        return keys, [_Noise(t + (0.0 if onset else 0.2 * d), t + d, c.gain, "ramp", hiss, True)]
    if c.kind == "fric":
        keys = [(t, f, 0.0), (t + d, f, 0.0)] if onset else [(t + 0.15 * d, f, 0.0)]
        return keys, [_Noise(t + (0.0 if onset else 0.1 * d), t + d, c.gain, "ramp", hiss, True)]
    if c.kind == "aspirate":
        keys = [(t, vowel, 0.0), (t + d, vowel, 0.0)] if onset else [(t + 0.3 * d, vowel, 0.0)]
        return keys, [_Noise(t, t + d, c.gain, "ramp" if onset else "fade", _vowel_bands(vowel))]
    if c.kind == "stop":  # closure (silence), release burst, and at the onset aspiration
        burst = _Noise(t + 0.55 * d, t + 0.7 * d, c.gain, "burst", band)
        if onset:
            puff = _Noise(t + 0.65 * d, t + d, 0.35 * c.gain, "fade", _vowel_bands(vowel))
            return [(t, f, 0.0), (t + d, f, 0.0)], [burst, puff]
        return [(t + 0.12 * d, f, 0.0), (t + d, f, 0.0)], [burst]
    if c.kind == "voiced_stop":  # a quiet voice bar through the closure, then the burst
        burst = _Noise(t + 0.6 * d, t + 0.75 * d, c.gain, "burst", band)
        if onset:
            return [(t, f, c.amp), (t + 0.6 * d, f, c.amp), (t + 0.75 * d, f, 0.4)], [burst]
        return [(t + 0.15 * d, f, c.amp), (t + 0.6 * d, f, c.amp), (t + 0.65 * d, f, 0.0)], [
            burst]
    raise ValueError(f"unknown consonant kind {c.kind!r}")  # pragma: no cover - table only


def _syllable_plan(syllable: str, dur: float) -> tuple[list[_Key], list[_Noise]]:
    """Where each sound of ``syllable`` goes in a note of ``dur`` seconds.

    Onset consonants start at the note onset and codas end with the note, squeezed so that the
    vowel always keeps at least half of the note.
    """
    onset, nucleus, coda = _split_syllable(syllable)
    vowels = vowel_formants(nucleus)
    first, last = vowels[0], vowels[-1]
    total = sum(_CONSONANTS[p].dur for p in onset + coda)
    squeeze = min(1.0, 0.5 * dur / total) if total else 1.0
    keys: list[_Key] = []
    noises: list[_Noise] = []

    def place(
        phones: Sequence[str], t: float, vowel: tuple[float, float, float], is_onset: bool
    ) -> float:
        """Plan consonants one after another from time t; return where they end."""
        for phone in phones:
            c = _CONSONANTS[phone]
            k, nz = _consonant_plan(c, t, c.dur * squeeze, vowel, onset=is_onset)
            keys.extend(k)
            noises.extend(nz)
            t += c.dur * squeeze
        return t

    t_vowel = place(onset, 0.0, first, True)
    t_coda = dur - sum(_CONSONANTS[p].dur for p in coda) * squeeze
    span = t_coda - t_vowel
    keys.append((t_vowel + (min(0.04, 0.25 * span) if onset else 0.0), first, 1.0))
    if len(vowels) > 1:  # diphthong: hold the first target, glide to the second
        keys += [(t_vowel + 0.35 * span, first, 1.0), (t_vowel + 0.8 * span, last, 1.0)]
    keys.append((t_coda, last, 1.0))
    place(coda, t_coda, last, False)
    keys.append((dur, keys[-1][1], 0.0))
    return keys, noises


def _smooth_noise(rng: np.random.Generator, n: int, width: int) -> np.ndarray:
    """Unit-RMS Gaussian noise low-passed by a Hann window of ``width`` samples."""
    window = np.hanning(width + 2)[1:-1]
    x = np.convolve(rng.standard_normal(n + width - 1), window, mode="valid")
    return x / math.sqrt(float((window**2).sum()))


def _sing(
    syllable: str, midi: float, seconds: float, sr: int, voice: _Voice, rng: np.random.Generator,
    steady: bool = False,
) -> np.ndarray:
    """Render one sung syllable, exactly ``round(seconds * sr)`` samples, silent at both ends.

    A sung "a" has an RMS of about 1. The voiced part is additive: each harmonic of the (vibrato,
    scoop, jitter) pitch track gets the source amplitude ``k**-slope`` times the formant cascade's
    gain at its frequency, updated every 2.5 ms, which is the same as filtering a glottal pulse
    train with time-varying resonators but exact, band-limited and cheap.
    """
    n = max(1, int(round(seconds * sr)))
    keys, noises = _syllable_plan(syllable, n / sr)
    hop = max(1, sr // 400)
    n_frames = n // hop + 2
    tf = np.arange(n_frames) * (hop / sr)
    kt = np.array([k[0] for k in keys])
    kt = np.maximum.accumulate(kt) + np.arange(kt.size) * 1e-7  # strictly increasing for interp
    kf = np.array([k[1] for k in keys]) * voice.tract
    formants = [np.interp(tf, kt, kf[:, i]) for i in range(3)]
    amp = np.interp(tf, kt, np.array([k[2] for k in keys]))

    voiced = np.flatnonzero(amp > 1e-3)
    if voiced.size:  # the singer's own attack and release over the voiced stretch
        t0, t1 = tf[voiced[0]], tf[voiced[-1]]
        span = max(t1 - t0, 1e-3)
        attack = max(min(voice.attack, 0.3 * span), 1e-3)
        release = max(min(voice.release, 0.4 * span), 1e-3)
        amp = amp * np.clip((tf - t0) / attack, 0.0, 1.0) * np.clip((t1 - tf) / release, 0.0, 1.0)
    semis = np.zeros(n_frames)
    if not steady:
        semis -= voice.scoop * np.exp(-tf / 0.06)
        rate = voice.vibrato_rate * rng.uniform(0.94, 1.06)
        swell = np.clip((tf - 0.12) / 0.25, 0.0, 1.0)  # vibrato sets in on held notes only
        semis += voice.vibrato * swell * np.sin(2 * np.pi * rate * tf + rng.uniform(0, 2 * np.pi))
        semis += 12.0 * math.log2(1.0 + voice.jitter) * _smooth_noise(rng, n_frames, 8)
        amp = amp * np.maximum(1.0 + voice.shimmer * _smooth_noise(rng, n_frames, 6), 0.0)
    f0 = _midi_hz(midi) * 2.0 ** (semis / 12.0)

    n_harm = max(1, int(min(0.45 * sr, 6000.0) / float(f0.max())))
    k = np.arange(1, n_harm + 1, dtype=np.float64)
    source = k ** (-voice.slope)
    high = [f * voice.tract for f in _HIGH_FORMANTS]
    reference = source * _formant_gain(
        k * _midi_hz(midi), [f * voice.tract for f in _VOWEL_FORMANTS["AA"]] + high, sr)
    norm = math.sqrt(float((reference**2).sum()) / 2.0)
    harm = source[:, None] * _formant_gain(k[:, None] * f0, [*formants, *high], sr)
    harm *= amp / norm

    s = np.arange(n)
    i0 = s // hop
    w = (s - i0 * hop) / hop
    f0_s = f0[i0] + (f0[i0 + 1] - f0[i0]) * w
    phase = (2.0 * np.pi / sr) * np.cumsum(f0_s)
    # sin(k x) by the Chebyshev recurrence; each harmonic's amplitude interpolated per sample.
    two_cos = 2.0 * np.cos(phase)
    prev, cur = np.zeros(n), np.sin(phase)
    step = np.diff(harm, axis=1)
    loud = harm.max(axis=1) > 1e-4 * max(float(harm.max()), 1e-12)
    out = np.zeros(n)
    for j in range(n_harm):
        if loud[j]:
            out += (harm[j, i0] + step[j, i0] * w) * cur
        prev, cur = cur, two_cos * cur - prev

    if not steady and voice.breath > 0.0 and voiced.size:  # aspiration riding on the voicing
        weights = amp / max(float(amp.sum()), 1e-12)
        mouth = tuple(float((f * weights).sum()) / voice.tract for f in formants)
        breath = np.diff(_filtered_noise(rng, n + 1, sr, _vowel_bands(mouth)))  # brighter
        amp_s = amp[i0] + (amp[i0 + 1] - amp[i0]) * w
        out += (0.5 * voice.breath) * breath * amp_s
    for event in noises:
        a, b = int(round(event.start * sr)), min(n, int(round(event.end * sr)))
        if b - a < 2:
            continue
        bands = tuple((f * voice.tract, bw) for f, bw in event.bands)
        noise = _filtered_noise(rng, b - a, sr, bands, highpass=event.highpass)
        t = np.arange(b - a) / sr
        if event.envelope == "burst":
            env = np.exp(-t / max(0.003, (b - a) / sr / 3.0))
        elif event.envelope == "fade":
            env = 1.0 - t / t[-1]
        else:
            ramp = max(1, min((b - a) // 3, int(0.015 * sr)))
            env = np.minimum(1.0, np.minimum(np.arange(b - a), np.arange(b - a)[::-1]) / ramp)
        out[a:b] += event.gain * noise * env
    return out


def sing_syllable(
    syllable: str,
    midi: float,
    seconds: float,
    sample_rate: int = 22050,
    artist: str | None = None,
    seed: int = 0,
    steady: bool = False,
    tract: float | None = None,
) -> np.ndarray:
    """One syllable sung on MIDI note ``midi`` by ``artist``'s voice (a neutral one if None).

    For checking and hearing the voice on its own: float64 mono, not normalised (a sung "a" has an
    RMS near 1). ``steady`` drops vibrato, scoop, jitter, shimmer and breath so that the spectrum
    shows the bare source-filter result; ``tract`` overrides the voice's formant scale.
    """
    _check_choice("artist", artist, ARTISTS)
    voice = _ARTIST_SPECS[artist].voice if artist else _NEUTRAL_VOICE
    if tract is not None:
        voice = replace(voice, tract=float(tract))
    return _sing(syllable, midi, seconds, int(sample_rate), voice, np.random.default_rng(seed),
                 steady=steady)


def _word(rng: np.random.Generator, n_syllables: int) -> list[str]:
    """A pseudo-English word, split into the syllables that will be sung on separate notes."""
    if n_syllables == 1 and rng.random() < 0.3:
        return [str(rng.choice(_SMALL_WORDS))]
    sylls = []
    for i in range(n_syllables):
        coda = str(rng.choice(_CODAS)) if i == n_syllables - 1 else ""
        sylls.append(str(rng.choice(_ONSETS)) + str(rng.choice(_VOWELS)) + coda)
    return sylls


def _check_choice(kind: str, value: str | None, choices: Sequence[str]) -> None:
    if value is not None and value not in choices:
        raise ValueError(f"unknown {kind} {value!r}; choose one of {', '.join(choices)}")


def synth_song(
    seed: int,
    seconds: float,
    sample_rate: int = 22050,
    artist: str | None = None,
    genre: str | None = None,
    channels: int = 1,
    voice: bool = True,
    backing: bool = True,
) -> SynthSong:
    """Generate one song of exactly ``round(seconds * sample_rate)`` samples.

    ``artist``/``genre`` default to choices drawn from the seed. The same arguments always give
    the same audio and lyrics; the random draws happen in a fixed order so fixing the artist or
    genre does not reshuffle the rest of the song. ``voice=False`` leaves the singer out and
    ``backing=False`` everything else; neither changes any other part, so ``audio / gain`` of two
    such renders subtract to the part left out.
    """
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"seconds must be a positive number, got {seconds}")
    if int(sample_rate) != sample_rate or sample_rate < 4000:
        raise ValueError(f"sample_rate must be an integer >= 4000, got {sample_rate}")
    if channels not in (1, 2):
        raise ValueError(f"channels must be 1 or 2, got {channels}")
    if not (voice or backing):
        raise ValueError("voice and backing are both off: there would be nothing to hear")
    _check_choice("artist", artist, ARTISTS)
    _check_choice("genre", genre, GENRES)
    sr = int(sample_rate)
    rng = np.random.default_rng(seed)
    drawn_artist, drawn_genre = str(rng.choice(ARTISTS)), str(rng.choice(GENRES))
    artist = artist or drawn_artist
    genre = genre or drawn_genre
    g, a = _GENRE_SPECS[genre], _ARTIST_SPECS[artist]
    # The voice's micro-variation (vibrato phase, jitter, breath, consonant noise) has its own
    # generator, so rendering it or not leaves every other draw of the song where it was.
    voice_rng = np.random.default_rng(int(rng.integers(2**63)))

    mode = g.modes[0] if rng.random() < a.p_bright else g.modes[1]
    tonic = int(rng.choice(a.tonics))
    bpm = float(round(rng.uniform(*g.bpm)))
    progression = _PROGRESSIONS[mode][int(rng.integers(len(_PROGRESSIONS[mode])))]
    scale = _SCALES[mode]
    beat = 60.0 / bpm
    bar = 4 * beat
    n_bars = int(math.ceil(seconds / bar))

    def degree_midi(base: int, degree: int) -> int:
        return base + 12 * (degree // 7) + scale[degree % 7]

    def root_near(center: int) -> int:  # tonic at or just below ``center``
        return center - ((center - tonic) % 12)

    # The tune's tonic is the one nearest the singer's centre, so the register stays the artist's.
    lead_base = a.center + (tonic - a.center + 6) % 12 - 6
    pad_base, bass_base = root_near(57), root_near(40)
    n_total = int(round(seconds * sr))
    mix = _Mixer(n_total, channels)  # tails past the end are cut; echoes only look back
    voice_lvl, pad_lvl, bass_lvl = g.levels
    kick, snare, hat = 0.6 * _kick(sr), _snare(sr, rng), _hat(sr, rng)
    pluck = 0.25 if g.pad == "pluck" else 0.0
    rendered: dict[tuple, np.ndarray] = {}

    def tone(
        start: float, midi: int, secs: float, wave: str, env: _Adsr, **kw: float
    ) -> np.ndarray:
        """Memoised _tone: progressions repeat, so most notes are rendered once per song."""
        if start >= seconds or not backing:
            return np.zeros(0)  # nothing to hear, but the random draws around it still ran
        key = (midi, round(secs * sr), wave, env, tuple(sorted(kw.items())))
        if key not in rendered:
            rendered[key] = _tone(midi, secs, wave, env, sr, **kw)
        return rendered[key]

    words: list[tuple[float, float, str]] = []
    lines: dict[int, list[str]] = {}  # phrase index -> words sung in it
    pending: list[str] = []  # syllables of the current word still to be sung
    sung: list[str] = []  # syllables of the current word already sung
    word_span = [0.0, 0.0]

    def close_word(phrase: int) -> None:
        if sung:
            word = "".join(sung)
            words.append((round(word_span[0], 3), round(min(word_span[1], seconds), 3), word))
            lines.setdefault(phrase, []).append(word)
        sung.clear()
        pending.clear()

    degree = progression[0] + 2 * int(rng.integers(3))
    for b in range(n_bars):
        t_bar = b * bar
        chord = progression[b % len(progression)]
        triad = [chord, chord + 2, chord + 4]
        # Accompaniment in the genre's pattern, its triad voices spread across the stereo field.
        for beat_pos, length, voices in g.pad_pattern:
            start = t_bar + beat_pos * beat
            for v in voices:
                note = tone(start, degree_midi(pad_base, triad[v]), length * beat, g.pad,
                            g.pad_env, tilt=a.tilt, pluck_decay=pluck)
                mix.add(note, int(start * sr), pan=(v - 1) * 0.6, gain=pad_lvl)
        # Bass.
        for beat_pos, length, offs in g.bass_pattern:
            midi, start = degree_midi(bass_base, chord + offs), t_bar + beat_pos * beat
            note = tone(start, midi, length * beat, g.bass, g.bass_env, tilt=a.tilt)
            mix.add(note, int(start * sr), gain=bass_lvl)
        # Drums, with a little velocity variation.
        for hits, sound, pan in ((g.kick, kick, 0.0), (g.snare, snare, 0.1), (g.hat, hat, 0.4)):
            for beat_pos in hits:
                vel = g.drum_gain * rng.uniform(0.8, 1.0)
                if backing:
                    mix.add(sound, int((t_bar + beat_pos * beat) * sr), pan=pan, gain=vel)
        # Melody: phrases of three sung bars and one instrumental bar; a syllable per note.
        if b % 4 == 3:
            continue
        pos = 0.0
        for length in g.rhythms[int(rng.integers(len(g.rhythms)))]:
            step = int(rng.choice([-2, -1, -1, 0, 1, 1, 2, 3, -3]))
            degree = int(np.clip(degree + step, -4, 5))  # a tenth around the tonic: singable
            if pos == int(pos) and rng.random() < 0.7:  # strong beats lean on chord tones
                degree = min((d + 7 * o for d in triad for o in (-1, 0, 1) if -4 <= d + 7 * o <= 5),
                             key=lambda d: abs(d - degree))
            start = t_bar + pos * beat
            gate = length * beat * 0.9
            midi = degree_midi(lead_base, degree)
            vel = rng.uniform(0.85, 1.0)
            pos += length
            if not pending:
                pending.extend(_word(rng, int(rng.choice([1, 1, 1, 2, 2]))))
                word_span[0] = start
            if start < seconds:  # a note starting after the end is not heard; nor is its word
                syllable = pending.pop(0)
                sung.append(syllable)
                word_span[1] = start + gate
                if voice:
                    mix.add(_sing(syllable, midi, gate, sr, a.voice, voice_rng), int(start * sr),
                            pan=a.pan, gain=voice_lvl * vel)
                if g.double > 0.0:
                    note = tone(start, midi, gate, g.lead, g.lead_env, tilt=a.tilt)
                    mix.add(note, int(start * sr), pan=-a.pan, gain=g.double * vel)
            if not pending:
                close_word(b // 4)
        close_word(b // 4)  # no word runs across a bar line

    audio = mix.buf
    if g.echo > 0.0:  # beat-synced echo (dotted eighth), a few decaying taps
        delay = int(0.75 * beat * sr)
        dry = audio.copy()
        for tap in range(1, 5):
            shift = tap * delay
            if shift >= audio.shape[1]:
                break
            gain = g.echo**tap
            if channels == 2:  # ping-pong between the sides
                audio[tap % 2, shift:] += gain * 0.5 * (dry[0, :-shift] + dry[1, :-shift])
            else:
                audio[0, shift:] += gain * dry[0, :-shift]
    audio = audio[:, :n_total]
    fade_in, fade_out = min(int(0.005 * sr), n_total), min(int(0.02 * sr), n_total)
    audio[:, :fade_in] *= np.linspace(0.0, 1.0, fade_in)
    audio[:, n_total - fade_out :] *= np.linspace(1.0, 0.0, fade_out)
    peak = float(np.abs(audio).max()) if audio.size else 0.0
    scale_to_peak = _PEAK / peak if peak > 0.0 else 1.0
    lyrics = "\n".join(" ".join(lines[k]) for k in sorted(lines))
    return SynthSong(
        audio=(audio * scale_to_peak).astype(np.float32),
        sample_rate=sr,
        artist=artist,
        genre=genre,
        lyrics=lyrics,
        lyrics_timing=words,
        key=f"{_NOTE_NAMES[tonic]} {mode}",
        bpm=bpm,
        gain=scale_to_peak,
    )


def write_synth_dataset(
    out_dir: Path,
    n_songs: int,
    seconds: float,
    sample_rate: int = 22050,
    seed: int = 0,
    fmt: str = "flac",
    channels: int = 1,
) -> Path:
    """Write ``n_songs`` songs plus ``metadata.csv`` and ``manifest.jsonl``; return the manifest.

    Genres cycle through :data:`GENRES` and artists through :data:`ARTISTS` (offset by ``seed``),
    so any ``n_songs >= len(GENRES)`` covers every genre, and with 4 genres and 5 artists the
    pairings vary. Each song's own seed is derived from ``(seed, index)``.
    """
    from jukelite.audio import save_audio
    from jukelite.data.manifest import ManifestEntry, write_manifest
    from jukelite.fileio import write_text_atomic

    fmt = fmt.lower().lstrip(".")
    if fmt not in ("flac", "wav"):
        raise ValueError(f"fmt must be 'flac' or 'wav', got {fmt!r}")
    if n_songs < 1:
        raise ValueError(f"n_songs must be >= 1, got {n_songs}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    entries = []
    table = io.StringIO()
    writer = csv.writer(table, lineterminator="\n")
    writer.writerow(["file", "artist", "genre", "lyrics"])
    for i in range(n_songs):
        song_seed = int(np.random.SeedSequence([seed, i]).generate_state(1)[0])
        song = synth_song(
            song_seed, seconds, sample_rate,
            artist=ARTISTS[(seed + i) % len(ARTISTS)],
            genre=GENRES[(seed + i) % len(GENRES)],
            channels=channels,
        )
        name = f"song_{i:03d}.{fmt}"
        save_audio(out_dir / name, song.audio, sample_rate)
        writer.writerow([name, song.artist, ";".join([song.genre]), song.lyrics])
        entries.append(ManifestEntry(
            path=Path(os.path.abspath(out_dir / name)),
            artist=song.artist,
            genres=[song.genre],
            lyrics=song.lyrics,
            lyrics_timing=[tuple(w) for w in song.lyrics_timing],
            split=None,
            duration=song.audio.shape[1] / sample_rate,
            sample_rate=sample_rate,
            channels=channels,
            extra={"key": song.key, "bpm": song.bpm, "seed": song_seed},
        ))
    write_text_atomic(out_dir / "metadata.csv", table.getvalue())
    manifest = out_dir / "manifest.jsonl"
    write_manifest(entries, manifest)
    return manifest
