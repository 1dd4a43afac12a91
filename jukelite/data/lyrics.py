"""Lyrics: Jukebox's character vocabularies, ASCII folding, and the per-window lyric selection.

Lyrics are modelled character by character (no BPE), case-sensitive, over a small ASCII set, so
every input is first folded to ASCII (``é`` -> ``e``, ``—`` -> ``--``, curly quotes -> straight)
and whatever still falls outside the vocabulary is removed *and reported*, because silently losing
part of the lyrics is the most common surprise with Jukebox.

A prior sees only ``n_tokens`` characters per audio window. Without timings they are chosen by
linear alignment (characters assumed spread evenly over the song, window centred on the audio
window's midpoint); with word timings from the manifest the words sung inside the window are used.

Two normalisations: ``"jukelite"`` (the default, above) and ``"jukebox"``, which is exactly
Jukebox's ``TextProcessor.clean`` (``unidecode``, backslash -> newline, then every character
outside the vocabulary deleted) so that imported Jukebox priors see the ids they were trained on.
``unidecode`` is an optional dependency (``pip install jukelite[jukebox]``); without it the
jukelite folding stands in for it, which gives the same result for ASCII text.
"""

from __future__ import annotations

import unicodedata
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

#: Characters of each vocabulary; id = 1 + index, id 0 is ``<unk>`` (also the padding token).
VOCABS: dict[str, str] = {
    "v2": "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.,:;!?-+'\"()[] \t\n",
    # Jukebox's 1b_lyrics vocabulary accidentally lacks '+'; kept for imported models.
    "v3": "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.,:;!?-'\"()[] \t\n",
}
PAD_ID = 0
#: How lyrics are reduced to the vocabulary: jukelite's folding or Jukebox's exact rule.
NORMALIZATIONS = ("jukelite", "jukebox")

# Characters NFKD does not decompose to ASCII, folded the way unidecode does (mostly); "" removes
# the character silently (invisible formatting characters are not lyrics).
_FOLD: dict[str, str] = {
    "ß": "ss", "ẞ": "SS", "æ": "ae", "Æ": "AE", "ø": "o", "Ø": "O", "œ": "oe", "Œ": "OE",
    "ł": "l", "Ł": "L", "đ": "d", "Đ": "D", "ð": "d", "Ð": "D", "þ": "th", "Þ": "Th",
    "ı": "i", "ħ": "h", "Ħ": "H", "ŧ": "t", "Ŧ": "T", "ŋ": "ng", "Ŋ": "NG",
    "‘": "'", "’": "'", "‚": "'", "‛": "'", "′": "'", "`": "'", "´": "'",
    "“": '"', "”": '"', "„": '"', "‟": '"', "″": '"', "«": '"', "»": '"', "‹": "'", "›": "'",
    "‐": "-", "‑": "-", "‒": "-", "–": "-", "—": "--", "―": "--", "−": "-",
    "¡": "!", "¿": "?", "…": "...",
    "\u2028": "\n", "\u2029": "\n",
    "\u200b": "", "\u200c": "", "\u200d": "", "\u2060": "", "\ufeff": "", "\u00ad": "",
}


def _fold_char(c: str) -> str:
    """One character folded towards ASCII; may still contain characters outside any vocabulary."""
    if c in _FOLD:
        return _FOLD[c]
    if c.isascii():
        return c
    out = []
    for d in unicodedata.normalize("NFKD", c):
        if unicodedata.combining(d):
            continue  # accents split off by NFKD
        out.append(_FOLD.get(d, d))
    return "".join(out)


@dataclass(frozen=True)
class NormalizedLyrics:
    """Lyrics reduced to the vocabulary, plus what was dropped (original character -> count)."""

    text: str
    dropped: dict[str, int] = field(default_factory=dict)

    @property
    def n_dropped(self) -> int:
        return sum(self.dropped.values())

    def warning(self) -> str | None:
        """A one-line report of dropped characters for the CLI, or None when nothing was lost."""
        if not self.dropped:
            return None
        ranked = sorted(self.dropped.items(), key=lambda kv: -kv[1])  # stable: first seen first
        parts = ", ".join(f"{c!r} x{n}" for c, n in ranked)
        n = self.n_dropped
        return f"dropped {n} character{'s' if n != 1 else ''} not in the lyrics vocabulary: {parts}"


def _vocab(version: str) -> str:
    if version not in VOCABS:
        raise ValueError(f"unknown lyrics vocabulary {version!r}; valid: {sorted(VOCABS)}")
    return VOCABS[version]


def normalize_lyrics(
    text: str, version: str = "v2", normalization: str = "jukelite"
) -> NormalizedLyrics:
    """Reduce ``text`` to the ``version`` vocabulary, reporting what was dropped.

    ``"jukelite"``: fold to ASCII and keep only vocabulary characters, as Jukebox's
    ``TextProcessor.clean`` does, except that a character is kept or dropped whole and that
    ``\\r\\n`` and a lone ``\\r`` become ``\\n``; like Jukebox, a backslash becomes a newline and
    whitespace is otherwise kept as written (no collapsing). ``"jukebox"``: Jukebox's rule
    exactly (see :func:`jukebox_clean`).
    """
    if normalization == "jukebox":
        return jukebox_clean(text, version)
    if normalization != "jukelite":
        raise ValueError(f"unknown lyrics normalization {normalization!r}; valid: "
                         f"{list(NORMALIZATIONS)}")
    allowed = set(_vocab(version))
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\\", "\n")
    out: list[str] = []
    dropped: Counter[str] = Counter()
    for c in text:
        folded = _fold_char(c)
        if all(d in allowed for d in folded):
            out.append(folded)
        else:  # all or nothing: "½" must not become "12"
            dropped[c] += 1
    return NormalizedLyrics("".join(out), dict(dropped))


_warned_no_unidecode = False


def _transliterator() -> Callable[[str], str] | None:
    """``unidecode`` when installed (imported on first use: it is an optional dependency)."""
    try:
        from unidecode import unidecode
    except ImportError:
        return None
    return unidecode


def jukebox_clean(text: str, version: str = "v2") -> NormalizedLyrics:
    """Jukebox's ``TextProcessor.clean``: ``unidecode(text)``, backslash -> newline, then every
    character outside the vocabulary deleted (v2 keeps ``+``, v3 does not; ``\\r`` is deleted).

    Transliteration goes character by character (unidecode maps each code point on its own,
    so the text is the same) to report which input characters lost something: ``"½"`` becomes
    ``" 12"`` as in Jukebox and is reported, ``"é"`` -> ``"e"`` is not. Invisible format
    characters transliterated to nothing and the ``\\r`` of ``\\r\\n`` (the line break survives)
    are dropped silently. Without ``unidecode`` the jukelite folding stands in, with a warning
    (once) when non-ASCII text may therefore tokenise differently from Jukebox.
    """
    global _warned_no_unidecode
    allowed = set(_vocab(version))
    transliterate = _transliterator()
    if transliterate is None and not _warned_no_unidecode and not text.isascii():
        _warned_no_unidecode = True
        warnings.warn(
            "unidecode is not installed (pip install jukelite[jukebox]): non-ASCII lyrics are "
            "folded by jukelite's own table and may tokenise differently from Jukebox",
            UserWarning, stacklevel=3)
    fold = transliterate or _fold_char
    out: list[str] = []
    dropped: Counter[str] = Counter()
    for index, c in enumerate(text):
        ascii_ = c if c.isascii() else fold(c)
        ascii_ = ascii_.replace("\\", "\n")
        kept = "".join(d for d in ascii_ if d in allowed)
        out.append(kept)
        if kept and kept == ascii_:
            continue  # nothing lost (an empty transliteration loses the character)
        silent = (c == "\r" and text[index + 1 : index + 2] == "\n") or (
            not kept and unicodedata.category(c) == "Cf")
        if not silent:
            dropped[c] += 1
    return NormalizedLyrics("".join(out), dict(dropped))


class LyricsTokenizer:
    """Characters <-> ids for a Jukebox lyric vocabulary (``"v2"``: 80 ids, ``"v3"``: 79).

    ``normalization`` ("jukelite" or "jukebox", see :func:`normalize_lyrics`) is how text is
    reduced to the vocabulary before encoding; imported Jukebox priors use "jukebox".
    """

    def __init__(self, version: str = "v2", normalization: str = "jukelite") -> None:
        if normalization not in NORMALIZATIONS:
            raise ValueError(f"unknown lyrics normalization {normalization!r}; valid: "
                             f"{list(NORMALIZATIONS)}")
        self.version = version
        self.normalization = normalization
        self.chars = _vocab(version)
        self._ids = {c: i + 1 for i, c in enumerate(self.chars)}

    @property
    def vocab_size(self) -> int:
        """Number of ids including ``<unk>``/padding (id 0)."""
        return len(self.chars) + 1

    def normalize(self, text: str) -> NormalizedLyrics:
        return normalize_lyrics(text, self.version, self.normalization)

    def encode(self, text: str, normalize: bool = True) -> list[int]:
        """Ids of ``text``; normalises first unless told not to, then out-of-vocab text raises."""
        if normalize:
            text = self.normalize(text).text
        bad = sorted({c for c in text if c not in self._ids})
        if bad:
            raise ValueError(
                f"characters {bad} are not in the {self.version} lyrics vocabulary; valid: "
                f"{self.chars!r} (use normalize=True to fold/drop them)"
            )
        return [self._ids[c] for c in text]

    def decode(self, ids: Sequence[int]) -> str:
        """Text of ``ids``; padding (0) decodes to nothing."""
        out = []
        for i in ids:
            i = int(i)
            if not 0 <= i < self.vocab_size:
                raise ValueError(f"lyric id {i} is outside [0, {self.vocab_size})")
            if i != PAD_ID:
                out.append(self.chars[i - 1])
        return "".join(out)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form; "normalization" is written only when not the default, so bundles
        of jukelite's own tokenizer read and write as they always have."""
        data: dict[str, Any] = {"version": self.version, "chars": self.chars}
        if self.normalization != "jukelite":
            data["normalization"] = self.normalization
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LyricsTokenizer:
        tok = cls(data["version"], data.get("normalization", "jukelite"))
        if "chars" in data and data["chars"] != tok.chars:
            raise ValueError(f"lyrics vocabulary {data['version']!r} does not match this version "
                             "of jukelite")
        return tok


class LyricWindow(NamedTuple):
    """The ``n_tokens`` lyric ids a window sees.

    Position ``i`` holds character ``start + i`` of the song's lyric tokens, except where
    ``tokens[i] == 0``: those are left padding (real characters never encode to 0).
    """

    tokens: list[int]
    start: int


def _check_window(offset: int, sample_length: int, n_tokens: int) -> None:
    if offset < 0 or sample_length <= 0 or n_tokens < 0:
        raise ValueError(
            f"need offset >= 0, sample_length > 0, n_tokens >= 0; got offset={offset}, "
            f"sample_length={sample_length}, n_tokens={n_tokens}"
        )


def _centred(seq: list[int], mid: int, n_tokens: int) -> tuple[list[int], int]:
    """``n_tokens`` items of ``seq`` centred on ``mid`` and clamped inside it, or left-padded."""
    if len(seq) < n_tokens:
        pad = n_tokens - len(seq)
        return [PAD_ID] * pad + seq, -pad
    start = min(max(mid - n_tokens // 2, 0), len(seq) - n_tokens)
    return seq[start : start + n_tokens], start


def lyric_window(
    tokens: Sequence[int], total_length: int, offset: int, sample_length: int, n_tokens: int
) -> LyricWindow:
    """Jukebox's linear alignment: the window centred on the audio window's midpoint, clamped.

    ``mid = int(F * (offset + sample_length / 2) / total_length)`` for ``F`` song characters;
    the window is ``tokens[mid - n/2 : mid + n/2]`` shifted to lie inside the song. Songs with
    fewer than ``n_tokens`` characters are left-padded with 0 and seen whole (``start`` < 0).
    Lengths are in audio samples.
    """
    _check_window(offset, sample_length, n_tokens)
    if not 0 <= offset < total_length:
        raise ValueError(f"offset must be in [0, total_length={total_length}), got {offset}")
    tokens = list(tokens)
    mid = int(len(tokens) * (offset + sample_length / 2.0) / total_length)
    return LyricWindow(*_centred(tokens, mid, n_tokens))


def timed_lyric_window(
    text_with_timing: Sequence[tuple[float, float, str]],
    sample_rate: int,
    offset: int,
    sample_length: int,
    n_tokens: int,
    tokenizer: LyricsTokenizer,
) -> LyricWindow:
    """The characters of the words sung in the audio window, from manifest word timings.

    The song's lyric tokens are taken to be the (normalised) words joined by single spaces, in
    time order; ``start`` indexes that sequence. The words overlapping
    ``[offset, offset + sample_length)`` are kept; if they exceed ``n_tokens`` characters the
    window is centred on the character sung at the audio window's midpoint (character times are
    interpolated within each word) and clamped, otherwise it is left-padded with 0.
    """
    _check_window(offset, sample_length, n_tokens)
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be > 0, got {sample_rate}")
    t0 = offset / sample_rate
    t1 = (offset + sample_length) / sample_rate
    t_mid = (t0 + t1) / 2
    space = tokenizer.encode(" ", normalize=False)[0]

    full: list[int] = []
    times: list[float] = []
    first = last = -1  # token range [first, last) of the words inside the window
    for s, e, word in sorted(text_with_timing, key=lambda w: (w[0], w[1])):
        ids = tokenizer.encode(word)
        if not ids:
            continue
        if full:
            full.append(space)
            times.append(times[-1])
        begin = len(full)
        full.extend(ids)
        times.extend(s + (e - s) * j / len(ids) for j in range(len(ids)))
        if s < t1 and (e > t0 or s >= t0):
            first = begin if first < 0 else first
            last = len(full)
    if first < 0:
        return LyricWindow([PAD_ID] * n_tokens, -n_tokens)
    span = full[first:last]
    mid = sum(1 for t in times[first:last] if t < t_mid)
    window, start = _centred(span, mid, n_tokens)
    return LyricWindow(window, first + start)
