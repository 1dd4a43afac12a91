"""Procedural demo songs: determinism, levels, musical content, timed lyrics, dataset writer."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import soundfile as sf

from jukelite.data.manifest import read_manifest
from jukelite.data.synth import (
    _NOTE_NAMES,
    _SCALES,
    ARTISTS,
    GENRES,
    synth_song,
    write_synth_dataset,
)

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
