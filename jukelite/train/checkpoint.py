"""Training checkpoints: everything needed to continue a run exactly, loaded without pickles.

A checkpoint holds raw weights, EMA weights, optimizer, scheduler, every RNG state and the data
position. It is written to a temporary file and renamed, so a crash or a full disk leaves the
previous checkpoint intact, and it is read with `torch.load(weights_only=True)`.

Resuming takes the newest checkpoint that reads back whole: a truncated or foreign file (a copy
cut short, a disk error) is named, set aside and skipped rather than ending the run in a
traceback or, worse, being pruned in place of a good checkpoint later.
"""

from __future__ import annotations

import random
import re
import shutil
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from jukelite.fileio import atomic_path

CHECKPOINT_FORMAT = "jukelite-checkpoint/1"
# What a checkpoint must hold to continue a run; a file without them cannot be resumed.
REQUIRED_KEYS = ("step", "data_position", "model", "optimizer", "scheduler", "rng")
# A sharded checkpoint (a folder, see `jukelite.train.fsdp`) keeps the weights, optimizer and
# EMA in torch.distributed.checkpoint's files and the rest in this file.
SHARDED_STATE_FILE = "state.pt"
SHARDED_REQUIRED_KEYS = ("step", "data_position", "scheduler", "rng")
UNREADABLE_SUFFIX = ".unreadable"
_NAME = re.compile(r"^step_(\d+)\.(pt|dcp)$")


class RunDirectoryError(RuntimeError):
    """The run directory is in a state that would lose or mix up work."""


class CheckpointUnreadable(ValueError):
    """A checkpoint file that cannot be resumed from; `reason` says why in a few words."""

    def __init__(self, path: Path, reason: str):
        self.path, self.reason = Path(path), reason
        super().__init__(f"checkpoint {path} cannot be read: {reason}")


def capture_rng_state() -> dict[str, Any]:
    """Every global RNG a training step may draw from, in weights_only-loadable types."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    numpy_state = state["numpy"]
    np.random.set_state(
        (
            numpy_state["kind"],
            numpy_state["keys"].numpy().astype(np.uint32),
            numpy_state["pos"],
            numpy_state["has_gauss"],
            numpy_state["cached_gaussian"],
        )
    )
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def checkpoint_path(directory: Path, step: int, sharded: bool = False) -> Path:
    return directory / f"step_{step:08d}.{'dcp' if sharded else 'pt'}"


def list_checkpoints(directory: Path) -> list[tuple[int, Path]]:
    """Checkpoints in `directory` as (step, path), oldest first: files, and folders for the
    sharded ones."""
    if not directory.is_dir():
        return []
    found = []
    for path in directory.iterdir():
        match = _NAME.match(path.name)
        if match:
            found.append((int(match.group(1)), path))
    return sorted(found)


def save_checkpoint(directory: Path, step: int, state: dict[str, Any], keep: int) -> Path:
    """Write `state` atomically as the checkpoint of `step` and prune all but the newest `keep`."""
    directory.mkdir(parents=True, exist_ok=True)
    path = checkpoint_path(directory, step)
    with atomic_path(path) as tmp:
        torch.save({"format": CHECKPOINT_FORMAT, "step": step, **state}, tmp)
    prune_checkpoints(directory, keep)
    return path


def prune_checkpoints(directory: Path, keep: int) -> None:
    """Delete all but the newest `keep` checkpoints (none when `keep` is 0 or less)."""
    for _, old in list_checkpoints(directory)[:-keep] if keep > 0 else []:
        if old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink(missing_ok=True)


def _unreadable_reason(path: Path, exc: Exception) -> str:
    """A few words on why torch could not load `path`: its own messages run to paragraphs."""
    try:
        size = path.stat().st_size
    except OSError:
        return "the file disappeared while it was read"
    if size == 0:
        return "the file is empty"
    if not zipfile.is_zipfile(path):
        return f"truncated or not a checkpoint file: {size:,} bytes, no complete archive"
    if "weights only" in str(exc).lower():
        return "it holds Python objects that loading without pickles refuses (not jukelite's)"
    first = (str(exc).strip().splitlines() or [""])[0][:160]
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint without executing pickled code; `CheckpointUnreadable` says why not.

    Of a sharded checkpoint (a folder) this is everything but the sharded tensors, which
    `jukelite.train.fsdp.load_sharded_tensors` loads into a sharded model."""
    path = Path(path)
    if path.is_dir():
        if not (path / ".metadata").is_file():
            raise CheckpointUnreadable(path, "a sharded checkpoint without its .metadata file")
        return load_checkpoint(path / SHARDED_STATE_FILE, map_location)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises several types for truncated or foreign files
        raise CheckpointUnreadable(path, _unreadable_reason(path, exc)) from exc
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointUnreadable(
            path, f"it is not a jukelite checkpoint (expected {CHECKPOINT_FORMAT})"
        )
    return state


def latest_checkpoint_step(directory: Path) -> int | None:
    """The step of the newest checkpoint file in `directory` (read or not), None if none."""
    found = list_checkpoints(directory)
    return found[-1][0] if found else None


@dataclass
class ResumePoint:
    """The newest readable checkpoint of a run, the newer ones skipped (path, why) and the
    recipe keys that changed on this resume ({step, key, old, new} records)."""

    path: Path
    state: dict[str, Any]
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    changes: list[dict[str, Any]] = field(default_factory=list)

    @property
    def step(self) -> int:
        return int(self.state["step"])

    def set_aside_skipped(self) -> list[tuple[Path, str, Path | None]]:
        """Rename the skipped (newer, unreadable) files out of the checkpoint pattern: left in
        place they would count as the newest checkpoints, and pruning would then delete good
        checkpoints written after this resume instead of them. Returns (path, why, new name),
        the new name None where the file could not be renamed."""
        moved: list[tuple[Path, str, Path | None]] = []
        for path, reason in self.skipped:
            target: Path | None = path.with_name(path.name + UNREADABLE_SUFFIX)
            try:
                path.replace(target)
            except OSError:  # gone already, or a read-only folder: skipping it is enough now
                target = None
            moved.append((path, reason, target))
        return moved


def _not_a_run(run_dir: Path, directory: Path) -> RunDirectoryError:
    if (run_dir / "recipe.yaml").is_file():
        return RunDirectoryError(
            f"cannot resume {run_dir}: it has no checkpoint yet (the run stopped before its "
            "first save); start it again without --resume"
        )
    what = (
        "no checkpoint: the folder does not exist" if not run_dir.exists()
        else f"no checkpoint in {directory.name}/, no recipe.yaml"
    )
    return RunDirectoryError(
        f"cannot resume {run_dir}: not a training run ({what}); train without --resume to "
        "start a run there, or point output.dir at the run folder"
    )


def newest_readable_checkpoint(run_dir: Path) -> ResumePoint:
    """The newest checkpoint of `run_dir` that loads whole, with the newer ones it skipped.

    Loads on the CPU: every state lands on the model's device when it is loaded into it, and
    the RNG states must stay CPU tensors."""
    run_dir = Path(run_dir)
    directory = run_dir / "checkpoints"
    found = list_checkpoints(directory)
    if not found:
        raise _not_a_run(run_dir, directory)
    skipped: list[tuple[Path, str]] = []
    for _, path in reversed(found):
        try:
            state = load_checkpoint(path)
        except CheckpointUnreadable as exc:
            skipped.append((path, exc.reason))
            continue
        required = SHARDED_REQUIRED_KEYS if state.get("sharded") else REQUIRED_KEYS
        missing = [key for key in required if key not in state]
        if missing:
            skipped.append((path, f"incomplete: it lacks {', '.join(missing)}"))
            continue
        return ResumePoint(path, state, skipped)
    tried = "; ".join(f"{path.name}: {reason}" for path, reason in skipped)
    raise RunDirectoryError(
        f"cannot resume {run_dir}: none of its {len(skipped)} checkpoint(s) can be read "
        f"(tried {tried}); restore one from a copy, or move them away and train without "
        "--resume to start over"
    )
