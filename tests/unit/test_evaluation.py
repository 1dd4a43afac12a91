"""Conditioning evaluation: CER, features, scorers that learn, and `jukelite eval conditioning`."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from jukelite import bundle as demo_model
from jukelite.bundle import save_prior_level
from jukelite.cli import EXIT_USAGE, main
from jukelite.data.labels import LabelVocabulary
from jukelite.data.lyrics import LyricsTokenizer
from jukelite.data.manifest import ManifestEntry
from jukelite.data.synth import ARTISTS, GENRES, synth_song
from jukelite.evaluation import conditioning
from jukelite.evaluation.classifiers import accuracy, features_of, train_classifier
from jukelite.evaluation.conditioning import (
    ConditioningEvalError,
    EvalSettings,
    Judged,
    evaluate_conditioning,
    floor_metrics,
    format_table,
    metrics,
    synth_vocabulary,
)
from jukelite.evaluation.features import (
    PITCH_HIGH,
    PITCH_LOW,
    TEMPO_BPM,
    feature_names,
    log_mel,
    song_features,
)
from jukelite.evaluation.recognizer import (
    character_error_rate,
    lyric_segments,
    to_units,
    train_recognizer,
)
from jukelite.prior.model import LevelPrior, PriorConfig

pytestmark = pytest.mark.usefixtures("single_thread")

RATE = 8000
N_CTX = 64  # long windows: fewer window changes per sampled token, so sampling is quick
# Two clearly different singers and two clearly different genres keep the end-to-end runs small.
BUNDLE_ARTISTS = ("Nova Lark", "Dusty Static")
BUNDLE_GENRES = ("ambient", "chiptune")
# Just enough of everything for the pipeline to run end to end in a few seconds.
TINY = EvalSettings(seconds=0.25, train_songs=16, test_songs=8, samples_per_pair=2,
                    all_pairs=False, classifier_steps=100, recognizer_steps=10, permutations=5,
                    upsampled_songs=3)


def _songs(seed: int, per_pair: int, seconds: float) -> list:
    pairs = itertools.product(ARTISTS, GENRES)
    return [synth_song(seed * 1000 + i, seconds, RATE, artist=a, genre=g)
            for i, (a, g) in enumerate(p for _ in range(per_pair) for p in pairs)]


@pytest.fixture(scope="module")
def demo_songs() -> tuple[list, list]:
    """A balanced 5 x 4 grid of short 8 kHz demo songs: 3 per pair to train, 2 held out."""
    return _songs(1, 3, 2.0), _songs(2, 2, 2.0)


def _synth_bundle(path: Path, make_bundle, artists=BUNDLE_ARTISTS, genres=BUNDLE_GENRES) -> Path:
    """The conftest tiny bundle (8 kHz, hops 4 and 8, lyrics encoder), labelled with names the
    demo songs know, so it can be evaluated end to end in seconds."""
    make_bundle(path)
    songs = [ManifestEntry(path=Path(f"{i}.wav"), artist=a, genres=[g])
             for i, (a, g) in enumerate(itertools.product(artists, genres))]
    vocabulary = LabelVocabulary.from_entries(songs, max_bow_genre_size=2)
    shared = dict(bins=16, n_ctx=N_CTX, width=16, depth=2, heads=2, blocks=4, attn_order=2,
                  artist_bins=vocabulary.n_artists, genre_bins=vocabulary.n_genres,
                  max_bow_genre_size=2, sample_rate=RATE)
    lyrics = dict(attn_order=6, depth=4, lyrics="encoder", n_tokens=8, lyrics_width=16,
                  lyrics_depth=1, lyrics_heads=2, lyrics_blocks=2)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        top = LevelPrior(PriorConfig(level=1, timing=True, t_bins=8, min_duration=0.01,
                                     max_duration=10.0, **{**shared, **lyrics}))
        upsampler = LevelPrior(PriorConfig(level=0, upsampler=True, cond_down_t=1,
                                           cond_stride=2, cond_width=8, cond_depth=1,
                                           cond_dilation_cycle=1, **shared))
    for prior in (top, upsampler):
        save_prior_level(path, prior.eval(), {
            "labels": vocabulary.to_dict(),
            "lyrics": LyricsTokenizer().to_dict() if prior is top else None})
    return path


# ----------------------------------------------------------------------------- CER
@pytest.mark.parametrize(("ref", "hyp", "cer"), [
    ("kitten", "sitting", 3 / 6),  # k->s, e->i, +g
    ("flaw", "lawn", 2 / 4),  # -f, +n
    ("oh my love", "o my lover", 2 / 10),  # -h, +r; spaces count as characters
    ("the cat", "a cat", 3 / 7),  # t->a, -h, -e
    ("same", "same", 0.0),
    ("abc", "", 1.0),
])
def test_character_error_rate_of_known_strings(ref, hyp, cer):
    assert character_error_rate([ref], [hyp]) == pytest.approx(cer)


def test_character_error_rate_is_total_edits_over_total_reference_length():
    assert character_error_rate(["abcd"], ["abxd"]) == 0.25
    assert character_error_rate(["ab", "cdef"], ["", "cdef"]) == pytest.approx(2 / 6)
    assert character_error_rate(["ab"], ["abab"]) == 1.0  # insertions count: CER can reach 1+
    assert character_error_rate(["Oh, my\nLove!"], ["oh my love"]) == 0.0
    assert character_error_rate([""], [""]) == 0.0
    assert character_error_rate([""], ["ab"]) == 2.0


def test_units():
    assert to_units("  Oh, my\nLOVE-song ") == "oh my love song"
    assert to_units("bopleend vojung th", "vowels") == "oee ou"
    assert character_error_rate(["bopleend"], ["boplend"], "vowels") == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="units must be one of"):
        to_units("a", "phonemes")
    with pytest.raises(ValueError, match="2 hypotheses for 1 references"):
        character_error_rate(["a"], ["a", "b"])


def test_lyric_segments_are_consecutive_words_cut_between_neighbours():
    audio = np.arange(100, dtype=np.float32)[None]  # 10 s at 10 Hz: sample i holds i
    timing = [(0.0, 2.0, "a"), (2.5, 4.0, "b"), (6.0, 9.0, "c")]
    spans = lyric_segments(audio, 10, timing, max_seconds=4.5, margin=0.5)
    assert [text for _, text in spans] == ["a b", "b", "c"]
    assert [(int(a[0, 0]), int(a[0, -1]) + 1) for a, _ in spans] == [(0, 45), (20, 45), (55, 95)]


# ----------------------------------------------------------------------------- features
def test_features_ignore_level_and_channel_layout():
    song = synth_song(0, 1.0, RATE, genre="rock")
    mono = song_features(song.audio, RATE)
    assert mono.shape == (len(feature_names()),)
    assert torch.isfinite(mono).all()
    torch.testing.assert_close(song_features(0.1 * song.audio, RATE), mono, atol=1e-3, rtol=1e-3)
    stereo = np.concatenate([song.audio, song.audio])
    torch.testing.assert_close(song_features(stereo, RATE), mono)
    assert log_mel(song.audio, RATE).shape == (101, 40)  # 100 frames per second
    assert log_mel(torch.zeros(RATE), RATE).shape == (101, 40)  # silence stays finite


def test_features_hear_the_pitch_of_a_tone_and_the_tempo_of_a_click_track():
    rate, seconds = 16000, 4
    t = np.arange(seconds * rate) / rate
    a4 = song_features(np.sin(2 * np.pi * 440.0 * t), rate)  # MIDI 69, pitch class A
    names = feature_names()
    semitones = a4[[names.index(f"semitone_{m}") for m in range(PITCH_LOW, PITCH_HIGH)]]
    chroma = a4[[names.index(f"chroma_{c}") for c in range(12)]]
    assert PITCH_LOW + int(semitones.argmax()) == 69
    assert int(chroma.argmax()) == 9 and float(chroma.sum()) == pytest.approx(1.0)

    clicks = np.zeros(seconds * rate, dtype=np.float32)
    for start in range(0, clicks.size, rate // 2):  # 120 per minute: 10 ms noise bursts
        clicks[start : start + rate // 100] = np.random.default_rng(start).uniform(-1, 1, 160)
    tempo = song_features(clicks, rate)[[names.index(f"tempo_{bpm:.0f}") for bpm in TEMPO_BPM]]
    assert TEMPO_BPM[int(tempo.argmax())] == pytest.approx(120, rel=0.02)
    assert float(tempo.max()) > 0.5  # the clicks recur: strong autocorrelation at their period


# ----------------------------------------------------------------------------- scorers
def test_classifiers_learn_genre_and_artist_from_demo_songs(demo_songs):
    train, held_out = demo_songs
    x_train = features_of([s.audio for s in train], RATE)
    x_test = features_of([s.audio for s in held_out], RATE)
    for kind, chance, least in (("genre", 1 / len(GENRES), 0.75), ("artist", 1 / len(ARTISTS),
                                                                     0.5)):
        model = train_classifier(x_train, [getattr(s, kind) for s in train], RATE, seed=0)
        again = train_classifier(x_train, [getattr(s, kind) for s in train], RATE, seed=0)
        predicted = model.predict_features(x_test)
        assert predicted == again.predict_features(x_test)  # same seed, same model
        score = accuracy(predicted, [getattr(s, kind) for s in held_out])
        assert score > least > 2 * chance, (kind, score)
    assert model.predict([held_out[0].audio]) == predicted[:1]


def test_recognizer_learns_the_sung_words(demo_songs):
    train, _ = demo_songs
    examples = [seg for song in train[:4]
                for seg in lyric_segments(song.audio, RATE, song.lyrics_timing, max_seconds=1.0)]
    audios, texts = [a for a, _ in examples], [t for _, t in examples]
    small = dict(batch_size=4, width=32, lr=1e-2)
    untrained = train_recognizer(examples, RATE, seed=0, steps=0, **small)
    trained = train_recognizer(examples, RATE, seed=0, steps=100, **small)
    before, after = untrained.error_rate(audios, texts), trained.error_rate(audios, texts)
    assert after < 0.6 < 1.0 < before, (before, after)  # an untrained model babbles
    again = train_recognizer(examples, RATE, seed=0, steps=5, **small)
    assert again.transcribe(audios[:3]) == train_recognizer(
        examples, RATE, seed=0, steps=5, **small).transcribe(audios[:3])  # same seed, same model


def test_classifier_generalises_on_separable_features_and_not_on_shuffled_labels():
    generator = torch.Generator().manual_seed(0)
    labels = ["a", "b", "c"]
    centres = 3 * torch.randn(len(labels), 16, generator=generator)

    def blobs(n: int) -> tuple[torch.Tensor, list[str]]:
        index = [i % len(labels) for i in range(n)]
        return centres[index] + torch.randn(n, 16, generator=generator), [labels[i] for i in index]

    (x_train, y_train), (x_test, y_test) = blobs(60), blobs(300)
    model = train_classifier(x_train, y_train, RATE, seed=0)
    assert accuracy(model.predict_features(x_test), y_test) == 1.0
    shuffled = [y_train[i] for i in torch.randperm(len(y_train), generator=generator)]
    guessing = train_classifier(x_train, shuffled, RATE, seed=0)
    assert accuracy(guessing.predict_features(x_test), y_test) == pytest.approx(1 / 3, abs=0.1)


def test_accuracy_rejects_mismatched_lists():
    assert accuracy(["a", "b"], ["a", "a"]) == 0.5
    with pytest.raises(ValueError):
        accuracy(["a"], [])


# ----------------------------------------------------------------------------- evaluation
def test_floor_is_what_shuffled_requests_score():
    asked = [label for label in "ABCD" for _ in range(5)]
    lyrics = [3 * chr(ord("a") + i) for i in range(len(asked))]  # "aaa", "bbb", ...
    follows = Judged(asked, asked, lyrics, asked, asked, lyrics)
    assert metrics(follows, "characters")["artist_accuracy"] == 1.0
    assert metrics(follows, "characters")["lyric_cer"] == 0.0
    floor = floor_metrics(follows, "characters", permutations=400, seed=0)
    # A shuffled request names the heard label with probability 4 * (5/20)^2 = 1/4, and asks
    # for the clip's own lyrics (no errors; otherwise 3 in 3) with probability 1/20.
    assert floor["artist_accuracy"] == pytest.approx(0.25, abs=0.02)
    assert floor["genre_accuracy"] == pytest.approx(0.25, abs=0.02)
    assert floor["lyric_cer"] == pytest.approx(0.95, abs=0.02)
    ignores = Judged(asked, asked, lyrics, ["A"] * 20, ["B"] * 20, ["aaa"] * 20)
    floor = floor_metrics(ignores, "characters", permutations=20, seed=0)
    # Every shuffle scores a model that ignores its requests exactly as the requests did.
    assert metrics(ignores, "characters")["artist_accuracy"] == 0.25
    assert metrics(ignores, "characters")["lyric_cer"] == 0.95
    assert floor["artist_accuracy"] == pytest.approx(0.25, abs=1e-12)
    assert floor["lyric_cer"] == pytest.approx(0.95, abs=1e-12)
    assert "content_artist_accuracy" not in floor  # not judged by the content classifiers
    both = Judged(asked, asked, lyrics, asked, asked, lyrics, asked, ["B"] * 20)
    scores = metrics(both, "characters")
    assert (scores["content_artist_accuracy"], scores["content_genre_accuracy"]) == (1.0, 0.25)
    assert scores["content_per_genre"] == {"A": 0.0, "B": 1.0, "C": 0.0, "D": 0.0}
    floor = floor_metrics(both, "characters", permutations=400, seed=0)
    assert floor["content_artist_accuracy"] == floor["artist_accuracy"]  # the same shuffles
    assert floor["content_genre_accuracy"] == pytest.approx(0.25, abs=1e-12)


def test_synth_vocabulary_maps_normalised_names_and_names_both_vocabularies():
    artists, genres = synth_vocabulary(["unknown", "mira_vale", "someone"], ["unknown", "rock"])
    assert artists == {"mira_vale": "Mira Vale"} and genres == {"rock": "rock"}
    with pytest.raises(ConditioningEvalError, match=r"no artist.*\['ada', 'bo'\].*nova_lark"):
        synth_vocabulary(["unknown", "ada", "bo"], ["unknown", "rock"])
    with pytest.raises(ValueError, match=r"no genre.*\['jazz'\].*chiptune"):
        synth_vocabulary(["unknown", "mira_vale"], ["unknown", "jazz"])


def test_evaluate_conditioning_reports_model_ceiling_and_floor(tmp_path, make_bundle):
    bundle = _synth_bundle(tmp_path / "bundle", make_bundle, (*BUNDLE_ARTISTS, "Someone Else"))
    messages: list[str] = []
    report = evaluate_conditioning(bundle, quick=True, seed=3, progress=messages.append,
                                   settings=TINY, upsampled=True)
    json.dumps(report, allow_nan=False)  # JSON-ready as it is
    assert {"model", "upsampled", "reconstruction", "ceiling", "floor", "settings", "samples",
            "timing_s"} <= set(report)
    samples = report["samples"]
    for key, heard in (("artist", "heard_artist"), ("genre", "heard_genre")):
        assert report["model"][f"{key}_accuracy"] == np.mean([s[key] == s[heard] for s in samples])
        assert report["model"][f"content_{key}_accuracy"] == np.mean(
            [s[key] == s[f"heard_content_{key}"] for s in samples])
    for row in ("model", "upsampled", "reconstruction", "ceiling", "floor"):
        for key in ("artist_accuracy", "genre_accuracy", "content_artist_accuracy",
                    "content_genre_accuracy"):
            assert 0.0 <= report[row][key] <= 1.0, (row, key)
    assert set(report["ceiling"]["content_per_artist"]) == set(BUNDLE_ARTISTS)
    assert report["settings"]["chance"]["content_genre_accuracy"] == 0.5
    assert report["model"]["lyric_cer"] == character_error_rate(
        [s["lyrics"] for s in samples], [s["heard_lyrics"] for s in samples])
    settings = report["settings"]
    assert settings["artists"] == {"dusty_static": "Dusty Static", "nova_lark": "Nova Lark"}
    assert settings["genres"] == {"ambient": "ambient", "chiptune": "chiptune"}
    assert (settings["unscored_artists"], settings["unscored_genres"]) == (["someone_else"], [])
    assert settings["lyrics_conditioned"] is True and settings["lyric_units"] == "characters"
    assert settings["seconds"] == 0.25 and settings["sample_rate"] == RATE
    # The quick run asks for each artist and genre once: 2 pairs, 2 samples each.
    assert (settings["pairs"], settings["train_songs"], settings["test_songs"]) == (2, 16, 8)
    assert report["model"]["clips"] == len(report["samples"]) == 4
    assert {s["artist"] for s in report["samples"]} == set(BUNDLE_ARTISTS)
    assert {s["genre"] for s in report["samples"]} == set(BUNDLE_GENRES)
    assert all(s["lyrics"] for s in report["samples"])  # fresh lyrics were asked for
    assert messages and "ceiling" in " ".join(messages)
    assert report["reconstruction"]["clips"] == report["ceiling"]["clips"] == 8
    assert report["upsampled"]["clips"] == 3 and settings["upsampled"] is True
    assert any("held-out song 3/3" in m for m in messages)
    table = format_table(report)
    assert "artist accuracy" in table and "lyric CER (characters)" in table and "recon" in table
    assert "upsampled" in table.splitlines()[1]
    assert "artist acc. (<2 kHz)" in table and "genre acc. (<2 kHz)" in table


def test_the_upsampled_row_needs_a_level_below_the_top(tmp_path, make_bundle):
    bundle = _synth_bundle(tmp_path / "bundle", make_bundle)
    with pytest.raises(ConditioningEvalError, match="needs levels below the top"):
        evaluate_conditioning(bundle, quick=True, settings=TINY, levels="top", upsampled=True)


@pytest.mark.parametrize(("change", "message"), [
    ({"train_songs": 0}, "train_songs must be >= 1, got 0"),
    ({"recognizer_steps": -1}, "recognizer_steps must be >= 0"),
    ({"units": "phonemes"}, "units must be one of"),
    ({"seconds": 0.0}, "seconds and segment_seconds must be > 0"),
])
def test_eval_settings_are_checked(change, message):
    with pytest.raises(ValueError, match=message):
        EvalSettings(**{**vars(TINY), **change})


def test_evaluate_conditioning_refuses_a_bundle_the_demo_songs_do_not_know(
    tmp_path, make_complete_bundle
):
    bundle = make_complete_bundle(tmp_path / "bundle")  # artists Ada and Bo
    with pytest.raises(ConditioningEvalError, match=r"\['ada', 'bo'\]"):
        evaluate_conditioning(bundle, quick=True)


def test_cli_prints_json_writes_the_report_and_shows_a_table(
    tmp_path, make_bundle, monkeypatch, capsys
):
    bundle = _synth_bundle(tmp_path / "bundle", make_bundle)
    monkeypatch.setattr(conditioning, "QUICK", TINY)
    out = tmp_path / "report" / "conditioning.json"
    code = main(["eval", "conditioning", "--model", str(bundle), "--quick", "--seed", "1",
                 "--levels", "top", "--temperature", "0.9", "-o", str(out)])
    stdout, stderr = capsys.readouterr()
    assert code == 0, stderr
    printed = json.loads(stdout)
    assert printed == json.loads(out.read_text())
    assert printed["settings"]["quick"] is True and printed["settings"]["seed"] == 1
    assert printed["settings"]["levels"] == "top"
    assert printed["settings"]["sampling"] == {"temperature": 0.9}
    assert "floor" in stderr and "ceiling" in stderr and "genre accuracy" in stderr
    assert "genre acc. (<2 kHz)" in stderr
    assert {"content_artist_accuracy", "content_genre_accuracy"} <= set(printed["floor"])


def test_cli_exit_code_2_for_a_vocabulary_the_demo_songs_do_not_know(
    tmp_path, make_complete_bundle, capsys
):
    bundle = make_complete_bundle(tmp_path / "bundle")
    code = main(["eval", "conditioning", "--model", str(bundle), "--quick"])
    _, stderr = capsys.readouterr()
    assert code == EXIT_USAGE
    assert stderr.startswith("error: the bundle's vocabulary has no artist the demo songs know")
    assert "['ada', 'bo']" in stderr and "nova_lark" in stderr


@pytest.mark.parametrize(("extra", "message"), [
    (("--seconds", "20"), "outside the model's timing range"),
    (("--levels", "5"), "levels must be 'all', 'top' or one of [0, 1]"),
    (("--guidance", "-1"), "a guidance scale must be a finite number >= 0"),
    (("--steps", "0"), "decoding steps must be a whole number >= 1"),
])
def test_cli_exit_code_2_for_unusable_options(tmp_path, make_bundle, capsys, extra, message):
    bundle = _synth_bundle(tmp_path / "bundle", make_bundle)
    code = main(["eval", "conditioning", "--model", str(bundle), *extra])
    _, stderr = capsys.readouterr()
    assert code == EXIT_USAGE and message in stderr


def test_cli_without_a_model_and_no_demo_installed_says_where_it_looked(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.setattr(demo_model, "demo_bundle_candidates", lambda: [tmp_path / "nowhere"])
    assert main(["eval", "conditioning", "--quick"]) == EXIT_USAGE
    error = capsys.readouterr().err
    assert "the demo model is not installed" in error and str(tmp_path / "nowhere") in error
