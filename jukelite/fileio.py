"""Atomic file writes, and output locations checked before any long work.

Every file jukelite writes (audio, manifests, JSON records, weights) goes through
:func:`atomic_path`, so a crash or Ctrl-C never leaves a half-written file under the final
name: readers see either the old file or the complete new one.

Commands check where they will write (:func:`check_output_file`, :func:`check_output_dir`)
before loading models or sampling, so a typo in `-o` fails in milliseconds, not after minutes.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def _current_umask() -> int:
    # os.umask can only be read by setting it; do it once, at import, before any threads exist.
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def _fsync_dir(directory: Path) -> None:
    """Persist the rename itself; best effort because some filesystems refuse directory fds."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success move it onto ``path`` atomically.

    The temporary file lives in the same directory (so ``os.replace`` is a rename on one
    filesystem) and keeps the same suffix (so soundfile/safetensors infer the format from it).
    It is hidden (leading dot) so folder indexers ignore it. Parent directories are created.
    If the body raises, the temporary file is removed and the exception propagates; ``path``
    is left untouched.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp_name = tempfile.mkstemp(
            dir=target.parent, prefix=f".{target.name}.", suffix=f".tmp{target.suffix}"
        )
    except OSError as exc:
        raise _renamed(exc, target) from exc
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        # mkstemp creates 0600 files; give the result the permissions a plain open() would.
        os.chmod(tmp, 0o666 & ~_UMASK)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if exc.filename is not None and os.fspath(exc.filename) == tmp_name:
            raise _renamed(exc, target) from exc
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(target.parent)


def _renamed(exc: OSError, target: Path) -> OSError:
    """The same error naming the file the user asked for, not the hidden temporary one."""
    if exc.errno is None:
        return exc
    return type(exc)(exc.errno, exc.strerror, os.fspath(target))


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write UTF-8 text to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(path: str | os.PathLike[str], obj: Any, indent: int | None = 2) -> None:
    """Write ``obj`` as UTF-8 JSON (non-ASCII kept readable, trailing newline) atomically."""
    text = json.dumps(obj, indent=indent, ensure_ascii=False, allow_nan=False)
    write_text_atomic(path, text + "\n")


# ---------------------------------------------------------------------------- output checks
class OutputPathError(ValueError):
    """An output location that cannot be written, found before any work was done."""


def shown_path(path: str | os.PathLike[str] | bytes) -> str:
    """A path as text that can always be printed: undecodable names are shown as repr."""
    text = os.fsdecode(path)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return repr(text)
    return text


def human_size(n_bytes: float) -> str:
    """1234567 -> "1.2 MiB": sizes in messages (powers of 1024, as --max-size reads them)."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n_bytes < 1024 or unit == "TiB":
            return f"{n_bytes:.0f} {unit}" if unit == "B" else f"{n_bytes:.1f} {unit}"
        n_bytes /= 1024
    raise AssertionError("unreachable")


@contextlib.contextmanager
def _unreachable(label: str) -> Iterator[None]:
    """A folder on the way that cannot be looked into is the user's problem, not a crash."""
    try:
        yield
    except PermissionError as exc:
        where = shown_path(exc.filename) if exc.filename is not None else "a parent folder"
        raise OutputPathError(f"{label}: cannot look into {where} (permission denied)") from None


def _existing_ancestor(path: Path, label: str) -> Path:
    """The nearest folder of `path` (itself included) that exists; a file in the way is an
    error, because no folder can be created under it."""
    current = Path(path)
    while not current.exists() and current != current.parent:
        if current.is_symlink():  # a dangling link cannot be created through
            raise OutputPathError(f"{label}: {shown_path(current)} is a broken symbolic link")
        current = current.parent
    if not current.is_dir():
        raise OutputPathError(
            f"{label}: cannot create a folder under {shown_path(current)}: it is a file, "
            "not a directory"
        )
    return current


def _check_writable(folder: Path, label: str) -> None:
    if os.access(folder, os.W_OK | os.X_OK):
        return
    read_only = False
    with contextlib.suppress(OSError, AttributeError):
        read_only = bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    reason = "read-only file system" if read_only else "permission denied"
    raise OutputPathError(f"{label}: cannot write in {shown_path(folder)} ({reason})")


def _check_space(folder: Path, label: str, expected_bytes: int | None) -> None:
    if not expected_bytes:
        return
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return  # unknown: the write itself will say
    if free < expected_bytes:
        raise OutputPathError(
            f"{label}: needs about {human_size(expected_bytes)} but only {human_size(free)} "
            f"is free on the disk holding {shown_path(folder)} "
            f"({os.strerror(errno.ENOSPC).lower()})"
        )


def check_output_file(
    path: str | os.PathLike[str], flag: str, expected_bytes: int | None = None
) -> Path:
    """Refuse an output file path that cannot be written, before any long work: an existing
    folder or special file at `path`, a file where a parent folder should be, a parent that
    cannot be written in, or too little free space for `expected_bytes` (when known).
    `flag` names the option in the message (e.g. "-o")."""
    target = Path(path)
    label = f"{flag} {shown_path(path)}"
    with _unreachable(label):
        if target.is_dir():
            raise OutputPathError(f"{label}: is an existing directory (expected a file path)")
        if target.exists() and not target.is_file():
            raise OutputPathError(f"{label}: is not a regular file (expected a file path)")
        folder = _existing_ancestor(target.parent, label)
    _check_writable(folder, label)
    _check_space(folder, label, expected_bytes)
    return target


def check_output_dir(
    path: str | os.PathLike[str],
    flag: str,
    overwrite: bool = False,
    marker: str | None = None,
    hint: str | None = None,
    expected_bytes: int | None = None,
) -> Path:
    """Refuse an output folder that cannot be used, before any long work: an existing file at
    `path`, a file where a parent should be, no write permission, too little free space for
    `expected_bytes`, or (unless `overwrite`) a folder already holding `marker`, the file that
    marks an earlier run (`hint` says what to do instead)."""
    target = Path(path)
    label = f"{flag} {shown_path(path)}"
    with _unreachable(label):
        if target.exists() and not target.is_dir():
            raise OutputPathError(f"{label}: is an existing file (expected a directory)")
        if marker is not None and not overwrite and (target / marker).exists():
            raise OutputPathError(
                f"{label}: already holds {marker} of an earlier run "
                f"({hint or 'pass --overwrite to replace it'})"
            )
        folder = _existing_ancestor(target, label)
    _check_writable(folder, label)
    _check_space(folder, label, expected_bytes)
    return target
