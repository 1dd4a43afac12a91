"""Artist/genre vocabularies, timing ranges and the label vector ``y`` (Jukebox semantics).

Names are normalised with Jukebox's "v2" rule so that ``"Alan Jackson"``, ``"alan-jackson"`` and
``"ALAN_JACKSON"`` are one artist, and a genre is a *bag of words* (``"blues rock"`` -> ``blues``,
``rock``) so that unseen genre combinations still get a meaningful embedding. Id 0 is reserved for
"unknown" in both vocabularies.

Models imported from OpenAI Jukebox instead use the ids of Jukebox's own id files
(``jukebox/data/ids/v{2,3}_{artist,genre}_ids.txt``, read by ``jukelite.convert.jukebox_ids``):
normalisation ``"jukebox_v2"`` (5b, 5b_lyrics and the upsamplers) and ``"jukebox_v3"``
(1b_lyrics), where several names may share an id and ids may be sparse. Their lookups follow
Jukebox's ``ArtistGenreProcessor`` exactly, so a name gets the id the released weights learnt.

The label vector handed to a prior is one int64 tensor per example (see :func:`label_vector`)::

    [total_length, offset, sample_length, artist_id, genre_id_1 .. genre_id_G, lyric_1 .. lyric_n]

with lengths in audio samples and unused genre slots set to -1.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
import warnings
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from jukelite.data.manifest import ManifestEntry

UNKNOWN = "unknown"
UNKNOWN_ID = 0
#: Genre slots past the song's own words hold this value (masked out of the bag of words).
GENRE_PAD = -1
#: JSON form of jukelite's own vocabularies: name lists, list position = id.
VOCAB_FORMAT = 1
#: JSON form of Jukebox id-file vocabularies: name -> id maps plus the embedding sizes.
JUKEBOX_VOCAB_FORMAT = 2
#: Normalisations of Jukebox id files, with their default bag-of-words size.
JUKEBOX_NORMALIZATIONS = {"jukebox_v2": 5, "jukebox_v3": 1}
NORMALIZATIONS = ("v2", *JUKEBOX_NORMALIZATIONS)

# Positions in the label vector ``y``; genre ids start at GENRES and lyric tokens follow them.
TOTAL_LENGTH, OFFSET, SAMPLE_LENGTH, ARTIST, GENRES = 0, 1, 2, 3, 4

_NOT_ALNUM = re.compile(r"[^a-z0-9]+")


class UnknownLabelError(ValueError):
    """An artist or genre the vocabulary does not contain; the message suggests close names.

    ``normalized`` is the key that was looked up (default: the v2 normalisation of ``name``);
    ``where`` (e.g. ``"prior level 2"``) prefixes the message when a bundle has several
    vocabularies.
    """

    def __init__(
        self,
        kind: str,
        name: str,
        known: Sequence[str],
        normalized: str | None = None,
        where: str | None = None,
    ) -> None:
        self.kind = kind
        self.name = name
        self.known = list(known)
        self.normalized = norm = normalize_label(name) if normalized is None else normalized
        self.where = where
        self.suggestions = difflib.get_close_matches(norm, self.known, n=5, cutoff=0.6)
        shown = repr(name) if norm == name else f"{name!r} (normalised {norm!r})"
        if self.suggestions:
            hint = "did you mean " + ", ".join(repr(s) for s in self.suggestions) + "?"
        else:
            sample = ", ".join(repr(s) for s in self.known[:10])
            more = ", ..." if len(known) > 10 else ""
            hint = f"known {kind}s: {sample}{more}" if known else f"the vocabulary has no {kind}s"
        prefix = f"{where}: " if where else ""
        super().__init__(
            f"{prefix}unknown {kind} {shown}; {hint} ({len(known)} {kind}s in the vocabulary; "
            f"'{UNKNOWN}' is always accepted)"
        )

    def at(self, where: str) -> UnknownLabelError:
        """The same error, saying which vocabulary (e.g. which prior level) refused the name."""
        return UnknownLabelError(self.kind, self.name, self.known, self.normalized, where)


def normalize_label(s: str) -> str:
    """Jukebox v2 name normalisation: lowercase, runs of non-[a-z0-9] -> one ``_``, stripped."""
    return _NOT_ALNUM.sub("_", s.lower()).strip("_")


def genre_words(genre: str) -> list[str]:
    """The v2 bag of words of one genre string (``"r&b"`` -> ``["r", "b"]``)."""
    return [w for w in normalize_label(genre).split("_") if w]


def without_invisible(name: str) -> str:
    """``name`` without invisible format characters (Unicode category Cf: zero-width, bidi
    marks, BOM), which cannot be typed or seen but are part of some Jukebox id-file names."""
    return "".join(c for c in name if unicodedata.category(c) != "Cf")


def _invisible_free_aliases(ids: Mapping[str, int]) -> dict[str, int]:
    """Alias -> id for names holding invisible characters, where the alias is unambiguous.

    Jukebox's v3 genre file has names such as ``"jazz\\u200e"`` (a left-to-right mark), which
    Jukebox only matches when typed with the mark. The visible spelling is accepted too, unless
    it is already a name of its own (``"jazz fusion"`` is id 295 while ``"jazz fusion\\u200e"``
    is 107: the plain name keeps Jukebox's id) or stands for names with different ids.
    """
    found: dict[str, set[int]] = {}
    for name, i in ids.items():
        alias = without_invisible(name)
        if alias != name and alias:
            found.setdefault(alias, set()).add(i)
    return {alias: ids_.pop() for alias, ids_ in found.items()
            if len(ids_) == 1 and alias not in ids}


def _warn(message: str) -> None:
    warnings.warn(message, UserWarning, stacklevel=3)


class LabelVocabulary:
    """Artist and genre(-word) ids of a prior's label embeddings.

    ``normalization`` says how names become ids:

    * ``"v2"`` (jukelite's own): Jukebox's v2 names, genres a bag of words without repeats;
      built deterministically from a manifest (names sorted), index 0 of each list is
      ``"unknown"`` and list position = id.
    * ``"jukebox_v2"`` / ``"jukebox_v3"``: Jukebox's id files (see :meth:`from_ids`); many names
      may share an id, ids may be sparse, and ``artist_bins``/``genre_bins`` (the embedding rows)
      may exceed the largest id.

    ``artists``/``genres`` list the names in id order; ``n_artists``/``n_genres`` are the
    embedding sizes (every id is below them). Stored in the model bundle as JSON.
    """

    def __init__(
        self, artists: Sequence[str], genres: Sequence[str], max_bow_genre_size: int = 5
    ) -> None:
        if max_bow_genre_size < 1:
            raise ValueError(f"max_bow_genre_size must be >= 1, got {max_bow_genre_size}")
        artists = self._check("artists", artists)
        genres = self._check("genres", genres)
        self._setup("v2", {n: i for i, n in enumerate(artists)},
                    {n: i for i, n in enumerate(genres)}, max_bow_genre_size,
                    len(artists), len(genres))

    def _setup(
        self, normalization: str, artist_ids: dict[str, int], genre_ids: dict[str, int],
        max_bow_genre_size: int, artist_bins: int, genre_bins: int,
    ) -> None:
        self.normalization = normalization
        self.max_bow_genre_size = int(max_bow_genre_size)
        self.artist_bins, self.genre_bins = int(artist_bins), int(genre_bins)
        self._maps = {"artist": artist_ids, "genre": genre_ids}  # the names as stored
        self._lookup: dict[str, dict[str, int]] = {}
        self._known: dict[str, list[str]] = {}
        for kind, ids in self._maps.items():
            aliases = _invisible_free_aliases(ids)
            self._lookup[kind] = {**aliases, **ids}
            # Suggestions show what can be typed: the visible alias where there is one.
            shown = []
            for name in self._names(ids):
                alias = without_invisible(name)
                shown.append(alias if aliases.get(alias) == ids[name] else name)
            self._known[kind] = [n for n in dict.fromkeys(shown) if n not in ("", UNKNOWN)]
        self.artists = self._names(artist_ids)
        self.genres = self._names(genre_ids)

    @staticmethod
    def _names(ids: Mapping[str, int]) -> list[str]:
        """Names in id order, names sharing an id in stored order."""
        return sorted(ids, key=ids.__getitem__)

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
    def from_ids(
        cls,
        artist_ids: Mapping[str, int],
        genre_ids: Mapping[str, int],
        normalization: str = "jukebox_v2",
        max_bow_genre_size: int | None = None,
        artist_bins: int | None = None,
        genre_bins: int | None = None,
    ) -> LabelVocabulary:
        """A vocabulary of Jukebox id-file names (``name -> id``, names as Jukebox keys them:
        the file's name lowercased); bins default to the largest id + 1 and
        ``max_bow_genre_size`` to Jukebox's (5 for v2, 1 for v3)."""
        if normalization not in JUKEBOX_NORMALIZATIONS:
            raise ValueError(f"normalization must be one of {sorted(JUKEBOX_NORMALIZATIONS)} "
                             f"for id maps, got {normalization!r}")
        if max_bow_genre_size is None:
            max_bow_genre_size = JUKEBOX_NORMALIZATIONS[normalization]
        if max_bow_genre_size < 1:
            raise ValueError(f"max_bow_genre_size must be >= 1, got {max_bow_genre_size}")
        maps, bins = {}, {}
        for kind, ids, given in (("artist", artist_ids, artist_bins),
                                 ("genre", genre_ids, genre_bins)):
            bad = [(n, i) for n, i in ids.items() if not isinstance(n, str)
                   or isinstance(i, bool) or not isinstance(i, int) or i < 0]
            if bad:
                raise ValueError(f"{kind} ids must map names to ids >= 0, got {bad[:5]}")
            top = max(ids.values(), default=0)
            size = top + 1 if given is None else int(given)
            if size <= top:
                raise ValueError(f"{kind}_bins={size} is too small: the largest {kind} id is "
                                 f"{top}, so the embedding needs at least {top + 1} rows")
            maps[kind], bins[kind] = dict(ids), size
        vocab = cls.__new__(cls)
        vocab._setup(normalization, maps["artist"], maps["genre"], max_bow_genre_size,
                     bins["artist"], bins["genre"])
        return vocab

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
    def is_jukebox(self) -> bool:
        """Whether the ids are those of Jukebox's id files."""
        return self.normalization in JUKEBOX_NORMALIZATIONS

    @property
    def n_artists(self) -> int:
        """Artist embedding rows (every artist id is below it)."""
        return self.artist_bins

    @property
    def n_genres(self) -> int:
        """Genre embedding rows (every genre id is below it)."""
        return self.genre_bins

    @property
    def artist_ids(self) -> dict[str, int]:
        """Stored artist name -> id (aliases of names with invisible characters excluded)."""
        return dict(self._maps["artist"])

    @property
    def genre_id_map(self) -> dict[str, int]:
        """Stored genre (word) name -> id (aliases excluded)."""
        return dict(self._maps["genre"])

    def known(self, kind: str) -> list[str]:
        """The names of ``kind`` ("artist" or "genre") a caller can type, "unknown" excluded."""
        return list(self._known[kind])

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: name lists (position = id) for "v2", name -> id maps for Jukebox's."""
        if not self.is_jukebox:
            return {
                "format": VOCAB_FORMAT,
                "normalization": "v2",
                "max_bow_genre_size": self.max_bow_genre_size,
                "artists": list(self.artists),
                "genres": list(self.genres),
            }
        return {
            "format": JUKEBOX_VOCAB_FORMAT,
            "normalization": self.normalization,
            "max_bow_genre_size": self.max_bow_genre_size,
            "artist_bins": self.artist_bins,
            "genre_bins": self.genre_bins,
            "artist_ids": dict(self._maps["artist"]),
            "genre_ids": dict(self._maps["genre"]),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LabelVocabulary:
        fmt = data.get("format", VOCAB_FORMAT)
        if fmt == JUKEBOX_VOCAB_FORMAT:
            keys = ("normalization", "artist_ids", "genre_ids", "max_bow_genre_size",
                    "artist_bins", "genre_bins")
            missing = [k for k in keys if k not in data]
            if missing:
                raise ValueError(f"label vocabulary (format {fmt}) is missing keys {missing}; "
                                 f"has {sorted(data)}")
            return cls.from_ids(data["artist_ids"], data["genre_ids"], data["normalization"],
                                int(data["max_bow_genre_size"]), int(data["artist_bins"]),
                                int(data["genre_bins"]))
        missing = [k for k in ("artists", "genres", "max_bow_genre_size") if k not in data]
        if missing:
            raise ValueError(f"label vocabulary is missing keys {missing}; has {sorted(data)}")
        if fmt != VOCAB_FORMAT:
            raise ValueError(
                f"label vocabulary format {data['format']!r} is not supported (expected "
                f"{VOCAB_FORMAT} or {JUKEBOX_VOCAB_FORMAT})"
            )
        if data.get("normalization", "v2") != "v2":
            raise ValueError(f"label normalization {data['normalization']!r} is unsupported in "
                             f"format {VOCAB_FORMAT}; only 'v2' is")
        return cls(data["artists"], data["genres"], int(data["max_bow_genre_size"]))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LabelVocabulary) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        if not self.is_jukebox:
            return (f"LabelVocabulary({self.n_artists} artists, {self.n_genres} genre words, "
                    f"max_bow_genre_size={self.max_bow_genre_size})")
        return (f"LabelVocabulary({self.normalization}: {len(self.artists)} artist names in "
                f"{self.n_artists} ids, {len(self.genres)} genre names in {self.n_genres} ids, "
                f"max_bow_genre_size={self.max_bow_genre_size})")

    def _key(self, name: str) -> str:
        """The name as the vocabulary keys it: v3 lowercases only, v2 normalises."""
        return name.lower() if self.normalization == "jukebox_v3" else normalize_label(name)

    def _id(self, kind: str, name: str, key: str, strict: bool) -> int:
        """Id of one key; unknown keys raise (``strict``) or map to 0 with a warning."""
        ids = self._lookup[kind]
        if key in ids:
            return ids[key]
        if key in ("", UNKNOWN):
            return UNKNOWN_ID
        error = UnknownLabelError(kind, name, self._known[kind], key)
        if strict:
            raise error
        _warn(f"{error}; using id {UNKNOWN_ID}")
        return UNKNOWN_ID

    def artist_id(self, name: str, strict: bool = True) -> int:
        """Id of an artist; unknown names raise (``strict``) or map to 0 with a warning."""
        return self._id("artist", name, self._key(name), strict)

    def genre_ids(self, genres: str | Sequence[str], strict: bool = True) -> list[int]:
        """Bag-of-words ids of the song's genres, padded with -1 to ``max_bow_genre_size``.

        "v2": words of all genres are pooled in order without repeats; words past the limit are
        dropped with a warning. Jukebox's vocabularies do as Jukebox: "jukebox_v2" keeps repeated
        words and "jukebox_v3" takes each genre whole, and more words than the limit is an error
        (Jukebox asserts). No genre at all counts as ``"unknown"``.
        """
        if isinstance(genres, str):
            genres = [genres]
        if self.is_jukebox:
            return self._jukebox_genre_ids(list(genres), strict)
        words = list(dict.fromkeys(w for g in genres for w in genre_words(g)))
        if not words:
            words = [UNKNOWN]
        if len(words) > self.max_bow_genre_size:
            dropped = words[self.max_bow_genre_size:]
            words = words[: self.max_bow_genre_size]
            _warn(f"genres {list(genres)} have more than {self.max_bow_genre_size} words; "
                  f"dropped {dropped}")
        ids = [self._id("genre", word, word, strict) for word in words]
        return ids + [GENRE_PAD] * (self.max_bow_genre_size - len(ids))

    def _jukebox_genre_ids(self, genres: list[str], strict: bool) -> list[int]:
        """Jukebox's ``get_genre_ids`` for each genre, in order (one genre string gives exactly
        Jukebox's ids); empty genre strings are skipped, none at all is "unknown"."""
        if self.normalization == "jukebox_v3":
            words = [(g, g.lower()) for g in genres if g]
        else:
            words = [(w, w) for g in genres if normalize_label(g)
                     for w in normalize_label(g).split("_")]
        words = words or [(UNKNOWN, UNKNOWN)]
        if len(words) > self.max_bow_genre_size:
            shown = genres[0] if len(genres) == 1 else genres
            raise ValueError(
                f"genre {shown!r} gives {len(words)} genre "
                f"{'words' if self.normalization == 'jukebox_v2' else 'names'} "
                f"{[key for _, key in words]}, but this {self.normalization} vocabulary takes "
                f"at most {self.max_bow_genre_size} per song (max_bow_genre_size)"
            )
        ids = [self._id("genre", name, key, strict) for name, key in words]
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
