"""One demo song from a seed: the score played by the instruments and sung by the artist.

:func:`synth_song` draws the artist, genre and key, arranges the score (:mod:`.score`), renders
it with the backing band (:mod:`.instruments`) and the singer's voice (:mod:`.voice`), adds the
genre's echo and normalises the mix. All the draws come from one generator, in a fixed order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from jukelite.data.synth.instruments import Mixer, hat, kick, snare, tone
from jukelite.data.synth.score import (
    GENRE_SPECS,
    GENRES,
    Adsr,
    Note,
    arrange,
    check_choice,
    choose_key,
)
from jukelite.data.synth.voice import ARTIST_SPECS, ARTISTS, sing

_PEAK = 10.0 ** (-1.0 / 20.0)  # -1 dBFS: loud, but leaves room for resampling overshoot


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
    check_choice("artist", artist, ARTISTS)
    check_choice("genre", genre, GENRES)
    sr = int(sample_rate)
    rng = np.random.default_rng(seed)
    drawn_artist, drawn_genre = str(rng.choice(ARTISTS)), str(rng.choice(GENRES))
    artist = artist or drawn_artist
    genre = genre or drawn_genre
    g, a = GENRE_SPECS[genre], ARTIST_SPECS[artist]
    # The voice's micro-variation (vibrato phase, jitter, breath, consonant noise) has its own
    # generator, so rendering it or not leaves every other draw of the song where it was.
    voice_rng = np.random.default_rng(int(rng.integers(2**63)))
    key = choose_key(rng, g, a.tonics, a.p_bright)
    drums = {"kick": 0.6 * kick(sr), "snare": snare(sr, rng), "hat": hat(sr, rng)}
    score = arrange(rng, key, g, a.center, seconds)

    n_total = int(round(seconds * sr))
    mix = Mixer(n_total, channels)  # tails past the end are cut; echoes only look back
    voice_lvl, pad_lvl, bass_lvl = g.levels
    pluck = 0.25 if g.pad == "pluck" else 0.0
    rendered: dict[tuple, np.ndarray] = {}

    def play(note: Note, wave: str, env: Adsr, **kw: float) -> np.ndarray:
        """Memoised tone: progressions repeat, so most notes are rendered once per song."""
        if note.start >= seconds or not backing:
            return np.zeros(0)  # nothing to hear
        memo = (note.midi, round(note.length * sr), wave, env, tuple(sorted(kw.items())))
        if memo not in rendered:
            rendered[memo] = tone(note.midi, note.length, wave, env, sr, **kw)
        return rendered[memo]

    for note in score.notes:
        at = int(note.start * sr)
        if note.part == "pad":
            sound = play(note, g.pad, g.pad_env, tilt=a.tilt, pluck_decay=pluck)
            mix.add(sound, at, pan=note.pan, gain=pad_lvl * note.velocity)
        elif note.part == "bass":
            sound = play(note, g.bass, g.bass_env, tilt=a.tilt)
            mix.add(sound, at, pan=note.pan, gain=bass_lvl * note.velocity)
        elif note.part in drums:
            if backing:
                mix.add(drums[note.part], at, pan=note.pan, gain=g.drum_gain * note.velocity)
        else:  # the melody: sung, and maybe doubled quietly on the other side
            if voice:
                sound = sing(note.syllable, note.midi, note.length, sr, a.voice, voice_rng)
                mix.add(sound, at, pan=a.pan, gain=voice_lvl * note.velocity)
            if g.double > 0.0:
                sound = play(note, g.lead, g.lead_env, tilt=a.tilt)
                mix.add(sound, at, pan=-a.pan, gain=g.double * note.velocity)

    audio = mix.buf
    if g.echo > 0.0:  # beat-synced echo (dotted eighth), a few decaying taps
        delay = int(0.75 * key.beat * sr)
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
    return SynthSong(
        audio=(audio * scale_to_peak).astype(np.float32),
        sample_rate=sr,
        artist=artist,
        genre=genre,
        lyrics=score.lyrics,
        lyrics_timing=score.lyrics_timing,
        key=key.name,
        bpm=key.bpm,
        gain=scale_to_peak,
    )
