"""Reading pickled PyTorch checkpoints without executing code from them.

Jukebox's `.pth.tar` files are `torch.save` pickles of `{'hps', 'model', 'opt', 'step', ...}`
(old ones in torch's legacy, non-zip format). `torch.load(weights_only=True)` rebuilds tensors,
containers and plain numbers only; the few other objects such files hold are allowed by name
(`ALLOWED_GLOBALS`) and rebuilt as harmless stand-ins. Anything else is refused with a message
naming the object, because unpickling it could run arbitrary code.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from jukelite.convert import ConvertError


class CheckpointError(ConvertError):
    """A checkpoint that cannot be read safely or has no model weights; names the file."""


def _numpy_globals() -> list[Any]:
    """NumPy scalars (e.g. a sample length computed with np.prod) pickle as these three."""
    scalar = getattr(np, "_core", np).multiarray.scalar  # numpy 2 moved core to _core
    names = [(scalar, "numpy.core.multiarray.scalar"), (scalar, "numpy._core.multiarray.scalar")]
    dtypes = [np.dtype, *(type(np.dtype(t)) for t in ("int64", "int32", "float64", "float32",
                                                       "bool"))]
    return [*names, *dtypes]


#: Non-tensor objects a Jukebox checkpoint may hold, mapped to safe stand-ins. Jukebox's
#: `Hyperparams` (a dict subclass with attribute access) is rebuilt as an OrderedDict, never by
#: importing the jukebox package.
ALLOWED_GLOBALS: list[Any] = [
    (OrderedDict, "jukebox.hparams.Hyperparams"),
    *_numpy_globals(),
]

_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")


@dataclass
class Checkpoint:
    """The parts of a checkpoint an importer needs: weights, recorded hparams, training step."""

    path: Path
    model: dict[str, torch.Tensor]
    hps: dict[str, Any] = field(default_factory=dict)
    step: int | None = None
    legacy_format: bool = False


def read_checkpoint(path: str | Path) -> Checkpoint:
    """Load `path` without executing pickled code; strips a DDP `module.` prefix from keys.

    Zip-format files are memory-mapped, so tensors are read from disk only as they are used;
    legacy-format files are read whole (the format allows nothing else).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    legacy = not zipfile.is_zipfile(path)
    try:
        with torch.serialization.safe_globals(ALLOWED_GLOBALS):
            data = torch.load(path, map_location="cpu", weights_only=True, mmap=not legacy)
    except pickle.UnpicklingError as exc:
        found = _GLOBAL.search(str(exc))
        if found is None:
            raise CheckpointError(f"{path}: not a PyTorch checkpoint (it does not unpickle "
                                  "as one)") from None
        what = f"an object of type {found.group(1)}"
        raise CheckpointError(
            f"{path}: refused to read: it holds {what} that only unsafe unpickling could "
            "rebuild (it could run code). jukelite reads tensors, containers, numbers and "
            "Jukebox's hyperparameter dict only; if you trust the file, load it in Python with "
            "torch.load(weights_only=False) and save {'model': state_dict} again"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise CheckpointError(
            f"{path}: not a readable PyTorch checkpoint ({exc}); a truncated download is the "
            "usual cause: compare its size with the source"
        ) from None
    return _unpack(path, data, legacy)


def _unpack(path: Path, data: Any, legacy: bool) -> Checkpoint:
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a dict of weights, found {type(data).__name__}")
    if "model" in data:
        model, hps, step = data["model"], data.get("hps") or {}, data.get("step")
    elif data and all(isinstance(v, torch.Tensor) for v in data.values()):
        model, hps, step = data, {}, None  # a bare state dict
    else:
        raise CheckpointError(
            f"{path}: no 'model' entry (keys: {sorted(map(str, data))[:8]}); expected a Jukebox "
            "checkpoint {'hps', 'model', 'opt', 'step'} or a bare state dict"
        )
    if not isinstance(model, dict) or not all(isinstance(v, torch.Tensor) for v in model.values()):
        raise CheckpointError(f"{path}: 'model' is not a dict of tensors")
    model = {k[len("module."):] if k.startswith("module.") else k: v for k, v in model.items()}
    step = int(step) if isinstance(step, (int, np.integer)) else None
    return Checkpoint(path, model, dict(hps) if isinstance(hps, dict) else {}, step, legacy)
