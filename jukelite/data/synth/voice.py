"""The singing voice of a demo song: phonetics, formant filters and the artists who sing.

Syllables are split into onset consonants, a vowel nucleus and coda consonants, and each sound is
planned as formant keyframes and noise events (frication, bursts, aspiration). :func:`sing` renders
that plan with a source-filter model: a glottal harmonic series at the note's pitch (with the
singer's spectral tilt, vibrato, jitter, shimmer and breath noise) shaped by a cascade of
two-pole formant resonators evaluated at each harmonic. The artists live here too: their voices
(vocal-tract length, tilt, vibrato, breathiness, attack, release) are what sets them apart, along
with the register, key preference and stereo position the song takes from them.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from jukelite.data.synth.instruments import sine_partials
from jukelite.data.synth.score import check_choice, midi_hz

ARTISTS: tuple[str, ...] = (
    "Nova Lark",
    "The Copper Owls",
    "Mira Vale",
    "Dusty Static",
    "Juniper Tide",
)


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


ARTIST_SPECS: dict[str, _Artist] = {
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


def sing(
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
    f0 = midi_hz(midi) * 2.0 ** (semis / 12.0)

    n_harm = max(1, int(min(0.45 * sr, 6000.0) / float(f0.max())))
    k = np.arange(1, n_harm + 1, dtype=np.float64)
    source = k ** (-voice.slope)
    high = [f * voice.tract for f in _HIGH_FORMANTS]
    reference = source * _formant_gain(
        k * midi_hz(midi), [f * voice.tract for f in _VOWEL_FORMANTS["AA"]] + high, sr)
    norm = math.sqrt(float((reference**2).sum()) / 2.0)
    harm = source[:, None] * _formant_gain(k[:, None] * f0, [*formants, *high], sr)
    harm *= amp / norm

    s = np.arange(n)
    i0 = s // hop
    w = (s - i0 * hop) / hop
    f0_s = f0[i0] + (f0[i0 + 1] - f0[i0]) * w
    phase = (2.0 * np.pi / sr) * np.cumsum(f0_s)
    # Each harmonic's amplitude interpolated per sample.
    step = np.diff(harm, axis=1)
    loud = harm.max(axis=1) > 1e-4 * max(float(harm.max()), 1e-12)
    out = np.zeros(n)
    for j, partial in enumerate(sine_partials(phase, n_harm)):
        if loud[j]:
            out += (harm[j, i0] + step[j, i0] * w) * partial

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
    check_choice("artist", artist, ARTISTS)
    voice = ARTIST_SPECS[artist].voice if artist else _NEUTRAL_VOICE
    if tract is not None:
        voice = replace(voice, tract=float(tract))
    return sing(syllable, midi, seconds, int(sample_rate), voice, np.random.default_rng(seed),
                 steady=steady)


