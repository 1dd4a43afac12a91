"""The demo model samples exactly what it sampled before (codes and lyric timings, per seed).

The expected codes were recorded by tests/golden/make_demo_golden.py; refactoring the sampling
path must not change one code. Regenerate them only when a change is meant to alter sampling.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
sys.path.insert(0, str(GOLDEN))

from demo_requests import run_requests  # noqa: E402


@pytest.fixture(scope="module")
def replayed():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as recorded
    try:
        with torch.random.fork_rng():
            yield run_requests()
    finally:
        torch.set_num_threads(threads)


def test_demo_codes_are_unchanged_for_every_mode(replayed):
    codes, _ = replayed
    expected = load_file(str(GOLDEN / "demo_codes.safetensors"))
    assert sorted(codes) == sorted(expected)
    for name, tensor in expected.items():
        got = codes[name]
        assert got.shape == tensor.shape, name
        same = (got == tensor.long()).float().mean().item()
        assert same == 1.0, f"{name}: only {same:.1%} of the codes match the recorded ones"


def test_demo_alignment_is_unchanged(replayed):
    _, alignment = replayed
    assert alignment == json.loads((GOLDEN / "demo_alignment.json").read_text())
