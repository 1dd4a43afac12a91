"""Procedural demo songs, so tests, the tiny recipe and the demo need no downloads.

The songs are small but musically structured, so a model trained on them has something to learn
that labels and lyrics actually predict: each song has a key and a tempo, a repeating chord
progression (sustained triads with ADSR envelopes), a bass line, a melody on top and, for most
genres, drums on the beat. The *genre* decides the sound (waveforms, tempo, envelopes, rhythm,
drums) and the *artist* a consistent register, key preference, brightness and vibrato. Every
melody note carries one syllable of pseudo-English lyrics, so word timings are exact.

Everything is a deterministic function of the seed (one ``numpy.random.Generator``).
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
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
_SCALES = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10)}
# Progressions as 0-based scale degrees, one chord per bar.
_PROGRESSIONS = {
    "major": ((0, 4, 5, 3), (0, 5, 3, 4), (0, 3, 4, 0), (5, 3, 0, 4)),
    "minor": ((0, 5, 2, 6), (0, 3, 4, 0), (0, 6, 5, 6), (0, 5, 3, 4)),
}


@dataclass(frozen=True)
class _Adsr:
    attack: float
    decay: float
    sustain: float
    release: float


@dataclass(frozen=True)
class _Genre:
    bpm: tuple[float, float]
    lead: str  # waveform names, see _harmonics
    pad: str
    bass: str
    lead_env: _Adsr
    pad_env: _Adsr
    bass_env: _Adsr
    rhythms: tuple[tuple[float, ...], ...]  # melody bar patterns, note lengths in beats
    bass_pattern: tuple[tuple[float, float, int], ...]  # (beat, length, degree offset in triad)
    kick: tuple[float, ...]  # beats within the bar
    snare: tuple[float, ...]
    hat: tuple[float, ...]
    drum_gain: float
    echo: float  # feedback gain of the beat-synced echo (0 = dry)
    levels: tuple[float, float, float]  # lead, pad, bass


_EIGHTHS = tuple(x / 2 for x in range(8))
_GENRE_SPECS: dict[str, _Genre] = {
    "chiptune": _Genre(
        bpm=(140.0, 170.0), lead="pulse25", pad="square", bass="triangle",
        lead_env=_Adsr(0.004, 0.05, 0.7, 0.03),
        pad_env=_Adsr(0.01, 0.1, 0.5, 0.05),
        bass_env=_Adsr(0.004, 0.03, 0.8, 0.02),
        rhythms=((0.5,) * 8, (0.25, 0.25, 0.5) * 2 + (1.0, 1.0), (1.0, 0.5, 0.5, 1.0, 1.0),
                 (0.5, 0.5, 0.25, 0.25, 0.5, 1.0, 1.0)),
        bass_pattern=tuple((b, 0.45, 0 if i % 2 == 0 else 2) for i, b in enumerate(_EIGHTHS)),
        kick=(0.0, 2.0), snare=(1.0, 3.0), hat=_EIGHTHS, drum_gain=0.45, echo=0.0,
        levels=(0.35, 0.08, 0.25),
    ),
    "ambient": _Genre(
        bpm=(70.0, 90.0), lead="sine", pad="sine2", bass="sine",
        lead_env=_Adsr(0.15, 0.3, 0.8, 0.6),
        pad_env=_Adsr(0.9, 0.5, 0.8, 1.5),
        bass_env=_Adsr(0.4, 0.5, 0.9, 1.0),
        rhythms=((2.0, 2.0), (1.0, 1.0, 2.0), (2.0, 1.0, 1.0), (3.0, 1.0)),
        bass_pattern=((0.0, 4.0, 0),),
        kick=(), snare=(), hat=(), drum_gain=0.0, echo=0.45,
        levels=(0.35, 0.14, 0.22),
    ),
    "rock": _Genre(
        bpm=(100.0, 135.0), lead="saw", pad="saw", bass="saw_dark",
        lead_env=_Adsr(0.01, 0.1, 0.75, 0.08),
        pad_env=_Adsr(0.02, 0.3, 0.6, 0.15),
        bass_env=_Adsr(0.005, 0.08, 0.8, 0.05),
        rhythms=((1.0, 1.0, 1.0, 1.0), (0.5, 0.5, 1.0, 0.5, 0.5, 1.0), (1.5, 0.5, 1.0, 1.0),
                 (1.0, 0.5, 0.5, 2.0)),
        bass_pattern=tuple((b, 0.45, 0) for b in _EIGHTHS),
        kick=(0.0, 2.0, 2.5), snare=(1.0, 3.0), hat=_EIGHTHS, drum_gain=0.55, echo=0.15,
        levels=(0.35, 0.09, 0.25),
    ),
    "folk": _Genre(
        bpm=(85.0, 110.0), lead="triangle", pad="pluck", bass="triangle",
        lead_env=_Adsr(0.03, 0.15, 0.7, 0.15),
        pad_env=_Adsr(0.005, 1.2, 0.0, 0.3),
        bass_env=_Adsr(0.01, 0.6, 0.3, 0.2),
        rhythms=((1.0, 1.0, 2.0), (1.0, 0.5, 0.5, 1.0, 1.0), (2.0, 1.0, 1.0), (1.5, 0.5, 2.0)),
        bass_pattern=((0.0, 1.8, 0), (2.0, 1.8, 2)),
        kick=(0.0, 2.0), snare=(), hat=_EIGHTHS, drum_gain=0.25, echo=0.2,
        levels=(0.35, 0.15, 0.25),
    ),
}


@dataclass(frozen=True)
class _Artist:
    center: int  # MIDI note the melody sits around
    tonics: tuple[int, ...]  # preferred key roots (pitch classes)
    p_major: float
    tilt: float  # harmonic roll-off exponent: > 0 darker, < 0 brighter
    vibrato: float  # depth in semitones
    pan: float  # melody position, -1 (left) .. 1 (right)


_ARTIST_SPECS: dict[str, _Artist] = {
    "Nova Lark": _Artist(72, (0, 7, 2), 0.85, 0.0, 0.15, 0.15),
    "The Copper Owls": _Artist(64, (9, 4), 0.3, -0.15, 0.05, -0.25),
    "Mira Vale": _Artist(69, (5, 10, 3), 0.5, 0.35, 0.25, 0.3),
    "Dusty Static": _Artist(60, (4, 11, 6), 0.2, -0.1, 0.0, -0.1),
    "Juniper Tide": _Artist(67, (2, 9, 0), 0.65, 0.15, 0.1, 0.0),
}

_ONSETS = ("b", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "y",
           "ch", "sh", "th", "st", "br", "gr", "pl", "fl")
_VOWELS = ("a", "e", "i", "o", "u", "ay", "ee", "oo", "ow", "ai")
_CODAS = ("", "", "", "", "n", "t", "s", "r", "l", "nd", "ng", "m")
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
    key: str = ""  # e.g. "A minor"; handy for checks, not needed for training
    bpm: float = 0.0


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
) -> SynthSong:
    """Generate one song of exactly ``round(seconds * sample_rate)`` samples.

    ``artist``/``genre`` default to choices drawn from the seed. The same arguments always give
    the same audio and lyrics; the random draws happen in a fixed order so fixing the artist or
    genre does not reshuffle the rest of the song.
    """
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"seconds must be a positive number, got {seconds}")
    if int(sample_rate) != sample_rate or sample_rate < 4000:
        raise ValueError(f"sample_rate must be an integer >= 4000, got {sample_rate}")
    if channels not in (1, 2):
        raise ValueError(f"channels must be 1 or 2, got {channels}")
    _check_choice("artist", artist, ARTISTS)
    _check_choice("genre", genre, GENRES)
    sr = int(sample_rate)
    rng = np.random.default_rng(seed)
    drawn_artist, drawn_genre = str(rng.choice(ARTISTS)), str(rng.choice(GENRES))
    artist = artist or drawn_artist
    genre = genre or drawn_genre
    g, a = _GENRE_SPECS[genre], _ARTIST_SPECS[artist]

    mode = "major" if rng.random() < a.p_major else "minor"
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

    lead_base, pad_base, bass_base = root_near(a.center), root_near(57), root_near(40)
    n_total = int(round(seconds * sr))
    mix = _Mixer(n_total, channels)  # tails past the end are cut; echoes only look back
    lead_lvl, pad_lvl, bass_lvl = g.levels
    kick, snare, hat = 0.6 * _kick(sr), _snare(sr, rng), _hat(sr, rng)
    pluck = 0.25 if g.pad == "pluck" else 0.0
    rendered: dict[tuple, np.ndarray] = {}

    def tone(
        start: float, midi: int, secs: float, wave: str, env: _Adsr, **kw: float
    ) -> np.ndarray:
        """Memoised _tone: progressions repeat, so most notes are rendered once per song."""
        if start >= seconds:
            return np.zeros(0)  # after the end: nothing to hear, but the random draws still ran
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
        # Pad: the triad held for the bar, voices spread across the stereo field.
        for v, deg in enumerate(triad):
            note = tone(t_bar, degree_midi(pad_base, deg), bar * 0.98, g.pad, g.pad_env,
                        tilt=a.tilt, pluck_decay=pluck)
            mix.add(note, int(t_bar * sr), pan=(v - 1) * 0.6, gain=pad_lvl)
        # Bass.
        for beat_pos, length, offs in g.bass_pattern:
            midi, start = degree_midi(bass_base, chord + offs), t_bar + beat_pos * beat
            note = tone(start, midi, length * beat, g.bass, g.bass_env, tilt=a.tilt)
            mix.add(note, int(start * sr), gain=bass_lvl)
        # Drums, with a little velocity variation.
        for hits, sound, pan in ((g.kick, kick, 0.0), (g.snare, snare, 0.1), (g.hat, hat, 0.4)):
            for beat_pos in hits:
                vel = g.drum_gain * rng.uniform(0.8, 1.0)
                mix.add(sound, int((t_bar + beat_pos * beat) * sr), pan=pan, gain=vel)
        # Melody: phrases of three sung bars and one instrumental bar; a syllable per note.
        if b % 4 == 3:
            continue
        pos = 0.0
        for length in g.rhythms[int(rng.integers(len(g.rhythms)))]:
            step = int(rng.choice([-2, -1, -1, 0, 1, 1, 2, 3, -3]))
            degree = int(np.clip(degree + step, -3, 10))
            if pos == int(pos) and rng.random() < 0.7:  # strong beats lean on chord tones
                degree = min((d + 7 * o for d in triad for o in (-1, 0, 1)),
                             key=lambda d: abs(d - degree))
            start = t_bar + pos * beat
            gate = length * beat * 0.9
            note = tone(start, degree_midi(lead_base, degree), gate, g.lead, g.lead_env,
                        tilt=a.tilt, vibrato=a.vibrato)
            mix.add(note, int(start * sr), pan=a.pan, gain=lead_lvl * rng.uniform(0.85, 1.0))
            pos += length
            if not pending:
                pending.extend(_word(rng, int(rng.choice([1, 1, 1, 2, 2]))))
                word_span[0] = start
            if start < seconds:  # a note starting after the end rings in; its word is not sung
                sung.append(pending.pop(0))
                word_span[1] = start + gate
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
    if peak > 0.0:
        audio = audio * (_PEAK / peak)
    lyrics = "\n".join(" ".join(lines[k]) for k in sorted(lines))
    return SynthSong(
        audio=audio.astype(np.float32),
        sample_rate=sr,
        artist=artist,
        genre=genre,
        lyrics=lyrics,
        lyrics_timing=words,
        key=f"{_NOTE_NAMES[tonic]} {mode}",
        bpm=bpm,
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
