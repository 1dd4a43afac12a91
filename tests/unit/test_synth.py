"""Procedural demo songs: determinism, levels, musical content, the singing voice (where it sounds,
its formants, consonants and artists), timed lyrics, genres, the dataset writer and its command."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import soundfile as sf

from jukelite.cli import main
from jukelite.data.manifest import read_manifest
from jukelite.data.synth import (
    ARTISTS,
    GENRES,
    sing_syllable,
    synth_song,
    vowel_formants,
    write_synth_dataset,
)
from jukelite.data.synth.score import _NOTE_NAMES, _SCALES, GENRE_SPECS
from jukelite.data.synth.voice import ARTIST_SPECS, _split_syllable

SR = 22050
PEAK = 10 ** (-1 / 20)


def test_same_seed_same_song_and_different_seed_different_song():
    a = synth_song(3, 2.0)
    b = synth_song(3, 2.0)
    c = synth_song(4, 2.0, artist=a.artist, genre=a.genre)
    np.testing.assert_array_equal(a.audio, b.audio)
    assert (a.lyrics, a.lyrics_timing, a.key, a.bpm) == (b.lyrics, b.lyrics_timing, b.key, b.bpm)
    assert not np.array_equal(a.audio, c.audio)
    assert a.lyrics != c.lyrics


@pytest.mark.parametrize("genre", GENRES)
def test_length_dtype_and_peak_normalised(genre):
    song = synth_song(0, 1.7, sample_rate=SR, genre=genre)
    assert song.audio.shape == (1, round(1.7 * SR))
    assert song.audio.dtype == np.float32
    assert np.isfinite(song.audio).all()
    assert np.abs(song.audio).max() == pytest.approx(PEAK, abs=1e-4)
    assert song.genre == genre and song.artist in ARTISTS and song.sample_rate == SR


def test_stereo_channels_are_panned_versions_of_one_mix():
    song = synth_song(1, 1.5, channels=2, genre="rock")
    left, right = song.audio
    assert song.audio.shape == (2, round(1.5 * SR))
    assert np.abs(song.audio).max() == pytest.approx(PEAK, abs=1e-4)
    assert not np.allclose(left, right)
    assert np.corrcoef(left, right)[0, 1] > 0.5


def _nearest_note(freq: float) -> tuple[float, int]:
    """(distance in semitones, pitch class) of the equal-tempered note nearest ``freq``."""
    midi = 69 + 12 * np.log2(freq / 440.0)
    return abs(midi - round(midi)), int(round(midi)) % 12


@pytest.mark.parametrize(("genre", "min_hz"), [("ambient", 30.0), ("chiptune", 200.0)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_spectral_peak_is_a_note_of_the_songs_key(genre, min_hz, seed):
    # Ambient has no drums; for chiptune skip the kick's pitch sweep below 200 Hz.
    song = synth_song(seed, 4.0, genre=genre)
    spectrum = np.abs(np.fft.rfft(song.audio[0] * np.hanning(song.audio.shape[1])))
    freqs = np.fft.rfftfreq(song.audio.shape[1], 1 / SR)
    spectrum[freqs < min_hz] = 0.0
    off, pitch_class = _nearest_note(freqs[spectrum.argmax()])
    tonic, mode = song.key.split()
    assert off < 0.25  # within a quarter semitone of a tuned note
    assert (pitch_class - _NOTE_NAMES.index(tonic)) % 12 in _SCALES[mode]


def test_artist_keeps_a_consistent_key_preference():
    tonics = {synth_song(seed, 0.5, artist="Nova Lark").key.split()[0] for seed in range(12)}
    assert tonics <= {"C", "G", "D"}


def test_lyrics_timing_matches_words_and_the_note_grid():
    song = synth_song(5, 6.0, genre="chiptune")
    words = [w for _, _, w in song.lyrics_timing]
    assert words and words == song.lyrics.split()
    starts = [s for s, _, _ in song.lyrics_timing]
    assert starts == sorted(starts)
    for start, end, word in song.lyrics_timing:
        assert 0.0 <= start < end <= 6.0
        assert word.isalpha() and word.islower()
        sixteenths = start * song.bpm / 60 * 4  # every melody note starts on a 16th note
        assert sixteenths == pytest.approx(round(sixteenths), abs=0.01)


def test_bad_arguments_are_refused_with_the_choices():
    with pytest.raises(ValueError, match="unknown artist 'Nobody'.*Nova Lark"):
        synth_song(0, 1.0, artist="Nobody")
    with pytest.raises(ValueError, match="unknown genre 'jazz'.*chiptune"):
        synth_song(0, 1.0, genre="jazz")
    with pytest.raises(ValueError, match="seconds"):
        synth_song(0, 0.0)
    with pytest.raises(ValueError, match="channels"):
        synth_song(0, 1.0, channels=3)


def test_write_synth_dataset(tmp_path):
    out = tmp_path / "demo"
    manifest = write_synth_dataset(out, n_songs=5, seconds=1.5, sample_rate=16000, seed=2,
                                   channels=2)
    assert manifest == out / "manifest.jsonl"
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    assert [r["path"] for r in rows] == [f"song_{i:03d}.flac" for i in range(5)]
    assert {r["genre"] for r in rows} == set(GENRES)
    assert all(r["duration"] == 1.5 and r["sample_rate"] == 16000 and r["channels"] == 2
               for r in rows)
    entries = read_manifest(manifest)  # validates timings against durations too
    assert entries[0].path == out / "song_000.flac"
    assert entries[0].lyrics_timing and entries[0].lyrics
    data, sr = sf.read(out / "song_003.flac", always_2d=True)
    assert sr == 16000 and data.shape == (24000, 2)
    assert np.abs(data).max() == pytest.approx(PEAK, abs=1e-3)
    with open(out / "metadata.csv", newline="", encoding="utf-8") as f:
        table = list(csv.DictReader(f))
    assert list(table[0]) == ["file", "artist", "genre", "lyrics"]
    assert [(t["file"], t["artist"], t["genre"], t["lyrics"]) for t in table] == [
        (r["path"], r["artist"], r["genre"], r["lyrics"]) for r in rows
    ]


def test_write_synth_dataset_is_deterministic_and_checks_format(tmp_path):
    m1 = write_synth_dataset(tmp_path / "a", 2, 1.0, sample_rate=8000, seed=7, fmt="wav")
    m2 = write_synth_dataset(tmp_path / "b", 2, 1.0, sample_rate=8000, seed=7, fmt="wav")
    assert m1.read_text() == m2.read_text()
    assert (tmp_path / "a/song_001.wav").read_bytes() == (tmp_path / "b/song_001.wav").read_bytes()
    with pytest.raises(ValueError, match="fmt"):
        write_synth_dataset(tmp_path / "c", 1, 1.0, fmt="mp3")


# ----------------------------------------------------------------------------- the voice
def _word_mask(song, margin: float = 0.0) -> np.ndarray:
    """True on the samples inside a sung word (widened by ``margin`` seconds each side)."""
    mask = np.zeros(song.audio.shape[1], dtype=bool)
    for start, end, _ in song.lyrics_timing:
        mask[max(0, int((start - margin) * SR)) : int(np.ceil((end + margin) * SR)) + 1] = True
    return mask


def test_voice_sounds_exactly_where_the_words_are_sung():
    # Chiptune has no echo, so nothing of the voice may leak out of the word spans.
    full = synth_song(11, 6.0, genre="chiptune", artist="Juniper Tide")
    backing = synth_song(11, 6.0, genre="chiptune", artist="Juniper Tide", voice=False)
    alone = synth_song(11, 6.0, genre="chiptune", artist="Juniper Tide", backing=False)
    assert full.lyrics == backing.lyrics == alone.lyrics
    assert full.lyrics_timing == backing.lyrics_timing == alone.lyrics_timing
    voice = full.audio[0] / full.gain - backing.audio[0] / backing.gain
    # Switching a part off changes nothing else: the parts add up to the song.
    np.testing.assert_allclose(voice, alone.audio[0] / alone.gain, atol=1e-5)
    mask = _word_mask(full)
    assert (voice[mask] ** 2).sum() / (voice**2).sum() > 0.9999
    # Every word is heard, and the voice is not buried: within the words it is about as loud as
    # everything else together (measured: +0.4 dB).
    level = np.sqrt(np.mean(voice[mask] ** 2))
    for start, end, word in full.lyrics_timing:  # short notes are quieter (attack and release)
        span = voice[int(start * SR) : int(end * SR)]
        assert np.sqrt(np.mean(span**2)) > 0.15 * level, word
    music = backing.audio[0] / backing.gain
    assert 10 * np.log10((voice[mask] ** 2).mean() / (music[mask] ** 2).mean()) > -4.0
    # The fourth bar of each phrase is instrumental: 4.5 s .. 6 s at this tempo.
    assert full.bpm * 6.0 / 60 >= 12
    bar = 4 * 60 / full.bpm
    assert not alone.audio[0, int(3 * bar * SR) : int(4 * bar * SR)].any()


def test_with_an_echo_the_voice_still_lives_near_its_words():
    full = synth_song(2, 6.0, genre="folk", artist="Mira Vale")
    backing = synth_song(2, 6.0, genre="folk", artist="Mira Vale", voice=False)
    voice = full.audio[0] / full.gain - backing.audio[0] / backing.gain
    assert (voice[_word_mask(full)] ** 2).sum() / (voice**2).sum() > 0.97  # measured 0.995


def test_voice_and_backing_cannot_both_be_off():
    with pytest.raises(ValueError, match="nothing to hear"):
        synth_song(0, 1.0, voice=False, backing=False)


def _formant_peaks(x: np.ndarray, f0: float, top: float = 4000.0) -> list[float]:
    """Peaks of the spectral envelope that the harmonics of a steady note sample.

    One second of signal gives 1 Hz bins, so each harmonic of an integer f0 sits on a bin; each
    local maximum over the harmonics is refined by a parabola through its neighbours (in dB).
    """
    segment = x[SR // 4 : SR // 4 + SR]
    spectrum = np.abs(np.fft.rfft(segment * np.hanning(segment.size)))
    harmonics = np.round(np.arange(1, int(top / f0) + 1) * f0).astype(int)
    level = 20 * np.log10(spectrum[harmonics])
    peaks = []
    for i in range(1, level.size - 1):
        if level[i - 1] < level[i] >= level[i + 1]:
            a, b, c = level[i - 1 : i + 2]
            peaks.append((i + 1 + 0.5 * (a - c) / (a - 2 * b + c)) * f0)
    return peaks


F0 = 55.0  # MIDI 33: dense harmonics sample the envelope finely (a test pitch, not a sung one)


@pytest.mark.parametrize("vowel", ["a", "e", "i", "o", "u", "ee", "oo"])
def test_sung_vowel_has_its_formants(vowel):
    x = sing_syllable(vowel, 33, 1.5, steady=True)
    (target,) = vowel_formants(vowel)
    peaks = _formant_peaks(x, F0)
    for found, formant in zip(peaks[:3], target, strict=True):  # F1, F2, F3 in order
        assert abs(found - formant) < max(F0, 0.05 * formant), (peaks, target)


def test_vowels_are_told_apart_by_their_letters():
    assert vowel_formants("ee")[0][1] > 2000 > 1000 > vowel_formants("oo")[0][1]  # F2
    assert vowel_formants("a")[0][0] > 2 * vowel_formants("ee")[0][0]  # F1: open vs close
    assert len(vowel_formants("ay")) == len(vowel_formants("ow")) == 2  # diphthongs glide
    assert vowel_formants("ay") != vowel_formants("ai")
    # The glide is heard: the second half of "ay" has a higher F2 than the first.
    x = sing_syllable("ay", 33, 1.5, steady=True)
    first = _formant_peaks(np.concatenate([x[: SR // 2]] * 3), F0)
    second = _formant_peaks(np.concatenate([x[SR:]] * 3), F0)
    assert min(second, key=lambda f: abs(f - 2290)) > min(first, key=lambda f: abs(f - 2050))


def test_a_formant_shift_moves_every_formant():
    for vowel in ("a", "ee"):
        base = _formant_peaks(sing_syllable(vowel, 33, 1.5, steady=True), F0)[:3]
        moved = _formant_peaks(sing_syllable(vowel, 33, 1.5, steady=True, tract=1.2), F0)[:3]
        ratios = np.array(moved) / np.array(base)
        # F1 of "ee" sits on the 5th/6th harmonic, so it moves in coarser steps.
        assert np.all(np.abs(ratios[1:] - 1.2) < 0.03) and abs(ratios[0] - 1.2) < 0.1, ratios


def test_syllables_are_split_into_sounds_by_their_letters():
    assert _split_syllable("bray") == (["b", "r"], "ay", [])
    assert _split_syllable("chant") == (["t", "sh"], "a", ["n", "t"])
    assert _split_syllable("my") == (["m"], "y", [])
    assert _split_syllable("you") == (["y"], "ou", [])
    assert _split_syllable("all") == ([], "a", ["l"])  # a doubled letter is one sound
    assert _split_syllable("oh") == ([], "o", ["h"])
    assert _split_syllable("hmm") == (["h", "m"], "", [])  # hummed on a neutral vowel
    assert sing_syllable("hmm", 50, 0.3).shape == (round(0.3 * SR),)


def _centroid(x: np.ndarray) -> float:
    power = np.abs(np.fft.rfft(x * np.hanning(x.size))) ** 2
    return float((power * np.fft.rfftfreq(x.size, 1 / SR)).sum() / power.sum())


def test_consonants_sound_like_their_letters():
    def onset(syllable: str) -> np.ndarray:  # the first 50 ms of a 0.5 s note
        return sing_syllable(syllable, 52, 0.5, steady=True)[: int(0.05 * SR)]

    def coda(syllable: str) -> np.ndarray:
        return sing_syllable(syllable, 52, 0.5, steady=True)[-int(0.05 * SR) :]

    # Fricatives are noise in their own band: s high, sh lower, v voiced and lower than f.
    assert _centroid(onset("sa")) > 5000 and _centroid(coda("as")) > 5000  # measured 6.8 kHz
    assert 2000 < _centroid(onset("sha")) < 4500  # measured 3.1 kHz
    assert _centroid(onset("fa")) > 2 * _centroid(onset("va"))
    # Nasals and liquids are quiet, low, voiced sounds.
    for syllable in ("ma", "na", "la", "ra"):
        x = onset(syllable)
        assert _centroid(x) < 600 and np.sqrt(np.mean(x**2)) > 0.1, syllable
    assert _centroid(coda("am")) < 600
    # Voiceless plosives start with a silent closure; their bursts differ: t high, k mid, p low.
    for syllable in ("pa", "ta", "ka"):
        assert not sing_syllable(syllable, 52, 0.5)[: int(0.035 * SR)].any(), syllable
    assert _centroid(onset("ta")) > _centroid(onset("ka")) > _centroid(onset("pa"))


def test_sung_syllable_is_deterministic_per_seed():
    a = sing_syllable("brown", 60, 0.4, artist="Mira Vale", seed=5)
    np.testing.assert_array_equal(a, sing_syllable("brown", 60, 0.4, artist="Mira Vale", seed=5))
    assert not np.array_equal(a, sing_syllable("brown", 60, 0.4, artist="Mira Vale", seed=6))
    assert a.shape == (round(0.4 * SR),) and np.isfinite(a).all()
    assert a[0] == 0.0 and abs(a[-1]) < 1e-3  # starts and ends in silence: no clicks
    with pytest.raises(ValueError, match="unknown artist"):
        sing_syllable("la", 60, 0.4, artist="Nobody")


def _median_f0(x: np.ndarray, lo: float = 60.0, hi: float = 1100.0) -> float:
    """Median pitch of the loud frames of a (voice-only) signal, by autocorrelation."""
    pitches = []
    frame = 2048
    loud = 0.3 * np.sqrt(np.mean(x**2))
    for i in range(0, x.size - frame, frame // 2):
        seg = x[i : i + frame] - x[i : i + frame].mean()
        if np.sqrt(np.mean(seg**2)) < loud:
            continue
        ac = np.fft.irfft(np.abs(np.fft.rfft(seg, 2 * frame)) ** 2)[:frame]
        ac /= ac[0]
        lags = np.arange(int(SR / hi), int(SR / lo))
        # The first lag that comes close to the best one: avoids choosing two periods.
        best = ac[lags].max()
        lag = lags[np.flatnonzero(ac[lags] > 0.9 * best)[0]]
        pitches.append(SR / lag)
    return float(np.median(pitches))


def test_artists_sing_in_their_own_register():
    for seed in (0, 1, 2):
        high = synth_song(seed, 8.0, genre="folk", artist="Nova Lark", backing=False)
        low = synth_song(seed, 8.0, genre="folk", artist="Dusty Static", backing=False)
        assert _median_f0(high.audio[0]) > 1.6 * _median_f0(low.audio[0])  # 19 semitones apart


def test_artists_have_distinct_timbres():
    # The same "a" at the same pitch: each vocal tract puts F2 elsewhere, in the order of the
    # tract scales, at least 60 Hz apart.
    f2 = {}
    for artist in ARTISTS:
        peaks = _formant_peaks(sing_syllable("a", 33, 1.5, artist=artist, steady=True), F0)
        f2[artist] = peaks[1]
        assert abs(peaks[1] - 1090 * ARTIST_SPECS[artist].voice.tract) < F0
    ordered = sorted(ARTISTS, key=lambda name: ARTIST_SPECS[name].voice.tract)
    assert all(f2[b] - f2[a] > 60 for a, b in zip(ordered, ordered[1:], strict=False)), f2

    # Brightness: the pressed rock voice has far more energy above 2 kHz than the dark one.
    def bright(artist: str) -> float:
        x = sing_syllable("a", 57, 1.5, artist=artist, steady=True)[SR // 4 : SR // 4 + SR]
        power = np.abs(np.fft.rfft(x)) ** 2
        return float(power[2000:].sum() / power.sum())

    assert bright("The Copper Owls") > 3 * bright("Mira Vale")

    # Expression: vibrato depth (pitch spread over a held note) and the speed of the attack.
    def spread(artist: str) -> float:
        x = sing_syllable("a", 57, 1.6, artist=artist, seed=1)
        pitches = [_median_f0(x[i : i + 4096], 100, 400) for i in range(13000, 30000, 1024)]
        return float(np.std(12 * np.log2(np.array(pitches) / 220.0)))

    assert spread("Mira Vale") > 2 * spread("Dusty Static")

    def rise(artist: str) -> float:  # seconds to reach half the level of a sung "a"
        env = np.convolve(np.abs(sing_syllable("a", 57, 1.0, artist=artist, seed=1)),
                          np.ones(110) / 110, mode="same")
        return float(np.argmax(env > 0.5 * env.max()) / SR)

    assert rise("Mira Vale") > 2 * rise("Dusty Static")


# ----------------------------------------------------------------------------- genres, lyrics
def test_genres_have_their_own_tempo_range_and_modes():
    ranges = sorted((GENRE_SPECS[g].bpm, g) for g in GENRES)
    assert all(a[0][1] < b[0][0] for a, b in zip(ranges, ranges[1:], strict=False))  # disjoint
    assert [g for _, g in ranges] == ["ambient", "folk", "rock", "chiptune"]
    assert len({GENRE_SPECS[g].modes for g in GENRES}) == len(GENRES)
    for genre in GENRES:
        spec = GENRE_SPECS[genre]
        for seed in range(6):
            song = synth_song(seed, 0.5, genre=genre)
            assert spec.bpm[0] <= song.bpm <= spec.bpm[1]
            assert song.key.split()[1] in spec.modes


@pytest.mark.parametrize("genre", GENRES)
def test_word_timings_lie_inside_the_song_in_order(genre):
    song = synth_song(9, 7.0, genre=genre)
    assert song.lyrics_timing
    assert " ".join(song.lyrics.split("\n")).split() == [w for _, _, w in song.lyrics_timing]
    ends = [0.0]
    for start, end, word in song.lyrics_timing:
        assert ends[-1] <= start < end <= 7.0  # ordered and never overlapping
        assert word.isascii() and word.isalpha() and word.islower()
        ends.append(end)


# ----------------------------------------------------------------------------- command line
def test_data_synth_command_takes_the_folder_once(capsys, tmp_path):
    assert main(["data", "synth", "--out", str(tmp_path / "a"), "--songs", "1", "--seconds",
                 "0.5", "--sample-rate", "8000", "--stereo"]) == 0
    entries = read_manifest(tmp_path / "a" / "manifest.jsonl")
    assert len(entries) == 1 and entries[0].channels == 2
    assert main(["data", "synth", str(tmp_path / "b"), "--out", str(tmp_path / "c")]) == 2
    assert "given twice" in capsys.readouterr().err
    assert main(["data", "synth", "--songs", "1"]) == 2
    assert "either as DIR or as --out DIR" in capsys.readouterr().err
    assert main(["data", "synth", str(tmp_path / "d"), "--songs", "0"]) == 2
    assert "n_songs" in capsys.readouterr().err
    assert not (tmp_path / "b").exists() and not (tmp_path / "c").exists()
