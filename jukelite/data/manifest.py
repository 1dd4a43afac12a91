"""The song manifest: a JSONL file, one JSON object per song.

Each line looks like::

    {"path": "songs/a.flac", "artist": "...", "genre": "rock" | ["rock", "blues"],
     "lyrics": "...", "lyrics_timing": [[0.5, 0.9, "hello"], ...], "split": "train" | "valid",
     "duration": 183.2, "sample_rate": 44100, "channels": 2}

Only ``path`` is required. Relative paths are relative to the manifest's directory (so a dataset
folder can be moved as a whole); absolute paths are accepted too. ``duration``, ``sample_rate``
and ``channels`` are written by the folder indexer from the file headers. Keys jukelite does not
know are kept and written back unchanged, so users can carry their own fields.

Reading validates every row and reports all problems at once, each as
``FILE:LINE: field 'x': expected ..., got ...``, because fixing a large manifest one error per
run is miserable.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jukelite.fileio import write_text_atomic

SPLITS: tuple[str, ...] = ("train", "valid")
DEFAULT_ARTIST = "unknown"
DEFAULT_GENRE = "unknown"
#: Keys with a meaning in the manifest; every other key is kept in ``ManifestEntry.extra``.
KNOWN_KEYS: tuple[str, ...] = (
    "path",
    "artist",
    "genre",
    "lyrics",
    "lyrics_timing",
    "split",
    "duration",
    "sample_rate",
    "channels",
)

Timing = list[tuple[float, float, str]]


class ManifestError(ValueError):
    """Every problem found in a manifest (or metadata), listed in one message."""

    def __init__(self, problems: list[str], source: str | os.PathLike[str] | None = None) -> None:
        self.problems = list(problems)
        self.source = None if source is None else str(source)
        where = f" in {self.source}" if self.source else ""
        count = len(self.problems)
        head = f"{count} problem{'s' if count != 1 else ''}{where}:"
        super().__init__("\n  ".join([head, *self.problems]))


def _abspath(path: str | os.PathLike[str]) -> Path:
    """Absolute, normalised path without following symlinks.

    Symlinks are deliberately not resolved: a dataset folder that links to audio elsewhere
    must still round-trip with relative paths.
    """
    return Path(os.path.normpath(os.path.abspath(os.fspath(path))))


@dataclass
class ManifestEntry:
    """One song of the manifest, with its path made absolute."""

    path: Path
    artist: str = DEFAULT_ARTIST
    genres: list[str] = field(default_factory=lambda: [DEFAULT_GENRE])
    lyrics: str = ""
    lyrics_timing: Timing | None = None
    split: str | None = None
    duration: float | None = None
    sample_rate: int | None = None
    channels: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self, manifest_dir: Path) -> dict[str, Any]:
        """The manifest row for this entry; ``path`` is relative when inside ``manifest_dir``."""
        clash = sorted(set(self.extra) & set(KNOWN_KEYS))
        if clash:
            raise ValueError(f"{self.path}: extra keys {clash} clash with manifest fields")
        path = _abspath(self.path)
        base = _abspath(manifest_dir)
        text = path.relative_to(base).as_posix() if path.is_relative_to(base) else str(path)
        row: dict[str, Any] = {
            "path": text,
            "artist": self.artist,
            "genre": self.genres[0] if len(self.genres) == 1 else list(self.genres),
            "lyrics": self.lyrics,
        }
        if self.lyrics_timing is not None:
            row["lyrics_timing"] = [[s, e, w] for s, e, w in self.lyrics_timing]
        optional = {
            "split": self.split,
            "duration": self.duration,
            "sample_rate": self.sample_rate,
            "channels": self.channels,
        }
        row.update({k: v for k, v in optional.items() if v is not None})
        row.update(self.extra)
        return row


def _show(value: Any) -> str:
    """A short rendering of a bad value for error messages."""
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({type(value).__name__})"


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _check_timing(value: Any, duration: float | None) -> tuple[Timing | None, str | None]:
    """Validate ``lyrics_timing``; return (timing, None) or (None, problem without location)."""
    expected = "a list of [start, end, word] with 0 <= start <= end and starts in time order"
    if not isinstance(value, list):
        return None, f"field 'lyrics_timing': expected {expected}, got {_show(value)}"
    timing: Timing = []
    previous = 0.0
    for i, item in enumerate(value):
        ok = (
            isinstance(item, list | tuple)
            and len(item) == 3
            and _is_number(item[0])
            and _is_number(item[1])
            and isinstance(item[2], str)
        )
        if not ok:
            return None, (
                f"field 'lyrics_timing[{i}]': expected [start, end, word] with numbers and a "
                f"string, got {_show(item)}"
            )
        start, end, word = float(item[0]), float(item[1]), item[2]
        if not 0.0 <= start <= end:
            return None, (
                f"field 'lyrics_timing[{i}]': expected 0 <= start <= end, got {_show(item)}"
            )
        if start < previous:
            return None, (
                f"field 'lyrics_timing[{i}]': expected starts in time order, got start "
                f"{start:g} s after a word starting at {previous:g} s"
            )
        if duration is not None and end > duration + 1e-3:
            return None, (
                f"field 'lyrics_timing[{i}]': expected to end within the audio "
                f"({duration:g} s), got end {end:g} s"
            )
        previous = start
        timing.append((start, end, word))
    return timing, None


def parse_song_fields(obj: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Validate the song fields of ``obj`` (every known key except ``path``).

    Returns ``(fields, problems)``: ``fields`` maps ManifestEntry attribute names to checked
    values for the keys present (``genre`` becomes ``genres``; unknown keys are gathered under
    ``extra``), and ``problems`` holds ``"field 'x': expected ..., got ..."`` strings without a
    location, for the caller to prefix. Null counts as absent. Shared with the folder indexer so
    metadata sidecars are held to the same rules as the manifest.
    """
    fields: dict[str, Any] = {}
    problems: list[str] = []

    def bad(name: str, expected: str, value: Any) -> None:
        problems.append(f"field '{name}': expected {expected}, got {_show(value)}")

    artist = obj.get("artist")
    if artist is not None:
        if isinstance(artist, str) and artist.strip():
            fields["artist"] = artist.strip()
        else:
            bad("artist", "a non-empty string", artist)

    genre = obj.get("genre")
    if genre is not None:
        names = [genre] if isinstance(genre, str) else genre
        if (
            isinstance(names, list)
            and names
            and all(isinstance(g, str) and g.strip() for g in names)
        ):
            fields["genres"] = [g.strip() for g in names]
        else:
            bad("genre", "a non-empty string or a non-empty list of non-empty strings", genre)

    lyrics = obj.get("lyrics")
    if lyrics is not None:
        if isinstance(lyrics, str):
            fields["lyrics"] = lyrics
        else:
            bad("lyrics", "a string", lyrics)

    split = obj.get("split")
    if split is not None:
        if split in SPLITS:
            fields["split"] = split
        else:
            bad("split", " or ".join(repr(s) for s in SPLITS), split)

    duration = obj.get("duration")
    if duration is not None:
        if _is_number(duration) and duration > 0:
            fields["duration"] = float(duration)
        else:
            bad("duration", "a positive number of seconds", duration)

    for name in ("sample_rate", "channels"):
        value = obj.get(name)
        if value is not None:
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                fields[name] = value
            else:
                bad(name, "a positive integer", value)

    timing = obj.get("lyrics_timing")
    if timing is not None:
        checked, problem = _check_timing(timing, fields.get("duration"))
        if problem:
            problems.append(problem)
        else:
            fields["lyrics_timing"] = checked

    fields["extra"] = {k: v for k, v in obj.items() if k not in KNOWN_KEYS}
    return fields, problems


def _read_lines(path: Path) -> list[str]:
    if not path.is_file():
        reason = "not found" if not path.exists() else "not a file"
        raise ManifestError([f"{path}: manifest file {reason}"])
    try:
        # utf-8-sig: tolerate the byte-order mark some editors add.
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise ManifestError(
            [f"{path}: expected UTF-8 text, got an undecodable byte at offset {err.start}"]
        ) from err
    # Split on newlines only: str.splitlines would also break at U+2028 etc., which JSON
    # allows unescaped inside strings (lyrics).
    return [line.removesuffix("\r") for line in text.split("\n")]


def read_manifest(path: str | os.PathLike[str], check_files: bool = True) -> list[ManifestEntry]:
    """Read and validate a manifest; raise one ManifestError listing every bad row.

    Blank lines are skipped. A manifest without any song is an error too (it is always a
    mistake to train on nothing). With ``check_files`` every audio path must exist.
    """
    manifest = Path(path)
    base = _abspath(manifest).parent
    entries: list[ManifestEntry] = []
    problems: list[str] = []
    seen: dict[Path, int] = {}
    for lineno, line in enumerate(_read_lines(manifest), start=1):
        if not line.strip():
            continue
        where = f"{manifest}:{lineno}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            problems.append(f"{where}: invalid JSON: {err.msg} (column {err.colno})")
            continue
        if not isinstance(obj, dict):
            problems.append(f"{where}: expected a JSON object, got {_show(obj)}")
            continue
        row_problems: list[str] = []
        raw_path = obj.get("path")
        song_path: Path | None = None
        if not isinstance(raw_path, str) or not raw_path.strip():
            shown = "nothing" if "path" not in obj else _show(raw_path)
            row_problems.append(f"field 'path': expected a non-empty string, got {shown}")
        else:
            song_path = _abspath(base / raw_path)
            if song_path in seen:
                row_problems.append(
                    f"field 'path': expected each file once, got {raw_path!r} again "
                    f"(first on line {seen[song_path]})"
                )
            else:
                seen[song_path] = lineno
                if check_files and not song_path.is_file():
                    row_problems.append(
                        f"field 'path': expected an existing audio file, got {raw_path!r} "
                        f"({song_path} not found)"
                    )
        fields, field_problems = parse_song_fields(obj)
        row_problems.extend(field_problems)
        if row_problems:
            problems.extend(f"{where}: {p}" for p in row_problems)
            continue
        assert song_path is not None
        entries.append(ManifestEntry(path=song_path, **fields))
    if not entries and not problems:
        problems.append(f"{manifest}: no songs (the manifest has no non-blank lines)")
    if problems:
        raise ManifestError(problems, source=manifest)
    return entries


def write_manifest(entries: Iterable[ManifestEntry], path: str | os.PathLike[str]) -> None:
    """Write ``entries`` as JSONL atomically, paths relative to the manifest's directory."""
    base = _abspath(path).parent
    lines = [
        json.dumps(entry.to_json(base), ensure_ascii=False, allow_nan=False)
        for entry in entries
    ]
    write_text_atomic(path, "".join(line + "\n" for line in lines))
