"""`jukelite bench gpu` / scripts/gpu_check.sh, run where they can be here: on the CPU with
`--tiny` (CUDA graphs reported as not run, no xformers)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import torch

from jukelite.bench import gpu
from jukelite.prior import attention

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "gpu_check.sh"


def test_the_script_runs_the_tiny_check_on_the_cpu_and_reports_every_row(single_thread):
    done = subprocess.run([str(SCRIPT), "--device", "cpu", "--tiny"], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout)
    assert results["ok"] and results["tiny"] and not results["xformers"]
    rows = results["rows"]
    checks = [r["check"] for r in rows]
    assert checks == ["attention"] * 4 + ["sampling"] * 8 + ["fsdp"] + ["vqvae"] * 3
    assert {(r["backend"], r["dtype"], r["causal"]) for r in rows[:4]} == {
        ("sdpa", dtype, causal) for dtype in ("float32", "bfloat16") for causal in (False, True)}
    assert all(r["max_error"] < gpu.TOLERANCE[torch.float32] for r in rows[:4]
               if r["dtype"] == "float32")
    sampling = rows[4:12]
    assert {r["prior"] for r in sampling} == {"top prior (1b_lyrics)", "upsampler (level 1)"}
    assert [r["batch"] for r in sampling] == [1, 1, 8, 8] * 2
    for r in sampling:  # no CUDA here: graphs are not run, eager sampling is
        assert (r["tokens_per_second"] is None) == r["cuda_graphs"]
        assert r["cuda_graphs"] or r["tokens_per_second"] > 0
    fsdp_row = rows[12]
    assert fsdp_row["seconds_per_step"] > 0 and fsdp_row["peak_memory_bytes"] is None
    assert [(r["level"], r["hop_length"], r["sample_rate"]) for r in rows[13:]] == [
        (0, 8, 44100), (1, 32, 44100), (2, 128, 44100)]
    table = done.stderr
    assert "all checks passed" in table and table.count("\n| ") == len(rows) + 1
    assert "needs CUDA" in table


def test_a_backend_that_disagrees_with_float64_fails_the_check(monkeypatch):
    exact = attention.attend_with

    def off_by_a_little(backend, q, k, v, causal=False, mask=None):
        return exact(backend, q, k, v, causal, mask) + 1e-3

    monkeypatch.setattr(attention, "attend_with", off_by_a_little)
    rows = gpu.attention_rows(torch.device("cpu"), tiny=True)
    assert [r["ok"] for r in rows] == [False, False, True, True]  # float32 fails, bf16 not


def test_attend_with_names_its_backend():
    q = torch.randn(1, 4, 2, 8)
    with pytest.raises(ValueError, match="must be 'sdpa' or 'xformers', got 'flash'"):
        attention.attend_with("flash", q, q, q)
    with pytest.raises(ValueError, match="xformers path takes no mask"):
        attention.attend_with("xformers", q, q, q, mask=torch.ones(4, 4, dtype=torch.bool))
