"""Writing a safetensors file one tensor at a time.

The safetensors library serialises a dict of tensors that must all be alive at once; converting
a multi-gigabyte checkpoint that way holds the source and the converted copy together. The
format is simple (an 8-byte header length, a JSON header of dtypes, shapes and byte offsets,
then the raw bytes in order), so when every shape is known up front the header can be written
first and each tensor made, written and freed in turn. Files are read back by the safetensors
library like any other.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from pathlib import Path

import torch

_DTYPES = {
    torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
    torch.uint8: "U8", torch.bool: "BOOL",
}

TensorSpec = tuple[str, torch.dtype, tuple[int, ...]]  # name, dtype, shape


def write_streaming(
    path: str | Path,
    specs: list[TensorSpec],
    make: Callable[[str], torch.Tensor],
    metadata: dict[str, str] | None = None,
) -> None:
    """Write the tensors `specs` declares, asking `make(name)` for each in turn; a tensor whose
    dtype or shape differs from its spec is an error (the header is already written)."""
    header: dict[str, object] = {"__metadata__": dict(metadata)} if metadata else {}
    offset = 0
    for name, dtype, shape in specs:
        if dtype not in _DTYPES:
            raise ValueError(f"{name}: dtype {dtype} cannot be stored in safetensors")
        size = torch.Size(shape).numel() * torch.empty((), dtype=dtype).element_size()
        header[name] = {"dtype": _DTYPES[dtype], "shape": list(shape),
                        "data_offsets": [offset, offset + size]}
        offset += size
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the data starts 8-byte aligned
    with open(path, "wb") as handle:
        handle.write(struct.pack("<Q", len(text)))
        handle.write(text)
        for name, dtype, shape in specs:
            tensor = make(name)
            if tensor.dtype != dtype or tuple(tensor.shape) != tuple(shape):
                raise ValueError(f"{name}: made {tensor.dtype} {tuple(tensor.shape)}, declared "
                                 f"{dtype} {tuple(shape)}")
            raw = tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8)
            handle.write(memoryview(raw.numpy()))
            del tensor, raw
