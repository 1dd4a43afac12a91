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

The package is split by concern: :mod:`.score` (scales, genres and the arrangement: what is played
when), :mod:`.instruments` (tones, drums, the mixer), :mod:`.voice` (phonetics, formants, singing,
the artists), :mod:`.song` (a whole song from a seed) and :mod:`.writer` (a dataset on disk).
"""

from jukelite.data.synth.score import GENRES
from jukelite.data.synth.song import SynthSong, synth_song
from jukelite.data.synth.voice import ARTISTS, sing_syllable, vowel_formants
from jukelite.data.synth.writer import write_synth_dataset

__all__ = [
    "ARTISTS",
    "GENRES",
    "SynthSong",
    "sing_syllable",
    "synth_song",
    "vowel_formants",
    "write_synth_dataset",
]
