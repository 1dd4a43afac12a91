"""Build a manifest from a folder of audio files (behind ``jukelite data index DIR -o OUT``).

Audio files are found recursively by suffix (case-insensitive: .wav .flac .ogg .opus .mp3
.aiff .aif). Hidden files and folders (name starting with ".", e.g. macOS "._song.wav") are
skipped; symlinked folders are followed once. Only each file's header is read (duration,
sample rate, channels), so indexing a large collection is fast.

Labels and lyrics come from optional metadata files next to the audio:

Folder metadata, in any folder (applies to files named relative to that folder, which may be
in its subfolders, e.g. ``disc1/01.flac``):

* ``metadata.csv``: a header row, then one row per file. Columns: ``file`` (required),
  ``artist``, ``genre`` (several genres separated by ``;``), ``lyrics``, ``split``
  (``train`` or ``valid``). Empty cells mean "not given". Any other column is kept as an extra
  manifest key (as text).
* ``metadata.json``: either a list of objects each with a ``file`` key, or an object mapping
  file name to an object. Same keys as the CSV; ``genre`` may be a string or a list of strings,
  and ``lyrics_timing`` (``[[start_s, end_s, "word"], ...]``) may be given. Other keys are kept.

Per-file sidecars, next to an audio file ``song.flac``:

* ``song.json``: an object with the same keys as above (no ``file``).
* ``song.txt``: the plain lyrics (UTF-8; surrounding whitespace trimmed).

Precedence, field by field: ``song.json`` > ``song.txt`` (lyrics only) > folder metadata >
defaults (artist ``unknown``, genre ``unknown``, no lyrics). An audio file called
``metadata.<ext>`` gets no per-file JSON sidecar (that name is the folder metadata).

``duration``, ``sample_rate``, ``channels`` and ``path`` are set by the indexer and may not be
given in metadata. Every problem is collected rather than stopping at the first: unreadable,
empty or too-short audio, bad metadata values, a metadata row naming a file that is not an
indexed audio file, a file described twice, and metadata files that cannot be parsed. A file
with any problem of its own is left out of the entries; when a metadata file cannot be parsed
at all, every audio file under its folder is left out (its labels are unknown). The caller
decides whether to write the good entries anyway.

What a file system can throw at an indexer is reported the same way, one problem per file or
folder, and skipped: names that are not valid UTF-8 (shown with escapes; a manifest cannot hold
them), symlink loops and broken links, folders and files that cannot be read, zero-length files
and files larger than ``max_size`` (2 GiB by default).
"""

from __future__ import annotations

import csv
import errno
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from jukelite.audio import AUDIO_EXTENSIONS, AudioError, audio_info
from jukelite.data.manifest import ManifestEntry, parse_song_fields, write_manifest
from jukelite.fileio import human_size, shown_path

FOLDER_CSV = "metadata.csv"
FOLDER_JSON = "metadata.json"
#: Keys the indexer fills in itself; metadata may not set them.
RESERVED_KEYS: tuple[str, ...] = ("path", "duration", "sample_rate", "channels")
#: Files larger than this are skipped unless a caller raises it: a multi-gigabyte "audio" file
#: in a music folder is far more often a disk image or a mislabelled archive than a song.
DEFAULT_MAX_SIZE = 2 * 1024**3


@dataclass
class IndexResult:
    """The songs that indexed cleanly, and every problem found (as readable lines)."""

    entries: list[ManifestEntry]
    problems: list[str]
    output: Path | None = None

    def write(self, output: str | os.PathLike[str] | None = None) -> None:
        """Write the entries as a manifest atomically (paths relative to its directory)."""
        target = output if output is not None else self.output
        if target is None:
            raise ValueError("no output path given for the manifest")
        write_manifest(self.entries, target)


# (where, file name, fields) for one metadata record; fields is a problem string when the
# record itself is malformed (not an object, too many CSV cells).
_Raw = tuple[str, Any, "dict[str, Any] | str"]


@dataclass
class _Row:
    """One folder-metadata record, already validated."""

    where: str
    fields: dict[str, Any]


@dataclass
class _State:
    audio: dict[Path, Path]  # absolute normalised path -> path shown to the user
    problems: list[str] = field(default_factory=list)
    file_problems: dict[Path, list[str]] = field(default_factory=dict)
    rows: dict[Path, _Row] = field(default_factory=dict)
    broken: list[tuple[Path, str]] = field(default_factory=list)  # (folder, metadata file)

    def file_problem(self, path: Path, message: str) -> None:
        self.problems.append(message)
        self.file_problems.setdefault(path, []).append(message)


def _abspath(path: str | os.PathLike[str]) -> Path:
    return Path(os.path.normpath(os.path.abspath(os.fspath(path))))


def _is_utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # undecodable bytes arrive as surrogate escapes
        return False
    return True


def _reason(err: OSError) -> str:
    return (err.strerror or str(err)).lower()


def _link_problem(path: Path) -> str | None:
    """Why a directory entry that cannot be followed is unusable: a loop or a dangling link."""
    try:
        os.stat(path)
    except OSError as err:
        if err.errno == errno.ELOOP:
            return f"{shown_path(path)}: symlink loop (too many levels of symbolic links); skipped"
        if os.path.islink(path):
            return f"{shown_path(path)}: broken symbolic link ({_reason(err)}); skipped"
    return None


def _scan(root: Path, problems: list[str]) -> tuple[dict[Path, Path], list[Path]]:
    """Audio files (sorted by path shown) and folders holding folder metadata; entries that
    cannot be indexed at all (bad names, loops, unreadable folders) go to `problems`."""
    audio: list[tuple[str, Path, Path]] = []
    meta_dirs: list[Path] = []
    seen_dirs: set[str] = set()

    def unreadable(err: OSError) -> None:
        problems.append(f"{shown_path(err.filename or root)}: cannot read folder "
                        f"({_reason(err)}); skipped with everything in it")

    for dirpath, dirnames, filenames in os.walk(root, followlinks=True, onerror=unreadable):
        real = os.path.realpath(dirpath)
        if real in seen_dirs:  # a symlink loop or a second link to the same folder
            parent = os.path.realpath(os.path.dirname(dirpath))
            if parent == real or parent.startswith(real.rstrip(os.sep) + os.sep):
                problems.append(f"{shown_path(dirpath)}: symlink loop (leads back to "
                                f"{shown_path(real)}); not followed")
            dirnames[:] = []
            continue
        seen_dirs.add(real)
        folder = Path(dirpath)
        kept = []
        for name in sorted(d for d in dirnames if not d.startswith(".")):
            if _is_utf8(name):
                kept.append(name)
            else:
                problems.append(f"{shown_path(folder / name)}: folder name is not valid UTF-8 "
                                "(a manifest cannot hold it); skipped with everything in it")
        dirnames[:] = kept
        if FOLDER_CSV in filenames or FOLDER_JSON in filenames:
            meta_dirs.append(folder)
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            shown = folder / name
            link = _link_problem(shown) if os.path.islink(shown) else None
            if link is not None and (Path(name).suffix.lower() in AUDIO_EXTENSIONS
                                     or "loop" in link):
                problems.append(link)
                continue
            if Path(name).suffix.lower() not in AUDIO_EXTENSIONS:
                continue
            if not _is_utf8(str(shown)):
                problems.append(f"{shown_path(shown)}: file name is not valid UTF-8 (a manifest "
                                "cannot hold it); skipped (rename it)")
                continue
            rel = shown.relative_to(root).as_posix()
            audio.append((rel, _abspath(shown), shown))
    audio.sort(key=lambda item: item[0])
    return {absolute: shown for _, absolute, shown in audio}, meta_dirs


def _file_problem(path: Path, max_size: int | None) -> str | None:
    """Why an audio file cannot be indexed before its header is even read: unreadable, or
    larger than `max_size` (empty files are left to `audio_info`, which says so)."""
    try:
        size = os.stat(path).st_size
        with open(path, "rb"):
            pass
    except OSError as err:
        return f"{shown_path(path)}: cannot read file ({_reason(err)}); skipped"
    if max_size is not None and size > max_size:
        return (f"{shown_path(path)}: {human_size(size)}, larger than the size limit of "
                f"{human_size(max_size)} (--max-size); skipped")
    return None


def _split_csv_fields(obj: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = dict(obj)
    if "genre" in out:
        out["genre"] = [g.strip() for g in out["genre"].split(";") if g.strip()]
    return out


def _read_csv(path: Path) -> list[_Raw] | str:
    """``(where, file, fields)`` per row, or a problem string when the CSV is unusable."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header is None:
                return f"{path}: expected a header row with a 'file' column, got an empty file"
            header = [h.strip() for h in header]
            if "file" not in header:
                return f"{path}:1: expected a 'file' column, got columns {header}"
            duplicates = sorted({h for h in header if header.count(h) > 1})
            if duplicates or "" in header:
                return f"{path}:1: expected unique, non-empty column names, got {header}"
            rows: list[_Raw] = []
            line = reader.line_num
            for cells in reader:
                where = f"{path}:{line + 1}"
                line = reader.line_num
                if not any(c.strip() for c in cells):
                    continue
                if len(cells) > len(header):
                    rows.append((where, None, f"expected at most {len(header)} columns, got "
                                              f"{len(cells)}"))
                    continue
                obj = {h: c for h, c in zip(header, cells, strict=False) if c.strip()}
                rows.append((where, obj.pop("file", ""), _split_csv_fields(obj)))
            return rows
    except (UnicodeDecodeError, csv.Error) as err:
        return f"{path}: cannot parse CSV ({err})"
    except OSError as err:
        return f"{path}: cannot read ({_reason(err)})"


def _read_json_metadata(path: Path) -> list[_Raw] | str:
    """``(where, file, fields)`` per record, or a problem string when the JSON is unusable."""
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except OSError as err:
        return f"{path}: cannot read ({_reason(err)})"
    except UnicodeDecodeError as err:
        return f"{path}: expected UTF-8 text ({err})"
    except json.JSONDecodeError as err:
        return f"{path}:{err.lineno}: invalid JSON: {err.msg} (column {err.colno})"
    rows: list[_Raw] = []
    if isinstance(data, list):
        for i, item in enumerate(data):
            where = f"{path}[{i}]"
            if not isinstance(item, dict):
                rows.append((where, None, f"expected an object, got {item!r:.60}"))
                continue
            item = dict(item)
            rows.append((where, item.pop("file", None), item))
    elif isinstance(data, dict):
        for name, item in data.items():
            where = f"{path}[{name!r}]"
            if not isinstance(item, dict):
                rows.append((where, None, f"expected an object, got {item!r:.60}"))
                continue
            item = dict(item)
            item.pop("file", None)
            rows.append((where, name, item))
    else:
        return (f"{path}: expected a list of objects or an object mapping file names to "
                f"objects, got {type(data).__name__}")
    return rows


def _check_fields(obj: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Validate metadata values; reserved keys are problems, not silently ignored."""
    problems = [
        f"field '{key}': expected no value (the indexer sets it from the audio), "
        f"got {obj[key]!r:.60}"
        for key in RESERVED_KEYS
        if key in obj
    ]
    fields, more = parse_song_fields({k: v for k, v in obj.items() if k not in RESERVED_KEYS})
    return fields, problems + more


def _load_folder(state: _State, folder: Path) -> None:
    for name, reader in ((FOLDER_CSV, _read_csv), (FOLDER_JSON, _read_json_metadata)):
        meta_path = folder / name
        if not meta_path.is_file():
            continue
        rows = reader(meta_path)
        if isinstance(rows, str):
            state.problems.append(rows)
            state.broken.append((_abspath(folder), str(meta_path)))
            continue
        for where, file_name, raw in rows:
            if isinstance(raw, str):
                state.problems.append(f"{where}: {raw}")
                continue
            if not isinstance(file_name, str) or not file_name.strip():
                state.problems.append(
                    f"{where}: field 'file': expected a file name, got {file_name!r:.60}"
                )
                continue
            target = _abspath(folder / file_name.strip())
            if target not in state.audio:
                reason = (
                    "no such file" if not target.exists()
                    else "not an indexed audio file (hidden, or an unsupported suffix; "
                    f"supported: {' '.join(AUDIO_EXTENSIONS)})"
                )
                state.problems.append(f"{where}: field 'file': {file_name!r}: {reason}")
                continue
            fields, problems = _check_fields(raw)
            for problem in problems:
                state.file_problem(target, f"{where}: {problem}")
            if target in state.rows:
                state.file_problem(
                    target,
                    f"{where}: field 'file': {file_name!r} is already described at "
                    f"{state.rows[target].where}",
                )
                continue
            state.rows[target] = _Row(where=where, fields=fields)


def _sidecars(state: _State, path: Path, shown: Path) -> dict[str, Any]:
    """Fields from ``<stem>.txt`` then ``<stem>.json`` (the later overriding the earlier)."""
    fields: dict[str, Any] = {}
    txt = shown.with_suffix(".txt")
    if txt.is_file():
        try:
            fields["lyrics"] = txt.read_text(encoding="utf-8-sig").strip()
        except UnicodeDecodeError as err:
            state.file_problem(path, f"{txt}: expected UTF-8 lyrics text ({err})")
        except OSError as err:
            state.file_problem(path, f"{txt}: cannot read ({_reason(err)})")
    sidecar = shown.with_suffix(".json")
    if shown.stem != "metadata" and sidecar.is_file():
        try:
            data = json.loads(sidecar.read_text(encoding="utf-8-sig"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            state.file_problem(path, f"{sidecar}: invalid JSON ({err})")
            return fields
        except OSError as err:
            state.file_problem(path, f"{sidecar}: cannot read ({_reason(err)})")
            return fields
        if not isinstance(data, dict):
            state.file_problem(
                path, f"{sidecar}: expected a JSON object, got {type(data).__name__}"
            )
            return fields
        data.pop("file", None)
        parsed, problems = _check_fields(data)
        for problem in problems:
            state.file_problem(path, f"{sidecar}: {problem}")
        fields.update(parsed)
    return fields


def _merge(*layers: dict[str, Any]) -> dict[str, Any]:
    merged: dict[str, Any] = {"extra": {}}
    for layer in layers:
        for key, value in layer.items():
            if key == "extra":
                merged["extra"].update(value)
            else:
                merged[key] = value
    return merged


def index_folder(
    root: str | os.PathLike[str],
    output: str | os.PathLike[str],
    min_duration: float = 0.0,
    progress: bool = True,
    max_size: int | None = DEFAULT_MAX_SIZE,
) -> IndexResult:
    """Index every audio file under ``root`` for a manifest to be written at ``output``.

    Returns the entries of files without problems (sorted by path) and every problem found.
    Nothing is written; call ``IndexResult.write``. Raises only when ``root`` is not a folder.
    Files larger than ``max_size`` bytes (None: no limit) are reported and skipped.
    """
    root_path = Path(root)
    if not root_path.is_dir():
        reason = "not found" if not root_path.exists() else "not a folder"
        raise FileNotFoundError(f"{shown_path(root_path)}: audio folder {reason}")
    scan_problems: list[str] = []
    audio, meta_dirs = _scan(root_path, scan_problems)
    state = _State(audio=audio, problems=scan_problems)
    for folder in meta_dirs:
        _load_folder(state, folder)
    for folder, meta_file in state.broken:
        skipped = [p for p in audio if p.is_relative_to(folder)]
        for path in skipped:
            state.file_problems.setdefault(path, []).append(f"{meta_file} is unusable")
        if skipped:
            state.problems.append(
                f"{meta_file}: {len(skipped)} audio file(s) under {folder} left out because "
                "their metadata could not be read"
            )

    entries: list[ManifestEntry] = []
    bar = tqdm(audio.items(), desc="indexing", unit="file", disable=not progress)
    for path, shown in bar:
        folder_row = state.rows.get(path)
        fields = _merge(folder_row.fields if folder_row else {}, _sidecars(state, path, shown))
        problem = _file_problem(shown, max_size)
        if problem is not None:
            state.file_problem(path, problem)
            continue
        try:
            info = audio_info(shown)
        except AudioError as err:
            state.file_problem(path, str(err))
            continue
        if info.duration < min_duration:
            state.file_problem(
                path,
                f"{shown}: too short: {info.duration:.3f} s of audio, need at least "
                f"{min_duration:.3f} s",
            )
            continue
        end = max((e for _, e, _ in fields.get("lyrics_timing") or []), default=0.0)
        if end > info.duration + 1e-3:
            state.file_problem(
                path,
                f"{shown}: field 'lyrics_timing': expected to end within the audio "
                f"({info.duration:.3f} s), got end {end:g} s",
            )
        if path in state.file_problems:
            continue
        entries.append(
            ManifestEntry(
                path=path,
                duration=info.duration,
                sample_rate=info.sample_rate,
                channels=info.channels,
                **fields,
            )
        )
    bar.close()
    return IndexResult(entries=entries, problems=state.problems, output=_abspath(output))
