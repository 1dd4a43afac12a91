"""The music of a demo song, before any sound: what is played and sung when.

Notes and scales, the chord progressions of each mode, the genres (tempo range, modes, rhythms,
accompaniment patterns, instrument waveforms and envelopes, drums, levels) and the arrangement
that turns a genre, a key and a singer's register into timed notes, drum hits and the syllables of
the pseudo-English lyrics. Keeping this apart from the sound makes the score easy to read and
check, and keeps the song's random draws (all made here, after the key) in one place.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

GENRES: tuple[str, ...] = ("chiptune", "ambient", "rock", "folk")

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


def midi_hz(midi: float) -> float:
    return 440.0 * 2.0 ** ((midi - 69.0) / 12.0)


def check_choice(kind: str, value: str | None, choices: Sequence[str]) -> None:
    if value is not None and value not in choices:
        raise ValueError(f"unknown {kind} {value!r}; choose one of {', '.join(choices)}")


@dataclass(frozen=True)
class Adsr:
    attack: float
    decay: float
    sustain: float
    release: float


@dataclass(frozen=True)
class _Genre:
    bpm: tuple[float, float]  # ranges do not overlap, so tempo alone tells the genres apart
    modes: tuple[str, str]  # (bright, dark); the artist's p_bright picks one
    lead: str  # waveform of the quiet doubling of the melody, see instruments._harmonics
    pad: str
    bass: str
    lead_env: Adsr
    pad_env: Adsr
    bass_env: Adsr
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
GENRE_SPECS: dict[str, _Genre] = {
    "chiptune": _Genre(
        bpm=(144.0, 172.0), modes=("major", "minor"),
        lead="pulse25", pad="square", bass="triangle",
        lead_env=Adsr(0.004, 0.05, 0.7, 0.03),
        pad_env=Adsr(0.002, 0.05, 0.6, 0.02),
        bass_env=Adsr(0.004, 0.03, 0.8, 0.02),
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
        lead_env=Adsr(0.15, 0.3, 0.8, 0.6),
        pad_env=Adsr(0.9, 0.5, 0.8, 1.5),
        bass_env=Adsr(0.4, 0.5, 0.9, 1.0),
        rhythms=((2.0, 2.0), (1.0, 1.0, 2.0), (2.0, 1.0, 1.0), (3.0, 1.0)),
        pad_pattern=((0.0, 3.92, _ALL),),  # the triad held for the whole bar
        bass_pattern=((0.0, 4.0, 0),),
        kick=(), snare=(), hat=(), drum_gain=0.0, echo=0.45,
        levels=(0.4, 0.14, 0.22), double=0.0,
    ),
    "rock": _Genre(
        bpm=(112.0, 136.0), modes=("mixolydian", "dorian"),
        lead="saw", pad="saw", bass="saw_dark",
        lead_env=Adsr(0.01, 0.1, 0.75, 0.08),
        pad_env=Adsr(0.005, 0.1, 0.6, 0.04),
        bass_env=Adsr(0.005, 0.08, 0.8, 0.05),
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
        lead_env=Adsr(0.03, 0.15, 0.7, 0.15),
        pad_env=Adsr(0.005, 1.2, 0.0, 0.3),
        bass_env=Adsr(0.01, 0.6, 0.3, 0.2),
        rhythms=((1.0, 1.0, 2.0), (1.0, 0.5, 0.5, 1.0, 1.0), (2.0, 1.0, 1.0), (1.5, 0.5, 2.0)),
        # A strummed pattern (down, down-up, up, down) on a plucked string.
        pad_pattern=((0.0, 1.4, _ALL), (1.5, 0.9, _ALL), (2.5, 0.45, _ALL), (3.0, 0.9, _ALL)),
        bass_pattern=((0.0, 1.8, 0), (2.0, 1.8, 2)),
        kick=(0.0, 2.0), snare=(), hat=_EIGHTHS, drum_gain=0.25, echo=0.2,
        levels=(0.22, 0.12, 0.25), double=0.0,
    ),
}

_ONSETS = ("b", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "y",
           "j", "z", "ch", "sh", "th", "st", "br", "gr", "pl", "fl", "tr", "dr", "sl", "cl")
_VOWELS = ("a", "e", "i", "o", "u", "ay", "ee", "oo", "ow", "ai")
_CODAS = ("", "", "", "", "n", "t", "s", "r", "l", "nd", "ng", "m", "k", "st")
_SMALL_WORDS = ("the", "and", "my", "you", "in", "on", "we", "oh", "to", "all", "so", "me")


def _word(rng: np.random.Generator, n_syllables: int) -> list[str]:
    """A pseudo-English word, split into the syllables that will be sung on separate notes."""
    if n_syllables == 1 and rng.random() < 0.3:
        return [str(rng.choice(_SMALL_WORDS))]
    sylls = []
    for i in range(n_syllables):
        coda = str(rng.choice(_CODAS)) if i == n_syllables - 1 else ""
        sylls.append(str(rng.choice(_ONSETS)) + str(rng.choice(_VOWELS)) + coda)
    return sylls


@dataclass(frozen=True)
class Key:
    """The tonal frame of a song: mode, tonic, tempo and the chord progression of every bar."""

    mode: str
    tonic: int  # pitch class, 0 = C
    bpm: float
    progression: tuple[int, ...]  # scale degrees, one chord per bar, repeating

    @property
    def name(self) -> str:  # e.g. "A dorian"
        return f"{_NOTE_NAMES[self.tonic]} {self.mode}"

    @property
    def beat(self) -> float:  # seconds
        return 60.0 / self.bpm


def choose_key(
    rng: np.random.Generator, genre: _Genre, tonics: Sequence[int], p_bright: float
) -> Key:
    """Draw the key: the genre's bright or dark mode, one of the singer's ``tonics``, a tempo."""
    mode = genre.modes[0] if rng.random() < p_bright else genre.modes[1]
    tonic = int(rng.choice(tonics))
    bpm = float(round(rng.uniform(*genre.bpm)))
    progression = _PROGRESSIONS[mode][int(rng.integers(len(_PROGRESSIONS[mode])))]
    return Key(mode, tonic, bpm, progression)


@dataclass(frozen=True)
class Note:
    """One event of the score, in the order the song is mixed."""

    part: str  # "pad", "bass", "kick", "snare", "hat" or "melody" (sung, maybe doubled)
    start: float  # seconds from the start of the song
    length: float = 0.0  # seconds held (drums play out in full)
    midi: int = 0
    velocity: float = 1.0  # scales the part's level
    pan: float = 0.0  # of pads and drums; the melody sits where its singer stands
    syllable: str = ""  # what the melody sings on this note


@dataclass
class Score:
    key: Key
    notes: list[Note]
    lyrics: str  # one line per phrase
    lyrics_timing: list[tuple[float, float, str]]  # (start, end, word) in seconds


def arrange(
    rng: np.random.Generator, key: Key, genre: _Genre, center: int, seconds: float
) -> Score:
    """Every note of a song of ``seconds`` in ``key`` and ``genre``, sung around MIDI ``center``.

    Bar by bar: the accompaniment in the genre's pattern (its triad voices spread across the
    stereo field), the bass, the drums with a little velocity variation, and in three bars of
    every four a melody phrase with one syllable of the lyrics per note. Notes may start after
    the end; a sung note that does, and its word, is left out.
    """
    g = genre
    tonic, progression, scale = key.tonic, key.progression, _SCALES[key.mode]
    beat = key.beat
    bar = 4 * beat
    n_bars = int(math.ceil(seconds / bar))

    def degree_midi(base: int, degree: int) -> int:
        return base + 12 * (degree // 7) + scale[degree % 7]

    def root_near(center: int) -> int:  # tonic at or just below ``center``
        return center - ((center - tonic) % 12)

    # The tune's tonic is the one nearest the singer's centre, so the register stays the artist's.
    lead_base = center + (tonic - center + 6) % 12 - 6
    pad_base, bass_base = root_near(57), root_near(40)
    notes: list[Note] = []

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

    drums = (("kick", g.kick, 0.0), ("snare", g.snare, 0.1), ("hat", g.hat, 0.4))  # beats, pan
    degree = progression[0] + 2 * int(rng.integers(3))
    for b in range(n_bars):
        t_bar = b * bar
        chord = progression[b % len(progression)]
        triad = [chord, chord + 2, chord + 4]
        # Accompaniment in the genre's pattern, its triad voices spread across the stereo field.
        for beat_pos, length, voices in g.pad_pattern:
            start = t_bar + beat_pos * beat
            for v in voices:
                notes.append(Note("pad", start, length * beat, degree_midi(pad_base, triad[v]),
                                  pan=(v - 1) * 0.6))
        # Bass.
        for beat_pos, length, offs in g.bass_pattern:
            midi, start = degree_midi(bass_base, chord + offs), t_bar + beat_pos * beat
            notes.append(Note("bass", start, length * beat, midi))
        # Drums, with a little velocity variation.
        for drum, hits, pan in drums:
            for beat_pos in hits:
                notes.append(Note(drum, t_bar + beat_pos * beat, velocity=rng.uniform(0.8, 1.0),
                                  pan=pan))
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
                notes.append(Note("melody", start, gate, midi, vel, syllable=syllable))
            if not pending:
                close_word(b // 4)
        close_word(b // 4)  # no word runs across a bar line

    lyrics = "\n".join(" ".join(lines[k]) for k in sorted(lines))
    return Score(key, notes, lyrics, words)
