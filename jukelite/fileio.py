"""Atomic file writes.

Every file jukelite writes (audio, manifests, JSON records, weights) goes through
:func:`atomic_path`, so a crash or Ctrl-C never leaves a half-written file under the final
name: readers see either the old file or the complete new one.
"""

from __future__ import annotations

import contextlib
import json
import os
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
    fd, tmp_name = tempfile.mkstemp(
        dir=target.parent, prefix=f".{target.name}.", suffix=f".tmp{target.suffix}"
    )
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
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(target.parent)


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write UTF-8 text to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(path: str | os.PathLike[str], obj: Any, indent: int | None = 2) -> None:
    """Write ``obj`` as UTF-8 JSON (non-ASCII kept readable, trailing newline) atomically."""
    text = json.dumps(obj, indent=indent, ensure_ascii=False, allow_nan=False)
    write_text_atomic(path, text + "\n")
