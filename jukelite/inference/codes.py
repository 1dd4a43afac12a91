"""Code files: the discrete codes of one or more levels, as safetensors plus JSON metadata.

Keys are `level_{L}` with shape [n_samples, tokens]; metadata records the sample rate, every
level's hop length and the audio length, so `decode` can trim its output to the original length.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from jukelite.fileio import atomic_path

CODES_FORMAT = "jukelite-codes/1"


class CodesError(ValueError):
    """A codes file that cannot be read or does not hold what was asked for."""


def codes_path(path: str | Path) -> Path:
    """Where `save_codes` writes `path`: with `.safetensors` appended unless it ends so."""
    path = Path(path)
    return path if path.suffix == ".safetensors" else path.with_name(path.name + ".safetensors")


def save_codes(path: str | Path, codes: dict[int, torch.Tensor], info: dict[str, Any]) -> Path:
    """Write `{level: LongTensor [n, tokens]}` with metadata `info` (JSON-serialisable)."""
    path = codes_path(path)
    tensors = {}
    for level, tensor in codes.items():
        if tensor.ndim != 2:
            raise CodesError(
                f"codes of level {level} must be [n_samples, tokens], got {tuple(tensor.shape)}"
            )
        tensors[f"level_{level}"] = tensor.detach().cpu().to(torch.int32).contiguous()
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"format": CODES_FORMAT, "info": json.dumps(info)})
    return path


def load_codes(path: str | Path) -> tuple[dict[int, torch.Tensor], dict[str, Any]]:
    """Read a codes file: `({level: LongTensor [n, tokens]}, info)`."""
    path = Path(path)
    if not path.is_file():
        raise CodesError(f"codes file {path} does not exist")
    try:
        tensors = load_file(str(path))
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise CodesError(f"{path} is not a safetensors codes file ({exc})") from exc
    if metadata.get("format") != CODES_FORMAT:
        raise CodesError(f"{path} is not a jukelite codes file (format {metadata.get('format')!r})")
    codes = {}
    for key, tensor in tensors.items():
        level = key[len("level_") :]
        if not key.startswith("level_") or not level.isdigit():
            raise CodesError(f"{path}: unexpected tensor {key!r} (expected level_<L>)")
        # A float or 1-D tensor would be rounded or mis-read far from here; say so now.
        if tensor.dtype.is_floating_point or tensor.dtype.is_complex or tensor.dtype == torch.bool:
            raise CodesError(f"{path}: {key} holds {str(tensor.dtype).removeprefix('torch.')} "
                             "values; codes must be integers")
        if tensor.ndim != 2:
            raise CodesError(f"{path}: {key} has shape {tuple(tensor.shape)}; codes must be "
                             "[n_samples, tokens]")
        codes[int(level)] = tensor.long()
    try:
        info = json.loads(metadata.get("info", "{}"))
    except json.JSONDecodeError as exc:
        raise CodesError(f"{path}: its metadata is not valid JSON ({exc})") from None
    if not isinstance(info, dict):
        raise CodesError(f"{path}: its metadata must be a JSON object, got "
                         f"{type(info).__name__}")
    return codes, info
