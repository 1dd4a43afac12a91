"""Run `jukelite ARGS...` in this process, under torchrun when a test launches it so.

With `--die-at-save N` first, the process sends itself SIGKILL right after its Nth call to
torch.distributed.checkpoint.save: its shards of that checkpoint are written, the checkpoint
is not finished (no state file, not renamed), as when a node dies in the middle of a save."""

from __future__ import annotations

import os
import signal
import sys

import torch.distributed.checkpoint as dcp

from jukelite.cli import main


def die_at_save(count: int) -> None:
    original, calls = dcp.save, [0]

    def dying(*args, **kwargs):
        result = original(*args, **kwargs)
        calls[0] += 1
        if calls[0] == count:
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    dcp.save = dying


if __name__ == "__main__":
    args = sys.argv[1:]
    if args[:1] == ["--die-at-save"]:
        die_at_save(int(args[1]))
        args = args[2:]
    sys.exit(main(args))
