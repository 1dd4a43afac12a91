"""Does a model sing what it is asked to? Artist, genre and lyrics of generated songs, scored.

Scorers are trained on procedural demo songs (:mod:`jukelite.data.synth`), whose artist, genre
and word timings are known exactly: an artist and a genre classifier on full-band features
(:mod:`~jukelite.evaluation.features`), a second artist and genre pair on content below 2 kHz
only (:mod:`~jukelite.evaluation.content`: register, vibrato, long-term spectrum, tempo and
rhythm; the ``content_*`` keys), and a CTC lyrics recognizer. Two classifiers that hear
different things are harder to game: a model that gets the label right only through, say, the
bright buzz of one genre scores on the first and not on the second. Their scores are reported
for each of these rows:

* **ceiling**: on fresh demo songs, i.e. how well the scorers can tell at all;
* **reconstruction**: on the same songs encoded and decoded by the bundle's VQ-VAE at the level
  the samples are rendered from, i.e. the best a prior could reach through that audio path;
* **upsampled** (optional, ``upsampled=True``): on held-out songs whose own top-level codes the
  bundle's upsamplers render, i.e. what the model could reach with a perfect top prior. Next to
  *reconstruction* and *model* it tells whether the upsamplers or the top prior lose a label;
* **model**: on songs the bundle generates for each artist and genre of its vocabulary that the
  demo songs know, with lyrics the recognizer never heard;
* **floor**: on the same generated songs, but against the conditions of *other* samples (a
  random permutation, averaged over several), i.e. what a model ignoring its conditioning gets.

A model that follows its conditioning lands near the ceiling, one that ignores it near the floor.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import torch

from jukelite.data.labels import normalize_label
from jukelite.data.synth import ARTISTS, GENRES, SynthSong, synth_song
from jukelite.evaluation.classifiers import (
    SongClassifier,
    accuracy,
    features_of,
    train_classifier,
)
from jukelite.evaluation.content import content_features
from jukelite.evaluation.recognizer import (
    UNITS,
    LyricsRecognizer,
    character_error_rate,
    lyric_segments,
    train_recognizer,
)
from jukelite.inference.options import SamplingOptions

Progress = Callable[[str], None]

# Independent seed streams, so that training, held-out and lyric songs never share a seed.
_TRAIN, _CEILING, _LYRICS, _GENERATE, _FLOOR, _UPSAMPLE = range(1, 7)


class ConditioningEvalError(ValueError):
    """The bundle cannot be evaluated against the demo songs (vocabulary, song length)."""


@dataclass(frozen=True)
class EvalSettings:
    """How much demo data and training the scorers get and how many songs are generated.

    ``train_songs``/``test_songs`` are spread evenly over the artist x genre grid (at least
    ``min_per_pair`` each); ``all_pairs=False`` generates only enough pairs to ask for every
    artist and every genre once (the quick run), otherwise every pair ``samples_per_pair`` times.
    """

    seconds: float
    train_songs: int
    test_songs: int
    samples_per_pair: int
    all_pairs: bool
    classifier_steps: int
    recognizer_steps: int
    segment_seconds: float = 1.5
    units: str = "characters"
    permutations: int = 20
    min_per_pair: int = 2
    upsampled_songs: int = 20

    def __post_init__(self) -> None:
        for name, least in (("train_songs", 1), ("test_songs", 1), ("samples_per_pair", 1),
                            ("permutations", 1), ("min_per_pair", 1), ("upsampled_songs", 1),
                            ("classifier_steps", 0), ("recognizer_steps", 0)):
            if getattr(self, name) < least:
                raise ValueError(f"{name} must be >= {least}, got {getattr(self, name)}")
        if not (self.seconds > 0 and self.segment_seconds > 0):
            raise ValueError("seconds and segment_seconds must be > 0")
        if self.units not in UNITS:
            raise ValueError(f"units must be one of {sorted(UNITS)}, got {self.units!r}")


QUICK = EvalSettings(seconds=2.0, train_songs=60, test_songs=20, samples_per_pair=1,
                     all_pairs=False, classifier_steps=300, recognizer_steps=300,
                     upsampled_songs=5)
FULL = EvalSettings(seconds=4.0, train_songs=400, test_songs=60, samples_per_pair=2,
                    all_pairs=True, classifier_steps=400, recognizer_steps=2000)


@dataclass
class Scorers:
    """The trained scorers, all at one sample rate: full-band and below-2-kHz classifiers."""

    artist: SongClassifier
    genre: SongClassifier
    lyrics: LyricsRecognizer
    content_artist: SongClassifier
    content_genre: SongClassifier


@dataclass
class Judged:
    """What the scorers heard in a list of clips, next to what was asked for."""

    artists: list[str]
    genres: list[str]
    lyrics: list[str]
    heard_artists: list[str]
    heard_genres: list[str]
    heard_lyrics: list[str]
    # What the band-limited content classifiers heard (None: not scored by them).
    heard_content_artists: list[str] | None = None
    heard_content_genres: list[str] | None = None


# ---------------------------------------------------------------------------- vocabulary
def synth_vocabulary(
    artists: Sequence[str], genres: Sequence[str]
) -> tuple[dict[str, str], dict[str, str]]:
    """The bundle names (normalised) that the demo songs know, mapped to the demo-song names.

    Raises :class:`ConditioningEvalError` naming both vocabularies when no artist or no genre
    is shared, since then nothing can be scored.
    """
    known_artists = {normalize_label(a): a for a in ARTISTS}
    known_genres = {normalize_label(g): g for g in GENRES}
    artist_map = {a: known_artists[normalize_label(a)] for a in artists
                  if normalize_label(a) in known_artists}
    genre_map = {g: known_genres[normalize_label(g)] for g in genres
                 if normalize_label(g) in known_genres}
    for kind, mapping, theirs, ours in (
        ("artist", artist_map, artists, known_artists),
        ("genre", genre_map, genres, known_genres),
    ):
        if not mapping:
            shown = [name for name in theirs if name != "unknown"]
            raise ConditioningEvalError(
                f"the bundle's vocabulary has no {kind} the demo songs know, so the "
                f"conditioning cannot be scored: bundle {kind}s {shown or 'none'}; demo-song "
                f"{kind}s {sorted(ours)} (the evaluation needs a model trained on "
                "`jukelite data synth` songs)"
            )
    return artist_map, genre_map


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """The scorers' tensors are tiny: extra intra-op threads only add overhead, and on a busy
    machine they spin against each other (a 2-core run measured 8x slower with 2 threads)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _seed(seed: int, stream: int, index: int) -> int:
    return int(np.random.SeedSequence([seed, stream, index]).generate_state(1)[0])


def _grid_songs(
    pairs: Sequence[tuple[str, str]], n_songs: int, min_per_pair: int, seconds: float,
    sample_rate: int, seed: int, stream: int,
) -> list[SynthSong]:
    per_pair = max(min_per_pair, math.ceil(n_songs / len(pairs)))
    return [
        synth_song(_seed(seed, stream, i), seconds, sample_rate, artist=artist, genre=genre)
        for i, (artist, genre) in enumerate(
            pair for _ in range(per_pair) for pair in pairs)
    ]


# ---------------------------------------------------------------------------- scorers
def train_scorers(
    songs: Sequence[SynthSong],
    sample_rate: int,
    seed: int = 0,
    classifier_steps: int = 300,
    recognizer_steps: int = 300,
    segment_seconds: float = 1.5,
    units: str = "characters",
    progress: Progress | None = None,
) -> tuple[Scorers, dict[str, int]]:
    """Train both pairs of artist and genre classifiers and the lyrics recognizer on demo songs.

    Both classifier pairs learn from the same songs; the content pair from features of the
    audio below 2 kHz only. The recognizer learns from short spans cut with the word timings
    and from the whole clips (which is how it is used). Returns the scorers and the
    training-set sizes.
    """
    say = progress or (lambda message: None)
    say(f"training the artist and genre classifiers on {len(songs)} demo songs")
    audios = [song.audio for song in songs]
    artists, genres = [s.artist for s in songs], [s.genre for s in songs]
    features = features_of(audios, sample_rate)
    artist = train_classifier(features, artists, sample_rate, seed, classifier_steps)
    genre = train_classifier(features, genres, sample_rate, seed + 1, classifier_steps)
    say("training the band-limited (< 2 kHz) content classifiers on the same songs")
    content = features_of(audios, sample_rate, content_features)
    content_artist = train_classifier(content, artists, sample_rate, seed + 2, classifier_steps,
                                      featurize=content_features)
    content_genre = train_classifier(content, genres, sample_rate, seed + 3, classifier_steps,
                                     featurize=content_features)
    examples: list[tuple[np.ndarray, str]] = []
    for song in songs:
        examples += lyric_segments(song.audio, sample_rate, song.lyrics_timing, segment_seconds)
        examples.append((song.audio, song.lyrics))
    say(f"training the lyrics recognizer: {recognizer_steps} steps on {len(examples)} sung "
        "spans and clips")
    lyrics = train_recognizer(examples, sample_rate, seed, recognizer_steps, units=units)
    scorers = Scorers(artist, genre, lyrics, content_artist, content_genre)
    return scorers, {"songs": len(songs), "lyric_examples": len(examples)}


def judge(
    scorers: Scorers, audios: Sequence[Any], artists: Sequence[str], genres: Sequence[str],
    lyrics: Sequence[str],
) -> Judged:
    """Run every scorer over clips whose requested artist, genre and lyrics are given."""
    rate = scorers.artist.sample_rate
    features = features_of(audios, rate)
    content = features_of(audios, rate, content_features)
    return Judged(
        list(artists), list(genres), list(lyrics),
        scorers.artist.predict_features(features),
        scorers.genre.predict_features(features),
        scorers.lyrics.transcribe(audios),
        scorers.content_artist.predict_features(content),
        scorers.content_genre.predict_features(content),
    )


def _per_label(heard: Sequence[str], asked: Sequence[str]) -> dict[str, float]:
    return {
        label: accuracy([h for h, a in zip(heard, asked, strict=True) if a == label],
                        [a for a in asked if a == label])
        for label in sorted(set(asked))
    }


def _content_pairs(judged: Judged) -> list[tuple[str, list[str], list[str]]]:
    """(key, heard, asked) of the content classifiers' labels, where they were scored."""
    pairs = []
    if judged.heard_content_artists is not None:
        pairs.append(("content_artist", judged.heard_content_artists, judged.artists))
    if judged.heard_content_genres is not None:
        pairs.append(("content_genre", judged.heard_content_genres, judged.genres))
    return pairs


def metrics(judged: Judged, units: str) -> dict[str, Any]:
    """Accuracies and CER of one judged set, with per-label accuracies (``content_*``: the
    band-limited classifiers, where they judged it)."""
    result = {
        "artist_accuracy": accuracy(judged.heard_artists, judged.artists),
        "genre_accuracy": accuracy(judged.heard_genres, judged.genres),
        "lyric_cer": character_error_rate(judged.lyrics, judged.heard_lyrics, units),
        "clips": len(judged.artists),
        "per_artist": _per_label(judged.heard_artists, judged.artists),
        "per_genre": _per_label(judged.heard_genres, judged.genres),
    }
    content = _content_pairs(judged)
    for key, heard, asked in content:
        result[f"{key}_accuracy"] = accuracy(heard, asked)
    for key, heard, asked in content:  # content_per_artist, content_per_genre
        result[key.replace("content_", "content_per_")] = _per_label(heard, asked)
    return result


def floor_metrics(judged: Judged, units: str, permutations: int, seed: int) -> dict[str, Any]:
    """The scores of the same transcripts and labels against shuffled requests (mean of many)."""
    rng = np.random.default_rng(_seed(seed, _FLOOR, 0))
    sums = {"artist_accuracy": 0.0, "genre_accuracy": 0.0, "lyric_cer": 0.0}
    content = _content_pairs(judged)
    sums.update({f"{key}_accuracy": 0.0 for key, _, _ in content})
    for _ in range(permutations):
        order = rng.permutation(len(judged.artists))
        sums["artist_accuracy"] += accuracy(judged.heard_artists,
                                            [judged.artists[i] for i in order])
        sums["genre_accuracy"] += accuracy(judged.heard_genres, [judged.genres[i] for i in order])
        sums["lyric_cer"] += character_error_rate(
            [judged.lyrics[i] for i in order], judged.heard_lyrics, units)
        for key, heard, asked in content:  # the same shuffle as the full-band scorers
            sums[f"{key}_accuracy"] += accuracy(heard, [asked[i] for i in order])
    return {**{k: v / permutations for k, v in sums.items()}, "permutations": permutations}


# ---------------------------------------------------------------------------- the evaluation
def _song_samples(jb: Any, seconds: float | None, default: float) -> int:
    """Song length in samples: whole top-level tokens, inside the top prior's timing range.

    A length the user asked for must fit; the default is moved into the range if needed.
    """
    hop, rate = jb.hop_lengths[jb.top_level], jb.sample_rate
    top = jb.prior_configs[jb.top_level]
    span = top.timing_range if top.timing else None
    asked = default if seconds is None else seconds
    if not (math.isfinite(asked) and asked > 0):
        raise ConditioningEvalError(f"seconds must be a positive number, got {asked}")
    if seconds is None and span is not None:
        asked = min(max(asked, span.min_duration), span.max_duration)
    total = math.ceil(asked * rate / hop) * hop
    if span is not None:
        if seconds is None:
            while total >= span.max_samples and total > hop:
                total -= hop
        try:
            span.check_total(total)
        except ValueError as exc:
            raise ConditioningEvalError(str(exc)) from exc
    return total


def _request_pairs(
    artists: Sequence[str], genres: Sequence[str], all_pairs: bool
) -> list[tuple[str, str]]:
    """Every (artist, genre) pair, or the fewest pairs that still name each of them once."""
    if all_pairs:
        return list(itertools.product(artists, genres))
    n = max(len(artists), len(genres))
    return [(artists[i % len(artists)], genres[i % len(genres)]) for i in range(n)]


def evaluate_conditioning(
    model: Any = None,
    quick: bool = False,
    seed: int = 0,
    progress: Progress | None = None,
    seconds: float | None = None,
    device: str = "cpu",
    levels: str | int = "all",
    settings: EvalSettings | None = None,
    upsampled: bool = False,
    sampling: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Score how well a bundle follows artist, genre and lyrics; see the module docstring.

    ``model`` is a :class:`jukelite.api.Jukebox`, a bundle path, or None for the bundled demo
    model. ``settings`` (default :data:`QUICK` or :data:`FULL`) sizes the run; ``seconds``
    overrides its clip length. ``upsampled`` adds the *upsampled* row (the first
    ``settings.upsampled_songs`` held-out songs; needs a level below the top). Returns a
    JSON-ready dict with ``model``, ``reconstruction``, ``ceiling``, ``floor`` (each with
    ``artist_accuracy``, ``genre_accuracy``, ``lyric_cer`` and the band-limited scorers'
    ``content_artist_accuracy`` and ``content_genre_accuracy``), ``settings``,
    ``samples`` (what was asked and heard per generated clip) and ``timing_s``. ``sampling``
    (``temperature``, ``guidance``, ``steps``, ``top_k``, ``top_p``: `SamplingOptions` fields)
    is passed to every generated and upsampled song; unset ones are the bundle's defaults.
    """
    from jukelite.api import Jukebox, load

    def say(message: str) -> None:
        if progress is not None:
            progress(message)

    began = time.perf_counter()
    jb = model if isinstance(model, Jukebox) else load(model, device=device)
    settings = settings or (QUICK if quick else FULL)
    sampling = dict(sampling or {})
    SamplingOptions.build(**sampling)  # a bad option fails before the scorers train
    artist_map, genre_map = synth_vocabulary(jb.artists, jb.genres)
    if str(levels) not in ("all", "top", *map(str, jb.levels)):  # fail before any training
        raise ConditioningEvalError(
            f"levels must be 'all', 'top' or one of {jb.levels}, got {levels!r}")
    if upsampled and str(levels) in ("top", str(jb.top_level)):
        raise ConditioningEvalError(
            "the upsampled row renders the top-level codes of real songs through the "
            f"upsamplers, so it needs levels below the top (level {jb.top_level}); got {levels!r}")
    rate = jb.sample_rate
    if rate < 4000:
        raise ConditioningEvalError(f"the demo songs need a sample rate of at least 4000 Hz; "
                                    f"{jb.bundle} runs at {rate} Hz")
    total = _song_samples(jb, seconds, settings.seconds)
    clip_seconds = total / rate
    synth_pairs = list(itertools.product(artist_map.values(), genre_map.values()))
    timing: dict[str, float] = {}

    say(f"making demo songs to train the scorers ({len(artist_map)} artists x "
        f"{len(genre_map)} genres, {clip_seconds:.2f} s at {rate} Hz)")
    start = time.perf_counter()
    train = _grid_songs(synth_pairs, settings.train_songs, settings.min_per_pair, clip_seconds,
                        rate, seed, _TRAIN)
    with _one_thread():
        scorers, sizes = train_scorers(train, rate, seed, settings.classifier_steps,
                                       settings.recognizer_steps, settings.segment_seconds,
                                       settings.units, progress)
    timing["train_scorers"] = time.perf_counter() - start

    say("ceiling: scoring held-out demo songs")
    start = time.perf_counter()
    held_out = _grid_songs(synth_pairs, settings.test_songs, 1, clip_seconds, rate, seed,
                           _CEILING)
    with _one_thread():
        ceiling = judge(scorers, [s.audio for s in held_out], [s.artist for s in held_out],
                        [s.genre for s in held_out], [s.lyrics for s in held_out])
    timing["ceiling"] = time.perf_counter() - start

    lyric_model = any(c.lyrics != "none" for c in jb.prior_configs.values())
    pairs = _request_pairs(list(artist_map), list(genre_map), settings.all_pairs)
    audios, asked_artists, asked_genres, asked_lyrics = [], [], [], []
    start = time.perf_counter()
    for i, (artist, genre) in enumerate(pairs):
        say(f"model: generating {settings.samples_per_pair} x {clip_seconds:.2f} s for "
            f"{artist} / {genre} ({i + 1}/{len(pairs)})")
        lyrics = synth_song(_seed(seed, _LYRICS, i), clip_seconds, rate,
                            artist=artist_map[artist], genre=genre_map[genre]).lyrics
        song = jb.generate(
            artist=artist, genre=genre, lyrics=lyrics if lyric_model else "",
            seconds=(total - 0.5) / rate,  # exactly `total` samples, whatever the rounding
            n_samples=settings.samples_per_pair, seed=_seed(seed, _GENERATE, i), levels=levels,
            **sampling,
        )
        rendered_level = song.level
        for clip in song.audio.float().cpu().numpy():
            audios.append(clip)
            asked_artists.append(artist_map[artist])
            asked_genres.append(genre_map[genre])
            asked_lyrics.append(lyrics)
    timing["generate"] = time.perf_counter() - start

    say(f"reconstruction: held-out demo songs through the VQ-VAE (level {rendered_level})")
    start = time.perf_counter()
    with torch.no_grad():
        rebuilt = [
            jb.decode(jb.encode(torch.as_tensor(s.audio, dtype=torch.float32).reshape(1, 1, -1),
                                levels=[rendered_level]), level=rendered_level)[0].cpu().numpy()
            for s in held_out
        ]
    with _one_thread():
        reconstruction = judge(scorers, rebuilt, ceiling.artists, ceiling.genres, ceiling.lyrics)
    timing["reconstruction"] = time.perf_counter() - start

    rows = {}
    if upsampled:
        start = time.perf_counter()
        rows["upsampled"] = _upsampled(jb, scorers, held_out[: settings.upsampled_songs], levels,
                                       lyric_model, sampling, seed, say)
        timing["upsampled"] = time.perf_counter() - start

    say("model: scoring generated songs")
    start = time.perf_counter()
    with _one_thread():
        generated = judge(scorers, audios, asked_artists, asked_genres, asked_lyrics)
    timing["score"] = time.perf_counter() - start
    timing["total"] = time.perf_counter() - began
    units = settings.units
    return {
        "model": metrics(generated, units),
        "reconstruction": metrics(reconstruction, units),
        **{name: metrics(judged, units) for name, judged in rows.items()},
        "ceiling": metrics(ceiling, units),
        "floor": floor_metrics(generated, units, settings.permutations, seed),
        "settings": {
            "bundle": str(jb.bundle),
            "quick": quick,
            "seed": seed,
            "seconds": clip_seconds,
            "sample_rate": rate,
            "levels": levels,
            "upsampled": upsampled,
            "temperature": {str(level): t for level, t in jb.default_temperature.items()},
            "sampling": sampling,
            "lyrics_conditioned": lyric_model,
            "lyric_units": units,
            "artists": artist_map,
            "genres": genre_map,
            "unscored_artists": [a for a in jb.artists if a != "unknown" and a not in artist_map],
            "unscored_genres": [g for g in jb.genres if g != "unknown" and g not in genre_map],
            "pairs": len(pairs),
            "samples_per_pair": settings.samples_per_pair,
            "train_songs": sizes["songs"],
            "train_lyric_examples": sizes["lyric_examples"],
            "test_songs": len(held_out),
            "chance": {"artist_accuracy": 1 / len(artist_map),
                       "genre_accuracy": 1 / len(genre_map),
                       "content_artist_accuracy": 1 / len(artist_map),
                       "content_genre_accuracy": 1 / len(genre_map)},
            "run": asdict(replace(settings, seconds=clip_seconds)),
        },
        "samples": [
            {"artist": a, "genre": g, "lyrics": text, "heard_artist": ha, "heard_genre": hg,
             "heard_lyrics": hl, "heard_content_artist": ca, "heard_content_genre": cg}
            for a, g, text, ha, hg, hl, ca, cg in zip(
                generated.artists, generated.genres, generated.lyrics, generated.heard_artists,
                generated.heard_genres, generated.heard_lyrics,
                generated.heard_content_artists or [], generated.heard_content_genres or [],
                strict=True)
        ],
        "timing_s": {k: round(v, 3) for k, v in timing.items()},
    }


def _upsampled(
    jb: Any, scorers: Scorers, songs: Sequence[SynthSong], levels: str | int, lyric_model: bool,
    sampling: dict[str, Any], seed: int, say: Progress,
) -> Judged:
    """Real songs' top-level codes rendered by the upsamplers with their own labels and lyrics."""
    audios = []
    for i, song in enumerate(songs):
        say(f"upsampled: rendering the top-level codes of held-out song {i + 1}/{len(songs)}")
        audio = torch.as_tensor(song.audio, dtype=torch.float32).reshape(1, 1, -1)
        with torch.no_grad():
            top = jb.encode(audio, levels=[jb.top_level])
        rendered = jb.upsample(top, artist=song.artist, genre=song.genre,
                               lyrics=song.lyrics if lyric_model else "",
                               seed=_seed(seed, _UPSAMPLE, i), levels=levels, **sampling)
        audios.append(rendered.audio[0].float().cpu().numpy())
    with _one_thread():
        return judge(scorers, audios, [s.artist for s in songs], [s.genre for s in songs],
                     [s.lyrics for s in songs])


def format_table(report: dict[str, Any]) -> str:
    """The report's headline numbers as a small table (floor, model, [upsampled,] recon,
    ceiling)."""
    s = report["settings"]
    columns = [("floor", "floor"), ("model", "model")]
    if "upsampled" in report:
        columns.append(("upsampled", "upsampled"))
    columns += [("recon", "reconstruction"), ("ceiling", "ceiling")]
    lines = [
        f"conditioning of {s['bundle']}: {report['model']['clips']} generated clips of "
        f"{s['seconds']:.2f} s ({s['pairs']} artist/genre pairs x {s['samples_per_pair']}), "
        f"scorers trained on {s['train_songs']} demo songs, ceiling on {s['test_songs']}",
        f"{'metric':<22}" + "".join(f"{title:>10}" for title, _ in columns) + f"{'chance':>8}",
    ]
    rows = [("artist accuracy", "artist_accuracy"), ("genre accuracy", "genre_accuracy")]
    content = "content_artist_accuracy" in report["ceiling"]  # not in reports made before it
    if content:
        rows += [("artist acc. (<2 kHz)", "content_artist_accuracy"),
                 ("genre acc. (<2 kHz)", "content_genre_accuracy")]
    rows.append((f"lyric CER ({s['lyric_units']})", "lyric_cer"))
    for name, key in rows:
        chance = s["chance"].get(key)
        lines.append(
            f"{name:<22}" + "".join(f"{report[part][key]:>10.3f}" for _, part in columns)
            + f"{'-' if chance is None else f'{chance:.3f}':>8}"
        )
    if "upsampled" in report:
        lines.append(f"upsampled: {report['upsampled']['clips']} held-out songs' own top-level "
                     "codes through the upsamplers, the best a perfect top prior allows")
    lines.append("recon: the held-out songs encoded and decoded by the VQ-VAE, the best the "
                 "model's audio path allows")
    if content:
        lines.append("(<2 kHz): a second pair of classifiers on content below 2 kHz only "
                     "(register, vibrato, long-term spectrum, tempo and rhythm)")
    lines.append("accuracy: higher is better; CER: lower is better"
                 + ("" if s["lyrics_conditioned"] else " (this model ignores lyrics)"))
    return "\n".join(lines)


__all__ = [
    "FULL",
    "QUICK",
    "ConditioningEvalError",
    "EvalSettings",
    "Judged",
    "Scorers",
    "evaluate_conditioning",
    "floor_metrics",
    "format_table",
    "judge",
    "metrics",
    "synth_vocabulary",
    "train_scorers",
]
