"""Tests for jukelite.data.labels: v2 names, vocabularies, timing ranges, RangeEmbedding bins, y."""

import json
from pathlib import Path

import pytest
import torch

from jukelite.data.labels import (
    ARTIST,
    GENRES,
    OFFSET,
    SAMPLE_LENGTH,
    TOTAL_LENGTH,
    LabelVocabulary,
    TimingRange,
    UnknownLabelError,
    genre_words,
    label_vector,
    normalize_label,
    range_bins,
)
from jukelite.data.manifest import ManifestEntry


def entry(artist: str, *genres: str) -> ManifestEntry:
    return ManifestEntry(path=Path("x.wav"), artist=artist, genres=list(genres))


@pytest.fixture
def vocab() -> LabelVocabulary:
    return LabelVocabulary.from_entries([
        entry("Alan Jackson", "Country"),
        entry("alan-jackson", "blues rock"),
        entry("The Beatles", "Rock", "pop"),
        entry("unknown", "R&B"),
    ])


@pytest.mark.parametrize("raw, norm", [
    ("Alan Jackson", "alan_jackson"),
    ("  The--Beatles! ", "the_beatles"),
    ("AC/DC", "ac_dc"),
    ("Beyoncé", "beyonc"),
    ("___", ""),
])
def test_normalize_label(raw, norm):
    assert normalize_label(raw) == norm


def test_genre_words_are_a_bag_of_v2_words():
    assert genre_words("blues rock") == ["blues", "rock"]
    assert genre_words("Blues_Rock") == ["blues", "rock"]
    assert genre_words("r&b") == ["r", "b"]
    assert genre_words("  ") == []


def test_from_entries_is_sorted_with_unknown_at_zero(vocab):
    assert vocab.artists == ["unknown", "alan_jackson", "the_beatles"]
    assert vocab.genres == ["unknown", "b", "blues", "country", "pop", "r", "rock"]
    assert vocab.artist_id("ALAN JACKSON") == 1
    assert vocab.artist_id("Unknown") == 0
    assert vocab.artist_id("") == 0


def test_min_count_drops_rare_names(vocab):
    rare = LabelVocabulary.from_entries(
        [entry("A", "rock"), entry("A", "rock pop"), entry("B", "jazz")], min_count=2
    )
    assert rare.artists == ["unknown", "a"]
    assert rare.genres == ["unknown", "rock"]


def test_json_round_trip(vocab):
    back = LabelVocabulary.from_dict(json.loads(json.dumps(vocab.to_dict())))
    assert back == vocab
    assert back.genre_ids(["blues rock"]) == vocab.genre_ids(["blues rock"])
    assert back.max_bow_genre_size == 5


def test_from_dict_errors_name_the_problem():
    with pytest.raises(ValueError, match="missing keys.*genres"):
        LabelVocabulary.from_dict({"artists": ["unknown"], "max_bow_genre_size": 5})
    with pytest.raises(ValueError, match=r"artists\[0\] must be 'unknown'"):
        LabelVocabulary(["abba"], ["unknown"])
    with pytest.raises(ValueError, match="duplicates.*abba"):
        LabelVocabulary(["unknown", "abba", "abba"], ["unknown"])
    with pytest.raises(ValueError, match="normalised"):
        LabelVocabulary(["unknown", "Abba"], ["unknown"])


def test_unknown_artist_suggests_close_names(vocab):
    with pytest.raises(UnknownLabelError, match="did you mean 'alan_jackson'") as info:
        vocab.artist_id("Alan Jakson")
    assert info.value.suggestions == ["alan_jackson"]
    assert "normalised 'alan_jakson'" in str(info.value)
    with pytest.raises(UnknownLabelError, match="known artists: 'alan_jackson', 'the_beatles'"):
        vocab.artist_id("zzz")


def test_unknown_genre_suggests_and_non_strict_maps_to_zero(vocab):
    with pytest.raises(UnknownLabelError, match="unknown genre 'rok'; did you mean 'rock'"):
        vocab.genre_ids(["rok"])
    with pytest.warns(UserWarning, match="unknown genre 'jazz'"):
        assert vocab.genre_ids(["jazz rock"], strict=False) == [0, 6, -1, -1, -1]
    with pytest.warns(UserWarning, match="unknown artist"):
        assert vocab.artist_id("Nobody", strict=False) == 0


def test_genre_ids_pad_dedupe_and_truncate(vocab):
    assert vocab.genre_ids(["blues rock"]) == [2, 6, -1, -1, -1]
    assert vocab.genre_ids("r&b") == [5, 1, -1, -1, -1]
    assert vocab.genre_ids(["rock", "blues rock"]) == [6, 2, -1, -1, -1]
    assert vocab.genre_ids([]) == [0, -1, -1, -1, -1]
    small = LabelVocabulary(vocab.artists, vocab.genres, max_bow_genre_size=2)
    with pytest.warns(UserWarning, match=r"dropped \['country', 'pop'\]"):
        assert small.genre_ids(["blues rock", "country pop"]) == [2, 6]


def test_timing_range_error_states_range_and_value():
    timing = TimingRange(min_duration=17.84, max_duration=600.0, sample_rate=44100)
    timing.check_total(44100 * 60)
    timing.check_total(786744)
    with pytest.raises(ValueError) as info:
        timing.check_total(44100 * 10)
    text = str(info.value)
    assert "10.00 s (441000 samples at 44100 Hz)" in text
    assert "at least 17.84 s and less than 600.00 s" in text
    assert "[786744, 2.646e+07) samples" in text
    with pytest.raises(ValueError, match="600.00 s"):
        timing.check_total(44100 * 600)
    assert TimingRange.from_dict(timing.to_dict()) == timing
    with pytest.raises(ValueError, match="min_duration < max_duration"):
        TimingRange(10.0, 5.0, 44100)


def test_range_bins_linear_positions():
    # positions 0, 10, 20, 30 of [0, 100) in 10 bins
    assert range_bins(0, 40, n_time=4, t_bins=10, lo=0, hi=100).tolist() == [0, 1, 2, 3]
    batch = range_bins(torch.tensor([[0], [50]]), torch.tensor([[40], [90]]), 4, 10, 0, 100)
    assert batch.dtype == torch.int64
    assert batch.tolist() == [[0, 1, 2, 3], [5, 6, 7, 8]]
    # total-length embedding: n_time=1, floor(128 * (5500 - 1000) / 9000) = 64
    total = range_bins(torch.tensor([5500, 1000, 9999]), None, 1, 128, 1000, 10000)
    assert total.tolist() == [[64], [0], [127]]


def test_range_bins_clamp_and_errors():
    # relative positions: end 1.5 clamped to 1.0 -> positions 0.5, 0.625, 0.75, 0.875
    assert range_bins(0.5, 1.5, 4, 8, 0.0, 1.0, clamp=True).tolist() == [4, 5, 6, 7]
    with pytest.raises(ValueError, match="outside the range"):
        range_bins(0.5, 1.5, 4, 8, 0.0, 1.0)  # bins 4, 6, 8, 10 without the clamp
    with pytest.raises(ValueError, match=r"start must be in \[1000, 10000\)"):
        range_bins(500, None, 1, 128, 1000, 10000)
    with pytest.raises(ValueError, match="end is required"):
        range_bins(0, None, 4, 8, 0, 1)


def test_label_vector_layout():
    y = label_vector(1000, 100, 50, 3, [2, 6, -1, -1, -1], [5, 0, 7])
    assert y.dtype == torch.int64 and y.shape == (4 + 5 + 3,)
    assert y.tolist() == [1000, 100, 50, 3, 2, 6, -1, -1, -1, 5, 0, 7]
    assert (y[TOTAL_LENGTH], y[OFFSET], y[SAMPLE_LENGTH], y[ARTIST]) == (1000, 100, 50, 3)
    assert y[GENRES:GENRES + 5].tolist() == [2, 6, -1, -1, -1]
    assert label_vector(10, 0, 5, 0, [0]).tolist() == [10, 0, 5, 0, 0]
    with pytest.raises(ValueError, match=r"offset must be in \[0, total_length=10\), got 10"):
        label_vector(10, 10, 5, 0, [0])
    with pytest.raises(ValueError, match="genre_ids"):
        label_vector(10, 0, 5, 0, [-2])
