"""Artist/genre vocabularies, timing ranges and the label vector ``y`` (Jukebox semantics).

Names are normalised with Jukebox's "v2" rule so that ``"Alan Jackson"``, ``"alan-jackson"`` and
``"ALAN_JACKSON"`` are one artist, and a genre is a *bag of words* (``"blues rock"`` -> ``blues``,
``rock``) so that unseen genre combinations still get a meaningful embedding. Id 0 is reserved for
"unknown" in both vocabularies.

The label vector handed to a prior is one int64 tensor per example (see :func:`label_vector`)::

    [total_length, offset, sample_length, artist_id, genre_id_1 .. genre_id_G, lyric_1 .. lyric_n]

with lengths in audio samples and unused genre slots set to -1.
"""

from __future__ import annotations

import difflib
import re
import warnings
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from jukelite.data.manifest import ManifestEntry

UNKNOWN = "unknown"
UNKNOWN_ID = 0
#: Genre slots past the song's own words hold this value (masked out of the bag of words).
GENRE_PAD = -1
VOCAB_FORMAT = 1

# Positions in the label vector ``y``; genre ids start at GENRES and lyric tokens follow them.
TOTAL_LENGTH, OFFSET, SAMPLE_LENGTH, ARTIST, GENRES = 0, 1, 2, 3, 4

_NOT_ALNUM = re.compile(r"[^a-z0-9]+")


class UnknownLabelError(ValueError):
    """An artist or genre the vocabulary does not contain; the message suggests close names."""

    def __init__(self, kind: str, name: str, known: Sequence[str]) -> None:
        self.kind = kind
        self.name = name
        norm = normalize_label(name)
        self.suggestions = difflib.get_close_matches(norm, list(known), n=5, cutoff=0.6)
        shown = repr(name) if norm == name else f"{name!r} (normalised {norm!r})"
        if self.suggestions:
            hint = "did you mean " + ", ".join(repr(s) for s in self.suggestions) + "?"
        else:
            sample = ", ".join(repr(s) for s in list(known)[:10])
            more = ", ..." if len(known) > 10 else ""
            hint = f"known {kind}s: {sample}{more}" if known else f"the vocabulary has no {kind}s"
        super().__init__(
            f"unknown {kind} {shown}; {hint} ({len(known)} {kind}s in the vocabulary; "
            f"'{UNKNOWN}' is always accepted)"
        )


def normalize_label(s: str) -> str:
    """Jukebox v2 name normalisation: lowercase, runs of non-[a-z0-9] -> one ``_``, stripped."""
    return _NOT_ALNUM.sub("_", s.lower()).strip("_")


def genre_words(genre: str) -> list[str]:
    """The v2 bag of words of one genre string (``"r&b"`` -> ``["r", "b"]``)."""
    return [w for w in normalize_label(genre).split("_") if w]


def _warn(message: str) -> None:
    warnings.warn(message, UserWarning, stacklevel=3)


class LabelVocabulary:
    """Artist and genre-word ids; index 0 of each list is ``"unknown"``.

    Built deterministically from a manifest (names sorted), stored in the model bundle as JSON.
    """

    def __init__(
        self, artists: Sequence[str], genres: Sequence[str], max_bow_genre_size: int = 5
    ) -> None:
        if max_bow_genre_size < 1:
            raise ValueError(f"max_bow_genre_size must be >= 1, got {max_bow_genre_size}")
        self.artists = self._check("artists", artists)
        self.genres = self._check("genres", genres)
        self.max_bow_genre_size = int(max_bow_genre_size)
        self._artist_ids = {name: i for i, name in enumerate(self.artists)}
        self._genre_ids = {name: i for i, name in enumerate(self.genres)}

    @staticmethod
    def _check(kind: str, names: Sequence[str]) -> list[str]:
        names = list(names)
        if not names or names[0] != UNKNOWN:
            raise ValueError(f"{kind}[0] must be {UNKNOWN!r} (id 0 is reserved), got {names[:1]}")
        bad = [n for n in names if not isinstance(n, str) or normalize_label(n) != n or not n]
        if bad:
            raise ValueError(f"{kind} must be non-empty normalised names, got {bad[:5]}")
        dups = sorted(n for n, c in Counter(names).items() if c > 1)
        if dups:
            raise ValueError(f"{kind} contain duplicates: {dups[:5]}")
        return names

    @classmethod
    def from_entries(
        cls, entries: Iterable[ManifestEntry], max_bow_genre_size: int = 5, min_count: int = 1
    ) -> LabelVocabulary:
        """Every artist / genre word used by at least ``min_count`` songs, sorted by name."""
        artist_counts: Counter[str] = Counter()
        genre_counts: Counter[str] = Counter()
        for entry in entries:
            artist_counts[normalize_label(entry.artist)] += 1
            genre_counts.update({w for g in entry.genres for w in genre_words(g)})
        keep = {UNKNOWN, ""}

        def chosen(counts: Counter[str]) -> list[str]:
            names = (n for n, c in counts.items() if c >= min_count and n not in keep)
            return [UNKNOWN, *sorted(names)]

        return cls(chosen(artist_counts), chosen(genre_counts), max_bow_genre_size)

    @property
    def n_artists(self) -> int:
        return len(self.artists)

    @property
    def n_genres(self) -> int:
        return len(self.genres)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form; list position is the id."""
        return {
            "format": VOCAB_FORMAT,
            "normalization": "v2",
            "max_bow_genre_size": self.max_bow_genre_size,
            "artists": list(self.artists),
            "genres": list(self.genres),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LabelVocabulary:
        missing = [k for k in ("artists", "genres", "max_bow_genre_size") if k not in data]
        if missing:
            raise ValueError(f"label vocabulary is missing keys {missing}; has {sorted(data)}")
        if data.get("format", VOCAB_FORMAT) != VOCAB_FORMAT:
            raise ValueError(
                f"label vocabulary format {data['format']!r} is not supported (expected "
                f"{VOCAB_FORMAT})"
            )
        if data.get("normalization", "v2") != "v2":
            raise ValueError(f"label normalization {data['normalization']!r} is unsupported; "
                             "only 'v2' is")
        return cls(data["artists"], data["genres"], int(data["max_bow_genre_size"]))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LabelVocabulary) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return (f"LabelVocabulary({self.n_artists} artists, {self.n_genres} genre words, "
                f"max_bow_genre_size={self.max_bow_genre_size})")

    def artist_id(self, name: str, strict: bool = True) -> int:
        """Id of an artist; unknown names raise (``strict``) or map to 0 with a warning."""
        norm = normalize_label(name)
        if norm in ("", UNKNOWN):
            return UNKNOWN_ID
        if norm in self._artist_ids:
            return self._artist_ids[norm]
        error = UnknownLabelError("artist", name, self.artists[1:])
        if strict:
            raise error
        _warn(f"{error}; using id {UNKNOWN_ID}")
        return UNKNOWN_ID

    def genre_ids(self, genres: str | Sequence[str], strict: bool = True) -> list[int]:
        """Bag-of-words ids of the song's genres, padded with -1 to ``max_bow_genre_size``.

        Words of all genres are pooled in order without repeats; words past the limit are dropped
        with a warning. No genre at all counts as ``"unknown"``.
        """
        if isinstance(genres, str):
            genres = [genres]
        words = list(dict.fromkeys(w for g in genres for w in genre_words(g)))
        if not words:
            words = [UNKNOWN]
        if len(words) > self.max_bow_genre_size:
            dropped = words[self.max_bow_genre_size:]
            words = words[: self.max_bow_genre_size]
            _warn(f"genres {list(genres)} have more than {self.max_bow_genre_size} words; "
                  f"dropped {dropped}")
        ids = []
        for word in words:
            if word in self._genre_ids:
                ids.append(self._genre_ids[word])
                continue
            error = UnknownLabelError("genre", word, self.genres[1:])
            if strict:
                raise error
            _warn(f"{error}; using id {UNKNOWN_ID}")
            ids.append(UNKNOWN_ID)
        return ids + [GENRE_PAD] * (self.max_bow_genre_size - len(ids))


# ---------------------------------------------------------------------------------------------
# Timing


@dataclass(frozen=True)
class TimingRange:
    """The song lengths a top-level prior's timing embedding can represent, [min, max) seconds."""

    min_duration: float
    max_duration: float
    sample_rate: int

    def __post_init__(self) -> None:
        if self.sample_rate <= 0:
            raise ValueError(f"sample_rate must be > 0, got {self.sample_rate}")
        if not (0 <= self.min_duration < self.max_duration):
            raise ValueError(
                "need 0 <= min_duration < max_duration, got "
                f"min_duration={self.min_duration}, max_duration={self.max_duration}"
            )

    @property
    def min_samples(self) -> float:
        return self.min_duration * self.sample_rate

    @property
    def max_samples(self) -> float:
        return self.max_duration * self.sample_rate

    def check_total(self, total_samples: float) -> None:
        """Raise if a song of ``total_samples`` samples is out of range, saying what is valid."""
        if self.min_samples <= total_samples < self.max_samples:
            return
        seconds = total_samples / self.sample_rate
        raise ValueError(
            f"song length {seconds:.2f} s ({total_samples:g} samples at {self.sample_rate} Hz) is "
            f"outside the model's timing range: the total length must be at least "
            f"{self.min_duration:.2f} s and less than {self.max_duration:.2f} s "
            f"([{self.min_samples:g}, {self.max_samples:g}) samples)"
        )

    def to_dict(self) -> dict[str, Any]:
        return {"min_duration": self.min_duration, "max_duration": self.max_duration,
                "sample_rate": self.sample_rate}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TimingRange:
        return cls(float(data["min_duration"]), float(data["max_duration"]),
                   int(data["sample_rate"]))


def range_bins(
    start: float | torch.Tensor,
    end: float | torch.Tensor | None,
    n_time: int,
    t_bins: int,
    lo: float,
    hi: float,
    clamp: bool = False,
) -> torch.Tensor:
    """Bin ids of ``n_time`` positions spread linearly over [start, end) (Jukebox RangeEmbedding).

    ``position_i = start + (end - start) * i / n_time`` and
    ``bin_i = floor(t_bins * (position_i - lo) / (hi - lo))``; with ``clamp`` the end is first
    clamped to [lo, hi] (the relative-position embedding). Computed in float32 like Jukebox, so
    imported weights see the same bins. ``start`` must lie in [lo, hi). Returns int64 of shape
    ``start.shape + (n_time,)`` (a trailing size-1 axis of ``start`` is dropped).
    """
    if n_time < 1 or t_bins < 1:
        raise ValueError(f"n_time and t_bins must be >= 1, got n_time={n_time}, t_bins={t_bins}")
    if not hi > lo:
        raise ValueError(f"need hi > lo, got lo={lo}, hi={hi}")
    s = torch.as_tensor(start, dtype=torch.float32)
    if s.dim() == 2 and s.shape[-1] == 1:
        s = s.squeeze(-1)
    if not ((s >= lo) & (s < hi)).all():
        raise ValueError(f"start must be in [{lo:g}, {hi:g}), got {s.tolist()}")
    if n_time == 1:
        position = s.unsqueeze(-1)
    else:
        if end is None:
            raise ValueError(f"end is required when n_time > 1 (n_time={n_time})")
        e = torch.as_tensor(end, dtype=torch.float32).reshape(s.shape)
        if clamp:
            e = e.clamp(lo, hi)
        fraction = torch.arange(n_time, dtype=torch.float32, device=s.device) / n_time
        position = s.unsqueeze(-1) + (e - s).unsqueeze(-1) * fraction
    bins = torch.floor(t_bins * ((position - lo) / (hi - lo))).long()
    if bins.numel() and (bins.min() < 0 or bins.max() >= t_bins):
        raise ValueError(
            f"window [{s.tolist()}, {end}) runs outside the range [{lo:g}, {hi:g}) "
            f"(bins must be in [0, {t_bins})); pass clamp=True or shorten the window"
        )
    return bins


# ---------------------------------------------------------------------------------------------
# The label vector


def label_vector(
    total_length: int,
    offset: int,
    sample_length: int,
    artist_id: int,
    genre_ids: Sequence[int],
    lyric_tokens: Sequence[int] = (),
) -> torch.Tensor:
    """Jukebox's ``y`` for one example, int64 of length ``4 + len(genre_ids) + len(lyric_tokens)``.

    Layout: ``[total_length, offset, sample_length, artist_id, genre_ids..., lyric_tokens...]``;
    lengths are in audio samples (``offset`` = start of the current window, ``sample_length`` =
    the prior's window length), genre slots are padded with -1 (see
    :meth:`LabelVocabulary.genre_ids`), lyric tokens are the window's characters (0 = padding).
    Use the ``TOTAL_LENGTH``/``OFFSET``/``SAMPLE_LENGTH``/``ARTIST``/``GENRES`` indices to read it.
    """
    problems = []
    if total_length <= 0:
        problems.append(f"total_length must be > 0, got {total_length}")
    if not 0 <= offset < max(total_length, 1):
        problems.append(f"offset must be in [0, total_length={total_length}), got {offset}")
    if sample_length <= 0:
        problems.append(f"sample_length must be > 0, got {sample_length}")
    if artist_id < 0:
        problems.append(f"artist_id must be >= 0, got {artist_id}")
    if not genre_ids or any(g < GENRE_PAD for g in genre_ids):
        problems.append(f"genre_ids must be non-empty ids >= -1, got {list(genre_ids)}")
    if any(t < 0 for t in lyric_tokens):
        problems.append("lyric_tokens must be >= 0")
    if problems:
        raise ValueError("bad label vector: " + "; ".join(problems))
    values = [total_length, offset, sample_length, artist_id, *genre_ids, *lyric_tokens]
    return torch.tensor([int(v) for v in values], dtype=torch.int64)
