"""Record what the shipped demo model samples for fixed seeds (tests/golden/demo_codes.safetensors).

`tests/integration/test_demo_golden.py` replays these requests and asserts the same codes, bit
for bit: the refactors that keep behaviour must keep them. Run this script only when sampling is
*meant* to change (then say so in the commit), from the repository root:

    python tests/golden/make_demo_golden.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from demo_requests import run_requests  # noqa: E402


def main() -> None:
    torch.set_num_threads(1)
    codes, alignment = run_requests()
    tensors = {name: tensor.to(torch.int32).contiguous() for name, tensor in codes.items()}
    save_file(tensors, str(HERE / "demo_codes.safetensors"))
    (HERE / "demo_alignment.json").write_text(json.dumps(alignment, indent=1) + "\n")
    for name, tensor in sorted(tensors.items()):
        print(name, tuple(tensor.shape))


if __name__ == "__main__":
    main()
