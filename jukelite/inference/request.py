"""A sampling request: checked against the bundle before any sampling starts, then stored.

`SampleRequest` holds everything that decides a run's codes and is written into `song.json`,
so `resume` can rebuild it; `new_request` checks a caller's labels, length, lyrics and options
up front (a wrong artist fails in milliseconds, not after minutes of sampling).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from jukelite.bundle import DEFAULT_STEPS, Bundle, BundleError
from jukelite.data.labels import UnknownLabelError
from jukelite.inference.options import (
    SamplingOptions,
    SamplingSettings,
    check_int,
    check_number,
    check_text,
)
from jukelite.prior.model import SongConditions
from jukelite.strict_config import StrictConfig

MODES = ("generate", "continue", "upsample")


class LyricsWarning(UserWarning):
    """Lyrics that the model cannot take as written (characters dropped, or no lyric prior)."""


@dataclass
class SampleRequest(StrictConfig):
    """Everything that decides a run's codes; stored in `song.json` so a run can resume."""

    mode: str = "generate"  # generate | continue | upsample
    artist: str = "unknown"
    genres: list[str] = field(default_factory=lambda: ["unknown"])
    lyrics: str = ""
    total_samples: int = 0  # song length in audio samples, a multiple of the top level's hop
    # the length the labels, timing and lyric windows describe (Jukebox's total length), when
    # only the first `total_samples` of a longer song are sampled; 0 = total_samples
    song_samples: int = 0
    n_samples: int = 1
    seed: int = 0
    temperature: dict[str, float] = field(default_factory=dict)  # level -> T
    guidance: dict[str, float] = field(default_factory=dict)  # level -> scale (absent: 1)
    steps: dict[str, int] = field(default_factory=dict)  # parallel level -> decoding steps
    top_k: int = 0
    top_p: float = 0.0
    lowest_level: int = 0  # sample down to this level and render it
    max_batch_size: int | None = None
    prime: dict[str, Any] | None = None  # continue: {"source", "samples"}
    alignment: bool = False

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.n_samples < 1:
            raise ValueError(f"n_samples must be >= 1, got {self.n_samples}")
        if self.max_batch_size is not None and self.max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {self.max_batch_size}")

    def settings(self, level: int) -> SamplingSettings:
        """How this level's logits become codes."""
        return SamplingSettings(self.temperature[str(level)], self.top_k, self.top_p)

    def guidance_scale(self, level: int) -> float:
        """Classifier-free guidance of this level (1: none)."""
        return float(self.guidance.get(str(level), 1.0))

    def decoding_steps(self, level: int) -> int:
        """Decoding steps per window of this level, if its prior is parallel."""
        return int(self.steps.get(str(level), DEFAULT_STEPS))

    def sampled_levels(self, bundle: Bundle) -> list[int]:
        """The levels this request samples or keeps, finest first."""
        return [level for level in bundle.levels if level >= self.lowest_level]

    def song_conditions(self, bundle: Bundle, level: int) -> SongConditions:
        """The request's labels and lyrics as the ids prior `level` of the bundle reads."""
        return song_conditions(bundle, level, self.artist, self.genres, self.lyrics,
                               self.timing_samples)

    @property
    def timing_samples(self) -> int:
        """The song length the conditioning describes (>= the sampled length)."""
        return self.song_samples or self.total_samples


def song_conditions(
    bundle: Bundle,
    level: int,
    artist: str,
    genres: str | Sequence[str],
    lyrics: str,
    total_samples: int,
) -> SongConditions:
    """A song's labels and lyrics as the ids prior `level` of `bundle` reads, through that
    prior's own vocabulary and tokenizer (an imported Jukebox bundle numbers artists
    differently in its top prior and its upsamplers). Unknown artists and genres raise
    `UnknownLabelError` naming the closest known ones."""
    artist_id, genre_ids = 0, [0]
    vocabulary = bundle.label_vocabulary(level)
    if vocabulary is not None:
        artist_id = vocabulary.artist_id(artist)
        genre_ids = vocabulary.genre_ids(genres) or [0]
    tokenizer = bundle.lyrics_tokenizer(level)
    tokens = tokenizer.encode(lyrics) if tokenizer is not None and lyrics else []
    return SongConditions(total_samples, artist_id, tuple(genre_ids), tuple(tokens))


def lyric_level(bundle: Bundle) -> int | None:
    """The highest prior conditioned on lyrics (Jukebox's top prior), or None."""
    levels = [level for level, c in bundle.prior_configs.items() if c.lyrics != "none"]
    return max(levels, default=None)


def _check_labels(bundle: Bundle, artist: str, genres: list[str]) -> None:
    """Every prior's vocabulary must know the artist and genres; with several vocabularies
    the error says which prior level refused the name."""
    vocabularies = {level: bundle.label_vocabulary(level) for level in bundle.prior_configs}
    distinct = {id(v) for v in vocabularies.values() if v is not None}
    for level, vocabulary in sorted(vocabularies.items(), reverse=True):
        if vocabulary is None:
            continue
        try:
            vocabulary.artist_id(artist)  # unknown names raise with the closest ones
            vocabulary.genre_ids(genres)
        except UnknownLabelError as exc:
            if len(distinct) == 1:
                raise
            where = f"prior level {level} ({vocabulary.normalization} vocabulary)"
            raise exc.at(where) from None


def song_length(bundle: Bundle, seconds: float, name: str = "seconds") -> int:
    """Song length in samples, rounded up to whole top-level codes (`name`: the argument the
    length came from, for the message)."""
    seconds = check_number(name, seconds)
    top_hop = bundle.hop_lengths[bundle.top_level]
    return math.ceil(seconds * bundle.sample_rate / top_hop) * top_hop


def lowest_level(bundle: Bundle, levels: str | int) -> int:
    """The level `levels` ("all", "top" or a level) samples down to."""
    if levels == "all":
        return bundle.levels[0]
    if levels == "top":
        return bundle.top_level
    level = None  # 1.5 or True must not be read as a level
    if isinstance(levels, str) and levels.strip().isdigit():
        level = int(levels)
    elif isinstance(levels, int) and not isinstance(levels, bool):
        level = levels
    if level not in bundle.levels:
        raise ValueError(f"levels must be 'all', 'top' or one of {bundle.levels}, got {levels!r}")
    return level


def _guidance(bundle: Bundle, guidance: Any, sampled: list[int]) -> dict[int, float]:
    """The guidance scale of each sampled level that has one other than 1 (None: the bundle's
    defaults); every such prior must have been trained for it (learned null conditioning)."""
    if guidance is None:
        guidance = bundle.default_guidance
    if isinstance(guidance, dict):
        unknown = sorted(set(guidance) - set(bundle.levels))
        if unknown:
            raise ValueError(f"guidance given for level(s) {unknown}; levels are "
                             f"{bundle.levels}")
        scales = {level: float(g) for level, g in guidance.items() if level in sampled}
    else:
        scales = dict.fromkeys(sampled, float(guidance))
    scales = {level: g for level, g in scales.items() if g != 1.0}
    untrained = sorted(level for level in scales if not bundle.prior_configs[level].guidance)
    if untrained:
        raise ValueError(f"guidance needs priors trained with train.cond_dropout > 0 (a learned "
                         f"null artist, genre and lyrics); prior level(s) {untrained} were not: "
                         "leave them at guidance 1 (per level: --guidance LEVEL=SCALE for the "
                         "levels that were)")
    return scales


def _steps(bundle: Bundle, steps: Any, sampled: list[int]) -> dict[int, int]:
    """Decoding steps of each sampled parallel level: the request's, else the bundle's."""
    parallel = bundle.default_steps
    if steps is not None and not parallel:
        raise ValueError("steps are for parallel priors (model.decoding: parallel); every prior "
                         "of this bundle decodes autoregressively")
    if isinstance(steps, dict):
        wrong = sorted(set(steps) - set(parallel))
        if wrong:
            raise ValueError(f"steps given for level(s) {wrong}; the parallel levels are "
                             f"{sorted(parallel)}")
        chosen = {**parallel, **steps}
    else:
        chosen = parallel if steps is None else dict.fromkeys(parallel, int(steps))
    return {level: n for level, n in chosen.items() if level in sampled}


def _temperatures(bundle: Bundle, temperature: Any) -> dict[int, float]:
    if isinstance(temperature, dict):
        unknown = sorted(set(temperature) - set(bundle.levels))
        if unknown:
            raise ValueError(f"temperature given for level(s) {unknown}; levels are "
                             f"{bundle.levels}")
        return {level: temperature.get(level, bundle.default_temperature[level])
                for level in bundle.levels}
    if temperature is None:
        return dict(bundle.default_temperature)
    return dict.fromkeys(bundle.levels, float(temperature))


def check_genres(genre: Any) -> list[str]:
    """One genre or a list of them, as a non-empty list of strings."""
    if isinstance(genre, str):
        return [genre]
    if not isinstance(genre, list | tuple) or not all(isinstance(g, str) for g in genre):
        shown = type(genre).__name__ if not isinstance(genre, list | tuple) else (
            "a list holding " + ", ".join(sorted({type(g).__name__ for g in genre})))
        raise ValueError(f"genre must be a string or a list of strings, got {shown}")
    if not genre:
        raise ValueError("give at least one genre")
    return list(genre)


def new_request(
    bundle: Bundle,
    mode: str,
    artist: str,
    genre: str | list[str],
    lyrics: str,
    total_samples: int,
    n_samples: int,
    options: SamplingOptions,
    song_samples: int | None = None,
) -> SampleRequest:
    """Check everything up front, before minutes of sampling: labels, length, lyrics, options.
    Lyrics the model cannot take as written give a `LyricsWarning` at the caller's call.
    `song_samples` is the length of the whole song when only its first `total_samples` are
    sampled (its timing and lyric windows are those of the whole song)."""
    check_text("artist", artist)
    genres = check_genres(genre)
    check_text("lyrics", lyrics)
    check_int("n_samples", n_samples, minimum=1)
    check_int("total_samples", total_samples, minimum=1)
    check_int("song_samples", song_samples, minimum=1, optional=True)
    if song_samples is not None and song_samples < total_samples:
        raise ValueError(f"the song length ({song_samples / bundle.sample_rate:.2f} s) must be "
                         f"at least the sampled length ({total_samples / bundle.sample_rate:.2f}"
                         " s)")
    lowest = lowest_level(bundle, options.levels)
    sampled = [level for level in bundle.levels if level >= lowest
               and not (mode == "upsample" and level == bundle.top_level)]
    bundle.check_complete(sampled)
    stale = {level: why for level, why in bundle.stale_priors().items() if level in sampled}
    if stale:  # codes from another VQ-VAE would decode to noise after minutes of sampling
        raise BundleError("; ".join(stale[level] for level in sorted(stale, reverse=True)))
    _check_labels(bundle, artist, genres)
    top = bundle.prior_configs.get(bundle.top_level)
    if top is not None and top.timing:
        top.timing_range.check_total(song_samples or total_samples)
    per_level = _temperatures(bundle, options.temperature)
    for t in per_level.values():
        SamplingSettings(t, options.top_k, options.top_p)  # validates
    guidance = _guidance(bundle, options.guidance, sampled)
    steps = _steps(bundle, options.steps, sampled)
    if lyrics and not any(c.lyrics != "none" for c in bundle.prior_configs.values()):
        warnings.warn("this model is not conditioned on lyrics: they are ignored",
                      LyricsWarning, stacklevel=3)
    elif lyrics:
        level = lyric_level(bundle)
        tokenizer = bundle.lyrics_tokenizer(level) if level is not None else None
        message = tokenizer.normalize(lyrics).warning() if tokenizer is not None else None
        if message:
            warnings.warn(f"lyrics: {message}", LyricsWarning, stacklevel=3)
    if options.alignment and (top is None or top.lyrics == "none"):
        raise ValueError("alignment needs a lyrics-conditioned top prior; this one has none")
    return SampleRequest(
        mode=mode, artist=artist, genres=genres, lyrics=lyrics, total_samples=total_samples,
        song_samples=song_samples or 0, n_samples=n_samples, seed=options.seed,
        temperature={str(level): t for level, t in per_level.items()},
        guidance={str(level): g for level, g in guidance.items()},
        steps={str(level): n for level, n in steps.items()},
        top_k=options.top_k, top_p=options.top_p, lowest_level=lowest,
        max_batch_size=options.max_batch_size, alignment=options.alignment,
    )


def primed_samples(
    bundle: Bundle, available: int, prime_seconds: float | None, total_samples: int, source: str
) -> int:
    """How much of a prompt of `available` samples a continuation keeps: `prime_seconds` of it
    (default all), cut to whole top-level codes, and shorter than the song."""
    top_hop = bundle.hop_lengths[bundle.top_level]
    prime_seconds = check_number("prime_seconds", prime_seconds, optional=True)
    if prime_seconds is not None:
        available = min(available, round(prime_seconds * bundle.sample_rate))
    primed = available // top_hop * top_hop
    if primed < top_hop:
        raise ValueError(f"the prompt ({source}) is shorter than one top-level token "
                         f"({top_hop} samples): nothing to continue")
    if primed >= total_samples:
        raise ValueError(
            f"the prompt ({primed / bundle.sample_rate:.2f} s used of {source}) must be "
            f"shorter than the song ({total_samples / bundle.sample_rate:.2f} s): raise seconds"
        )
    return primed
