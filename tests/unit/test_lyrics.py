"""Tests for jukelite.data.lyrics: vocabularies, folding with a drop report, lyric windows."""

import pytest

from jukelite.data.lyrics import (
    VOCABS,
    LyricsTokenizer,
    LyricWindow,
    lyric_window,
    normalize_lyrics,
    timed_lyric_window,
)


def test_v2_and_v3_vocabularies_match_jukebox_ids():
    v2, v3 = LyricsTokenizer("v2"), LyricsTokenizer("v3")
    assert v2.vocab_size == 80 and v3.vocab_size == 79
    assert v2.encode("Aaz09", normalize=False) == [1, 27, 52, 53, 62]
    assert v2.encode(".+'\"[] \t\n", normalize=False) == [63, 70, 71, 72, 75, 76, 77, 78, 79]
    assert v3.encode("-'\"\n", normalize=False) == [69, 70, 71, 78]
    assert len(set(VOCABS["v2"])) == 79
    with pytest.raises(ValueError, match="unknown lyrics vocabulary 'v9'; valid: \\['v2', 'v3'\\]"):
        LyricsTokenizer("v9")


def test_tokenizer_round_trip_and_padding():
    tok = LyricsTokenizer()
    text = "Hello, world!\n(Yeah) [x2] it's \"on\" - 1+1"
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert tok.decode([0, 0] + ids) == text
    assert LyricsTokenizer.from_dict(tok.to_dict()).encode(text) == ids
    with pytest.raises(ValueError, match=r"\['é'\] are not in the v2 lyrics vocabulary"):
        tok.encode("café", normalize=False)
    assert tok.encode("café") == tok.encode("cafe")
    with pytest.raises(ValueError, match=r"lyric id 80 is outside \[0, 80\)"):
        tok.decode([80])


def test_folding_reports_dropped_characters():
    result = normalize_lyrics("Café Ünïcode – “quotes” ♥ and ♥ cost €5")
    assert result.text == 'Cafe Unicode - "quotes"  and  cost 5'
    assert result.dropped == {"♥": 2, "€": 1}
    assert result.warning() == (
        "dropped 3 characters not in the lyrics vocabulary: '♥' x2, '€' x1"
    )
    assert normalize_lyrics("plain text").warning() is None


def test_folding_table_whitespace_and_versions():
    assert normalize_lyrics("Straße Æsir søster œuvre Łódź þorn ‘it’s’ — ok").text == (
        "Strasse AEsir soster oeuvre Lodz thorn 'it's' -- ok"
    )
    # Jukebox's verified example, v2 keeps '+', v3 drops it
    assert normalize_lyrics("Héllo, wörld! — rock+roll\\ok").text == (
        "Hello, world! -- rock+roll\nok"
    )
    v3 = normalize_lyrics("rock+roll", version="v3")
    assert v3.text == "rockroll" and v3.dropped == {"+": 1}
    # whitespace kept as written; CR/CRLF become newlines; invisible characters vanish silently
    crlf = normalize_lyrics("a  b\tc\r\nd\re\u00a0f\u200bg")
    assert crlf.text == "a  b\tc\nd\ne fg" and crlf.dropped == {}
    # a character is kept whole or dropped whole
    assert normalize_lyrics("½ & #").dropped == {"½": 1, "&": 1, "#": 1}


def test_lyric_window_start_middle_end():
    tokens = list(range(1, 1001))  # F = 1000 characters over 1000 samples
    # start: mid = int(1000 * 50 / 1000) = 50 -> clamped to n/2 -> [0, 100)
    assert lyric_window(tokens, 1000, 0, 100, 100) == LyricWindow(tokens[0:100], 0)
    # middle: mid = int(1000 * 450 / 1000) = 450 -> [400, 500)
    assert lyric_window(tokens, 1000, 400, 100, 100) == LyricWindow(tokens[400:500], 400)
    # end: mid = 1000 -> clamped to F - n/2 = 950 -> [900, 1000)
    assert lyric_window(tokens, 1000, 950, 100, 100) == LyricWindow(tokens[900:1000], 900)


def test_lyric_window_reference_example_and_edge_cases():
    # reference: F=1000, 100 s song, offset 50 s, window 786432 samples, n=384 -> [397, 781)
    win = lyric_window(list(range(1000)), 100 * 44100, 50 * 44100, 786432, 384)
    assert (win.start, win.tokens[0], win.tokens[-1], len(win.tokens)) == (397, 397, 780, 384)
    # shorter than the window: left-padded with 0, start negative by the pad length
    assert lyric_window([7, 8, 9], 100, 50, 10, 5) == LyricWindow([0, 0, 7, 8, 9], -2)
    # odd n: mid = int(10 * 5 / 10) = 5 -> start 5 - 1 = 4
    assert lyric_window(list(range(10)), 10, 4, 2, 3) == LyricWindow([4, 5, 6], 4)
    assert lyric_window([1, 2], 10, 0, 5, 0) == LyricWindow([], 0)
    with pytest.raises(ValueError, match=r"offset must be in \[0, total_length=10\), got 10"):
        lyric_window([1, 2], 10, 10, 5, 4)


TIMING = [(0.0, 1.0, "one"), (1.0, 2.0, "two"), (2.0, 3.0, "three"), (3.0, 4.0, "four")]


def test_timed_window_picks_exactly_the_words_inside():
    tok = LyricsTokenizer()
    # sample_rate 10: window [1.0 s, 3.0 s) overlaps "two" and "three" only
    win = timed_lyric_window(TIMING, 10, 10, 20, 12, tok)
    assert tok.decode(win.tokens) == "two three"
    assert win.tokens[:3] == [0, 0, 0]
    full = "one two three four"
    assert win.start + 3 == full.index("two")
    # order of the timing list does not matter; words are normalised
    shuffled = [TIMING[2], (1.0, 2.0, "twó"), TIMING[0], TIMING[3]]
    assert timed_lyric_window(shuffled, 10, 10, 20, 12, tok) == win


def test_timed_window_centres_and_clamps_when_too_long():
    tok = LyricsTokenizer()
    # "two three": char times t1.0 w1.33 o1.67 ' '1.67 t2.0 ...; midpoint 2.0 s -> mid = 4,
    # start = 4 - 2 = 2 -> "o th", at index 4 + 2 = 6 of "one two three four"
    win = timed_lyric_window(TIMING, 10, 10, 20, 4, tok)
    assert tok.decode(win.tokens) == "o th" and win.start == 6
    # window at the song end: only "four", padded
    end = timed_lyric_window(TIMING, 10, 30, 100, 6, tok)
    assert tok.decode(end.tokens) == "four" and end.tokens[:2] == [0, 0]
    # nothing sung in the window
    assert timed_lyric_window(TIMING, 10, 50, 10, 3, tok) == LyricWindow([0, 0, 0], -3)
