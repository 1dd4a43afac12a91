"""Jukebox id-file vocabularies, Jukebox lyric cleaning and per-prior vocabularies in bundles.

Tests marked with the real Jukebox files need JUKEBOX_SRC (the folder holding Jukebox's `jukebox`
package); they are skipped when it is unset. The rest use small hand-written id files.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import sys
import warnings
from contextlib import redirect_stdout
from pathlib import Path
from types import ModuleType

import pytest
import torch

import jukelite
from jukelite.bundle import Bundle, BundleError, describe, save_prior_level
from jukelite.convert.jukebox_ids import JukeboxIdsError, read_id_file, read_jukebox_ids
from jukelite.data import lyrics as lyrics_module
from jukelite.data.labels import LabelVocabulary, UnknownLabelError
from jukelite.data.lyrics import LyricsTokenizer, normalize_lyrics
from jukelite.inference.options import SamplingOptions
from jukelite.inference.request import SampleRequest, new_request, song_conditions
from jukelite.prior.model import LevelPrior, PriorConfig

JUKEBOX_SRC = os.environ.get("JUKEBOX_SRC")
needs_jukebox = pytest.mark.skipif(
    not JUKEBOX_SRC, reason="JUKEBOX_SRC is not set (a checkout of github.com/openai/jukebox)")


def real_ids() -> Path:
    return Path(JUKEBOX_SRC or "") / "jukebox" / "data" / "ids"


def jukebox_module(name: str) -> ModuleType:
    """One of Jukebox's own data modules, loaded from its file under a private name (so the
    `jukebox` package other tests may import with shims is left alone)."""
    path = Path(JUKEBOX_SRC or "") / "jukebox" / "data" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"_jukebox_ref_{name}", path)
    module = importlib.util.module_from_spec(spec)
    with warnings.catch_warnings():  # its regexes have escapes newer Pythons warn about
        warnings.simplefilter("ignore", DeprecationWarning)
        spec.loader.exec_module(module)
    return module


def write_ids(folder: Path, version: str, artists: str, genres: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{version}_artist_ids.txt").write_text(artists, encoding="utf-8")
    (folder / f"{version}_genre_ids.txt").write_text(genres, encoding="utf-8")
    return folder


V2_ARTISTS = "unknown;0\nvarious;0\n;0\nalan_jackson;3\nthe_beatles;7\n"  # shared, sparse
V2_GENRES = "unknown;0\nblues;1\nrock;2\ncountry;3\nr;4\nb;5\n"
V3_ARTISTS = "alan jackson;2\nthe beatles;5\nspeaker;3\nunknown;0\nspeaker;6\n"  # last one wins
# a left-to-right mark after "humppa" (as in Jukebox's v3 file); "pop rock" also appears
# plain, so its marked twin keeps its own id and gets no alias
V3_GENRES = ("humppa\u200e;1\npop rock;2\npop rock\u200e;3\nblues rock;4\n"
             "unknown;0\ncountry;5\n")


@pytest.fixture
def v2(tmp_path: Path) -> LabelVocabulary:
    return read_jukebox_ids(write_ids(tmp_path / "ids", "v2", V2_ARTISTS, V2_GENRES), "v2",
                            artist_bins=10)


@pytest.fixture
def v3(tmp_path: Path) -> LabelVocabulary:
    return read_jukebox_ids(write_ids(tmp_path / "ids", "v3", V3_ARTISTS, V3_GENRES), "v3")


# ---------------------------------------------------------------------------- id files
def test_id_files_shared_and_sparse_ids(v2):
    assert v2.normalization == "jukebox_v2" and v2.max_bow_genre_size == 5
    assert v2.artist_ids == {"unknown": 0, "various": 0, "": 0, "alan_jackson": 3,
                             "the_beatles": 7}
    assert v2.n_artists == 10 and v2.n_genres == 6  # given bins; default = max id + 1
    assert v2.artist_id("Various") == v2.artist_id("") == v2.artist_id("unknown") == 0
    assert v2.artist_id("The Beatles") == 7
    assert v2.known("artist") == ["various", "alan_jackson", "the_beatles"]


def test_id_file_duplicate_name_takes_the_last_id_and_invisible_marks_get_an_alias(v3):
    assert v3.max_bow_genre_size == 1 and v3.n_artists == 7 and v3.n_genres == 6
    assert v3.artist_id("Speaker") == 6  # as Jukebox's dict assignment: the later line wins
    assert v3.genre_ids("humppa\u200e") == [1]  # Jukebox's own key
    assert v3.genre_ids("Humppa") == [1]  # the visible spelling, an alias
    assert v3.genre_ids("pop rock") == [2] and v3.genre_ids("pop rock\u200e") == [3]
    assert "humppa\u200e" in v3.genre_id_map and "humppa" not in v3.genre_id_map
    assert "humppa" in v3.known("genre")  # suggestions show what can be typed


def test_id_file_crlf_and_blank_lines(tmp_path):
    path = tmp_path / "ids.txt"
    path.write_bytes(b"a;1\r\n\r\nB ;2\r\n")
    assert read_id_file(path) == {"a": 1, "b ": 2}  # Jukebox keeps the space before ';'


@pytest.mark.parametrize("line, problem", [
    ("no id here", "expected 'name;id' with one ';'"),
    ("two;semi;colons", "expected 'name;id' with one ';'"),
    ("rock;x1", "the id 'x1' is not an integer"),
    ("rock;-3", "ids must be >= 0"),
])
def test_malformed_line_error_names_file_and_line(tmp_path, line, problem):
    folder = write_ids(tmp_path / "ids", "v2", V2_ARTISTS, f"unknown;0\nblues;1\n{line}\n")
    with pytest.raises(JukeboxIdsError) as info:
        read_jukebox_ids(folder, "v2")
    assert f"v2_genre_ids.txt:3: {problem}" in str(info.value)


def test_missing_files_say_where_they_come_from(tmp_path):
    (tmp_path / "ids").mkdir()
    (tmp_path / "ids" / "v3_artist_ids.txt").write_text("unknown;0\n")
    with pytest.raises(FileNotFoundError) as info:
        read_jukebox_ids(tmp_path / "ids", "v3")
    assert "v3_genre_ids.txt" in str(info.value)
    assert "jukebox/data/ids/ in https://github.com/openai/jukebox" in str(info.value)
    with pytest.raises(FileNotFoundError, match="no such folder"):
        read_jukebox_ids(tmp_path / "nowhere", "v2")
    with pytest.raises(ValueError, match="must be one of \\['v2', 'v3'\\]"):
        read_jukebox_ids(tmp_path / "ids", "v4")


def test_bins_below_the_largest_id_are_refused(tmp_path):
    folder = write_ids(tmp_path / "ids", "v2", V2_ARTISTS, V2_GENRES)
    with pytest.raises(ValueError, match="artist_bins=7 is too small: the largest artist id is 7"):
        read_jukebox_ids(folder, "v2", artist_bins=7)


# ---------------------------------------------------------------------------- lookups
def test_v2_genres_are_jukebox_bags_of_words(v2):
    assert v2.genre_ids("Country Rock") == [3, 2, -1, -1, -1]
    assert v2.genre_ids("rock & rock") == [2, 2, -1, -1, -1]  # Jukebox keeps repeats
    assert v2.genre_ids("R&B") == [4, 5, -1, -1, -1]
    assert v2.genre_ids(["blues", "", "rock"]) == [1, 2, -1, -1, -1]
    assert v2.genre_ids("") == v2.genre_ids([]) == [0, -1, -1, -1, -1]
    with pytest.raises(ValueError, match=r"genre 'blues rock country r b blues' gives 6 genre "
                                         r"words .* at most 5"):
        v2.genre_ids("blues rock country r b blues")


def test_v3_takes_each_genre_whole_and_lowercased(v3):
    assert v3.artist_id("Alan Jackson") == 2
    with pytest.raises(UnknownLabelError):
        v3.artist_id("Alan_Jackson")  # v3 only lowercases
    assert v3.genre_ids("Blues Rock") == [4]
    with pytest.raises(ValueError, match=r"gives 2 genre names \['blues rock', 'country'\]"):
        v3.genre_ids(["blues rock", "country"])


def test_unknown_names_suggest_close_matches_or_map_to_zero(v2, v3):
    with pytest.raises(UnknownLabelError, match="did you mean 'alan jackson'") as info:
        v3.artist_id("Alan Jakson")
    assert info.value.suggestions[0] == "alan jackson"
    assert "'Alan Jakson' (normalised 'alan jakson')" in str(info.value)
    with pytest.raises(UnknownLabelError, match="unknown genre 'rok'; did you mean 'rock'"):
        v2.genre_ids("blues rok")
    with pytest.warns(UserWarning, match="unknown genre 'jaz'"):
        assert v2.genre_ids("blues jaz", strict=False) == [1, 0, -1, -1, -1]
    with pytest.raises(UnknownLabelError, match="did you mean 'humppa'"):
        v3.genre_ids("humpa")


def test_json_round_trip_keeps_maps_and_bins(v2, v3):
    for vocab in (v2, v3):
        data = json.loads(json.dumps(vocab.to_dict()))
        assert data["format"] == 2 and data["normalization"] == vocab.normalization
        back = LabelVocabulary.from_dict(data)
        assert back == vocab and back.n_artists == vocab.n_artists
        assert back.artist_ids == vocab.artist_ids
    assert LabelVocabulary.from_dict(v2.to_dict()).artist_id("the beatles") == 7
    assert LabelVocabulary.from_dict(v3.to_dict()).genre_ids("humppa") == [1]
    # jukelite's own vocabularies keep their old JSON
    own = LabelVocabulary(["unknown", "ada"], ["unknown", "rock"], 2)
    assert own.to_dict() == {"format": 1, "normalization": "v2", "max_bow_genre_size": 2,
                             "artists": ["unknown", "ada"], "genres": ["unknown", "rock"]}
    with pytest.raises(ValueError, match="missing keys \\['genre_bins'\\]"):
        LabelVocabulary.from_dict({k: v for k, v in v2.to_dict().items() if k != "genre_bins"})


# ---------------------------------------------------------------------------- the real files
@needs_jukebox
def test_real_id_files_have_the_documented_sizes_and_ids():
    folder = real_ids()
    lines = {name: (folder / name).read_text(encoding="utf-8").count("\n")
             for name in ("v2_artist_ids.txt", "v2_genre_ids.txt", "v3_artist_ids.txt",
                          "v3_genre_ids.txt")}
    assert lines == {"v2_artist_ids.txt": 4111, "v2_genre_ids.txt": 120,
                     "v3_artist_ids.txt": 7898, "v3_genre_ids.txt": 604}
    v2 = read_jukebox_ids(folder, "v2", artist_bins=4111)
    v3 = read_jukebox_ids(folder, "v3")
    assert max(v2.artist_ids.values()) == 4108 and v2.n_artists == 4111 and v2.n_genres == 120
    assert (v3.n_artists, v3.n_genres) == (7898, 604)
    assert v2.artist_id("Alan Jackson") == 145
    assert v2.genre_ids("Country") == [11, -1, -1, -1, -1]
    assert v2.genre_ids("blues rock") == [2, 8, -1, -1, -1]
    assert v3.artist_id("Alan Jackson") == 6785 and v3.genre_ids("Country") == [507]
    # every v3 genre with an invisible mark also appears without it, so no alias is added and
    # the visible spelling keeps Jukebox's id (the duplicate "jazz fusion", issue #31)
    assert v3.genre_ids("jazz fusion") == [295] and v3.genre_ids("jazz fusion\u200e") == [107]


@needs_jukebox
@pytest.mark.parametrize("version", ["v2", "v3"])
def test_real_id_files_match_jukebox_artist_genre_processor(version):
    processor_module = jukebox_module("artist_genre_processor")
    # Jukebox prints as it loads and looks up; unknown names warn here and print there
    with redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        processor = processor_module.ArtistGenreProcessor(v3=version == "v3")
        vocab = read_jukebox_ids(real_ids(), version)
        assert vocab.artist_ids == processor.artist_ids
        assert vocab.genre_id_map == processor.genre_ids
        for artist in ("Alan Jackson", "The Beatles", "Frank Sinatra", "unknown", "various"):
            assert vocab.artist_id(artist, strict=False) == processor.get_artist_id(artist)
        genres = ("Country Rock", "blues", "pop rock", "Hip Hop") if version == "v2" else (
            "Country", "pop rock", "Jazz Fusion", "hip hop")
        for genre in genres:
            ids = vocab.genre_ids(genre, strict=False)
            assert [i for i in ids if i >= 0] == processor.get_genre_ids(genre)


# ---------------------------------------------------------------------------- lyrics
TRICKY = [
    "Héllo, wörld! — rock+roll\\ok",
    "line one\r\nline two\rthree\ttabbed\x0bvt",
    "“Quotes” ‘single’ … ½ & # € ♥ 😀 ß Æ 王\u200e\u200b end",
    "back\\slash + plus\n\n  spaces  ",
]


@pytest.mark.parametrize("version, expected", [
    ("v2", "Hello, world! -- rock+roll\nok"),
    ("v3", "Hello, world! -- rockroll\nok"),
])
def test_jukebox_clean_reference_example(version, expected):
    assert normalize_lyrics(TRICKY[0], version, "jukebox").text == expected
    tok = LyricsTokenizer(version, "jukebox")
    assert tok.decode(tok.encode(TRICKY[0])) == expected


def test_jukebox_clean_drops_cr_and_keeps_tabs_and_reports_losses():
    result = normalize_lyrics(TRICKY[1], "v2", "jukebox")
    assert result.text == "line one\nline twothree\ttabbedvt"  # Jukebox deletes every '\r'
    assert result.dropped == {"\r": 1, "\x0b": 1}  # the '\r' of '\r\n' loses nothing
    result = normalize_lyrics(TRICKY[2], "v2", "jukebox")
    assert result.text == ('"Quotes" \'single\' ...  12   EUR hearts  ss AE Wang   end')
    assert result.dropped == {"½": 1, "&": 1, "#": 1, "😀": 1}  # the mark vanishes silently
    assert "'½' x1" in result.warning()
    # jukelite's own normalisation is unchanged
    assert normalize_lyrics(TRICKY[1]).text == "line one\nline two\nthree\ttabbedvt"


def test_jukebox_mode_without_unidecode_is_identical_for_ascii_and_warns_once(monkeypatch):
    with_unidecode = [normalize_lyrics(t, "v3", "jukebox") for t in TRICKY]
    monkeypatch.setitem(sys.modules, "unidecode", None)  # import unidecode now fails
    monkeypatch.setattr(lyrics_module, "_warned_no_unidecode", False)
    for text, expected in zip(TRICKY[1:], with_unidecode[1:], strict=True):
        if text.isascii():
            assert normalize_lyrics(text, "v3", "jukebox") == expected
    with pytest.warns(UserWarning, match="unidecode is not installed"):
        folded = normalize_lyrics("Héllo — wörld", "v3", "jukebox")
    assert folded.text == "Hello -- world"
    with pytest.warns() as record:  # only once per process
        normalize_lyrics("Héllo", "v3", "jukebox")
        warnings.warn("sentinel", UserWarning, stacklevel=1)
    assert [str(w.message) for w in record] == ["sentinel"]


def test_tokenizer_json_carries_the_normalization():
    tok = LyricsTokenizer("v3", "jukebox")
    assert tok.to_dict()["normalization"] == "jukebox"
    back = LyricsTokenizer.from_dict(json.loads(json.dumps(tok.to_dict())))
    assert back.normalization == "jukebox" and back.version == "v3"
    assert LyricsTokenizer().to_dict() == {"version": "v2", "chars": LyricsTokenizer().chars}
    assert LyricsTokenizer.from_dict({"version": "v2"}).normalization == "jukelite"
    with pytest.raises(ValueError, match="unknown lyrics normalization 'exact'"):
        LyricsTokenizer("v2", "exact")


@needs_jukebox
@pytest.mark.parametrize("version", ["v2", "v3"])
def test_jukebox_mode_matches_jukebox_text_processor(version):
    processor = jukebox_module("text_processor").TextProcessor(v3=version == "v3")
    tok = LyricsTokenizer(version, "jukebox")
    for text in [*TRICKY, "Ça va? Ñandú — «Ünïcode» ☺ \\n 1+1=2 ™ © ½ ﬁ"]:
        clean = processor.clean(text)
        assert normalize_lyrics(text, version, "jukebox").text == clean
        assert tok.encode(text) == processor.tokenise(clean)


# ---------------------------------------------------------------------------- bundles
TOP_ARTISTS = {"unknown": 0, "ada lovelace": 5, "bo": 2}  # v3-style ids for the top prior
TOP_GENRES = {"unknown": 0, "blues rock": 1, "ambient": 2, "folk": 3}
UP_ARTISTS = {"unknown": 0, "various": 0, "ada_lovelace": 1, "bo": 3}  # v2-style ids
UP_GENRES = {"unknown": 0, "blues": 1, "rock": 2, "folk": 4}


@pytest.fixture
def per_level_bundle(tmp_path: Path, make_bundle) -> Path:
    """The tiny two-level bundle with a v3-style lyrics top prior and a v2-style upsampler,
    each with its own vocabularies."""
    path = make_bundle(tmp_path / "bundle")
    top_vocab = LabelVocabulary.from_ids(TOP_ARTISTS, TOP_GENRES, "jukebox_v3", artist_bins=8)
    up_vocab = LabelVocabulary.from_ids(UP_ARTISTS, UP_GENRES, "jukebox_v2",
                                        max_bow_genre_size=2)
    shared = dict(bins=16, n_ctx=16, width=16, depth=2, heads=2, blocks=4, attn_order=2,
                  sample_rate=8000)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        top = LevelPrior(PriorConfig(
            level=1, timing=True, t_bins=8, min_duration=0.01, max_duration=10.0,
            **{**shared, "attn_order": 6, "depth": 4}, lyrics="encoder", n_tokens=8,
            n_vocab=79, lyrics_width=16, lyrics_depth=1, lyrics_heads=2, lyrics_blocks=2,
            artist_bins=top_vocab.n_artists, genre_bins=top_vocab.n_genres,
            max_bow_genre_size=1))
        upsampler = LevelPrior(PriorConfig(
            level=0, upsampler=True, cond_down_t=1, cond_stride=2, cond_width=8, cond_depth=1,
            cond_dilation_cycle=1, artist_bins=up_vocab.n_artists,
            genre_bins=up_vocab.n_genres, max_bow_genre_size=2, **shared))
    save_prior_level(path, top.eval(), {
        "labels": top_vocab.to_dict(),
        "lyrics": LyricsTokenizer("v3", "jukebox").to_dict()}, per_level=True)
    save_prior_level(path, upsampler.eval(), {"labels": up_vocab.to_dict(), "lyrics": None},
                     per_level=True)
    return path


def test_bundle_reads_each_priors_own_vocabularies(per_level_bundle):
    bundle = Bundle.open(per_level_bundle)
    assert "labels" not in bundle.manifest and "lyrics" not in bundle.manifest
    assert bundle.label_vocabulary(1).normalization == "jukebox_v3"
    assert bundle.label_vocabulary(0).normalization == "jukebox_v2"
    assert bundle.vocabulary is bundle.label_vocabulary(1)  # no bundle-wide one: the top's
    assert bundle.lyrics_tokenizer(1).normalization == "jukebox"
    assert bundle.lyrics_tokenizer(0) is None and bundle.tokenizer.version == "v3"
    with pytest.raises(BundleError, match="no prior level 2"):
        bundle.label_vocabulary(2)
    request = SampleRequest(artist="Ada Lovelace", genres=["Blues Rock"], lyrics="rock+roll",
                            total_samples=400)
    top, up = request.song_conditions(bundle, 1), request.song_conditions(bundle, 0)
    assert (top.artist_id, top.genre_ids) == (5, (1,))
    assert (up.artist_id, up.genre_ids) == (1, (1, 2))
    tokenizer = bundle.lyrics_tokenizer(1)
    assert tokenizer.decode(top.lyric_tokens) == "rockroll" and up.lyric_tokens == ()
    assert song_conditions(bundle, 0, "bo", "folk", "", 400).artist_id == 3
    info = describe(per_level_bundle)
    assert info["level_vocabularies"] == {
        "0": {"artists": 4, "genre words": 5},
        "1": {"artists": 8, "genres": 4, "lyric characters (v3)": 79}}


def test_requests_are_checked_against_every_priors_vocabulary(per_level_bundle):
    bundle = Bundle.open(per_level_bundle)
    options = SamplingOptions()
    new_request(bundle, "generate", "Bo", "folk", "", 400, 1, options)
    with pytest.raises(UnknownLabelError, match="prior level 1 .*unknown artist 'Ada Lovelac'"
                                                ".*did you mean 'ada lovelace'"):
        new_request(bundle, "generate", "Ada Lovelac", "folk", "", 400, 1, options)
    with pytest.raises(UnknownLabelError, match="prior level 0 .*unknown genre 'ambient'"):
        new_request(bundle, "generate", "Bo", "ambient", "", 400, 1, options)  # top has it
    with pytest.raises(UnknownLabelError, match="prior level 1 .*unknown genre 'rock'"):
        new_request(bundle, "generate", "Bo", "rock", "", 400, 1, options)


def test_generate_conditions_each_level_with_its_own_ids(
    per_level_bundle, monkeypatch, single_thread
):
    seen: dict[int, set] = {}
    original = LevelPrior.window_inputs

    def spy(self, song, *args, **kwargs):
        seen.setdefault(self.config.level, set()).add(
            (song.artist_id, song.genre_ids, len(song.lyric_tokens)))
        return original(self, song, *args, **kwargs)

    monkeypatch.setattr(LevelPrior, "window_inputs", spy)
    jb = jukelite.load(per_level_bundle)
    with pytest.warns(UserWarning, match="dropped 1 character .*'\\+' x1"):  # v3 has no '+'
        song = jb.generate(artist="Ada Lovelace", genre="Blues Rock", lyrics="rock+roll ok",
                           seconds=0.03, seed=2, alignment=True)
    assert song.codes[0].shape == (1, 60) and song.codes[1].shape == (1, 30)
    assert seen[1] == {(5, (1,), len("rockroll ok"))}
    assert seen[0] == {(1, (1, 2), 0)}
    characters = "".join(c for c, _ in song.alignment.samples[0].characters)
    assert characters == "rockroll ok"  # aligned with the top prior's (v3) tokenizer
