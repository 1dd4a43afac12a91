"""Jukebox's artist and genre id files -> the label vocabulary of an imported prior.

The released priors learnt one embedding row per id of ``jukebox/data/ids/`` in
github.com/openai/jukebox: ``v2_*_ids.txt`` for the 5b/5b_lyrics top priors and the two
upsamplers, ``v3_*_ids.txt`` for the 1b_lyrics top prior. Each line is ``name;id``; several names
may share an id and ids need not be contiguous. Names are keyed exactly as Jukebox keys them
(the stripped line's name, lowercased; a later line with the same name wins), so a name gets
the embedding the weights were trained with.
"""

from __future__ import annotations

from pathlib import Path

from jukelite.data.labels import LabelVocabulary

#: The id files of each Jukebox label version: (artists, genres).
ID_FILES = {
    "v2": ("v2_artist_ids.txt", "v2_genre_ids.txt"),
    "v3": ("v3_artist_ids.txt", "v3_genre_ids.txt"),
}
SOURCE_HINT = ("Jukebox's id files come from a Jukebox checkout: jukebox/data/ids/ in "
               "https://github.com/openai/jukebox")


class JukeboxIdsError(ValueError):
    """A malformed id file; the message names the file and line."""


def read_id_file(path: str | Path) -> dict[str, int]:
    """``name -> id`` of one id file, keyed as Jukebox's ``ArtistGenreProcessor`` keys it.

    Blank lines are skipped (Jukebox would fail on them); any other line must be ``name;id``
    with one ``;`` and an id >= 0.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such id file; {SOURCE_HINT}")
    ids: dict[str, int] = {}
    try:
        # Text mode and line iteration as Jukebox reads them: "\r\n" and "\r" end lines too.
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                stripped = line.strip()
                if not stripped:
                    continue
                parts = stripped.split(";")
                if len(parts) != 2:
                    raise JukeboxIdsError(
                        f"{path}:{number}: expected 'name;id' with one ';', got {stripped!r}")
                name, text = parts
                try:
                    value = int(text)
                except ValueError:
                    raise JukeboxIdsError(
                        f"{path}:{number}: the id {text!r} is not an integer (line "
                        f"{stripped!r})") from None
                if value < 0:
                    raise JukeboxIdsError(f"{path}:{number}: ids must be >= 0, got {value}")
                ids[name.lower()] = value
    except UnicodeDecodeError as exc:
        raise JukeboxIdsError(f"{path}: not UTF-8 text ({exc})") from None
    return ids


def read_jukebox_ids(
    folder: str | Path,
    version: str,
    *,
    max_bow_genre_size: int | None = None,
    artist_bins: int | None = None,
    genre_bins: int | None = None,
) -> LabelVocabulary:
    """The label vocabulary of Jukebox's ``version`` ("v2" or "v3") id files in ``folder``.

    ``artist_bins``/``genre_bins`` are the prior's embedding rows (Jukebox's ``y_bins``, which
    can exceed the largest id: v2 artists have 4111 rows for ids up to 4108); by default the
    largest id + 1. ``max_bow_genre_size`` defaults to Jukebox's: 5 words for v2, 1 genre for v3.
    """
    if version not in ID_FILES:
        raise ValueError(f"Jukebox label version must be one of {sorted(ID_FILES)}, "
                         f"got {version!r}")
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder of Jukebox id files "
                                f"({', '.join(ID_FILES[version])}); {SOURCE_HINT}")
    artists, genres = (read_id_file(folder / name) for name in ID_FILES[version])
    return LabelVocabulary.from_ids(artists, genres, f"jukebox_{version}", max_bow_genre_size,
                                    artist_bins, genre_bins)
