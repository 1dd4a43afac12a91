"""kill -9 in the middle of writing, then resume: the result equals the uninterrupted run.

A child process runs the real `jukelite` command with the writer of the file under test wrapped
so that, at its Nth call, it writes part of the file and sends itself SIGKILL: the kill lands
exactly while a checkpoint (training) or the codes (sampling) are half written.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import torch
from safetensors.torch import load_file

from jukelite.cli import main
from jukelite.train.checkpoint import list_checkpoints, load_checkpoint

from .conftest import TINY_PRIOR_RECIPES, tiny_prior_overrides

# Runs `jukelite ARGS...` with MODULE.NAME (a writer taking the target path as its second
# argument) killing the process half-way through its KILL_AT-th call.
CHILD = textwrap.dedent("""
    import importlib, os, signal, sys
    module_name, name, kill_at, *args = sys.argv[1:]
    module = importlib.import_module(module_name)
    original, calls = getattr(module, name), [0]

    def dying(obj, target, *rest, **kwargs):
        calls[0] += 1
        if calls[0] == int(kill_at):
            with open(target, "wb") as handle:  # the first bytes, then the power goes
                handle.write(b"PK\\x03\\x04 half a file")
                handle.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        return original(obj, target, *rest, **kwargs)

    setattr(module, name, dying)
    from jukelite.cli import main
    sys.exit(main(args))
""")


def killed_run(tmp_path: Path, module: str, name: str, kill_at: int, args: list[str]) -> None:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    done = subprocess.run([sys.executable, str(script), module, name, str(kill_at), *args],
                          capture_output=True, text=True)
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]


def test_sampling_killed_while_saving_codes_resumes_to_the_same_codes(
    tmp_path, make_complete_bundle
):
    bundle = make_complete_bundle(tmp_path / "bundle")
    song = ["sample", "--model", str(bundle), "--artist", "Ada", "--genre", "rock",
            "--seconds", "0.06", "--n-samples", "2", "--seed", "5", "--quiet"]
    assert main([*song, "-o", str(tmp_path / "whole")]) == 0
    # codes are saved after every window: die while writing the third save
    killed_run(tmp_path, "jukelite.inference.codes", "save_file", 3,
               [*song, "-o", str(tmp_path / "killed")])
    assert main(["sample", "--model", str(bundle), "--resume", str(tmp_path / "killed"),
                 "--quiet"]) == 0
    whole = load_file(tmp_path / "whole" / "codes.safetensors")
    resumed = load_file(tmp_path / "killed" / "codes.safetensors")
    assert whole.keys() == resumed.keys()
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)


def test_training_killed_while_writing_a_checkpoint_resumes_to_the_same_weights(
    tmp_path, tone_manifest, prior_base
):
    recipe = str(TINY_PRIOR_RECIPES["bottom"])
    fast = ["train.steps=6", "train.save_every=2", "train.eval_every=100",
            "train.batch_size=2", "train.ema_decay=0.9", "train.schedule=linear",
            "train.warmup=2"]

    def args(workdir: Path) -> list[str]:
        return ["train", recipe, *tiny_prior_overrides("bottom", tone_manifest, prior_base,
                                                       workdir), *fast]

    assert main(args(tmp_path / "whole")) == 0
    # checkpoints at steps 2, 4, 6: die while the one of step 4 is half written
    killed_run(tmp_path, "torch", "save", 2, args(tmp_path / "killed"))
    checkpoints = tmp_path / "killed" / "run" / "checkpoints"
    assert [step for step, _ in list_checkpoints(checkpoints)] == [2]  # never a half file
    assert main([*args(tmp_path / "killed"), "--resume"]) == 0

    def final(workdir: Path) -> dict:
        (_, path), = list_checkpoints(workdir / "run" / "checkpoints")[-1:]
        return load_checkpoint(path)

    whole, resumed = final(tmp_path / "whole"), final(tmp_path / "killed")
    assert whole["step"] == resumed["step"] == 6
    assert same(whole["model"], resumed["model"]) and same(whole["ema"], resumed["ema"])


def same(a, b) -> bool:
    """Exactly equal nested state (tensors bit for bit)."""
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return torch.equal(a, b) if torch.is_tensor(a) else a == b
