"""Training checkpoints: everything needed to continue a run exactly, loaded without pickles.

A checkpoint holds raw weights, EMA weights, optimizer, scheduler, every RNG state and the data
position. It is written to a temporary file and renamed, so a crash or a full disk leaves the
previous checkpoint intact, and it is read with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from jukelite.fileio import atomic_path

CHECKPOINT_FORMAT = "jukelite-checkpoint/1"
_NAME = re.compile(r"^step_(\d+)\.pt$")


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


def checkpoint_path(directory: Path, step: int) -> Path:
    return directory / f"step_{step:08d}.pt"


def list_checkpoints(directory: Path) -> list[tuple[int, Path]]:
    """Checkpoints in `directory` as (step, path), oldest first."""
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
    for _, old in list_checkpoints(directory)[:-keep] if keep > 0 else []:
        old.unlink(missing_ok=True)
    return path


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint without executing pickled code."""
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises several types for truncated or foreign files
        raise ValueError(f"checkpoint {path} cannot be read ({exc})") from exc
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a jukelite checkpoint (expected {CHECKPOINT_FORMAT})")
    return state
