"""`jukelite bench gpu`: one table saying whether a GPU runs jukelite's CUDA paths, and how fast.

Made to be run as one short job on a borrowed GPU (`scripts/gpu_check.sh`, well under 8 minutes
on one H200), so it checks and times only what a CPU cannot:

- attention: every backend this machine has (SDPA always; xformers on CUDA when it imports)
  against softmax(q k^T / sqrt(d)) v computed in float64, causal and not, in float32 and bf16;
- sampling: a prior of the released 1b_lyrics top prior's shape (single-stack lyrics, width
  2048, 72 layers) and one of its level-1 upsampler's shape, random weights in bf16 on CUDA:
  KV-cached tokens/s at batch 1 and 8, eager and replayed as a CUDA graph;
- FSDP: a few steps of sharded training (one process, bf16, activation checkpointing) of a
  prior of the top prior's size: seconds per step and peak memory;
- VQ-VAE: encode and decode real-time factor of the Jukebox VQ-VAE shape at 44.1 kHz.

`--tiny` shrinks every shape so that the whole check runs on a CPU in seconds: how it is tested
where there is no GPU (CUDA graphs are then reported as not run).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from functools import partial
from typing import Any

import torch

from jukelite.bench.sample import SETTINGS, random_window_inputs
from jukelite.bench.timing import environment, median_time
from jukelite.bench.vqvae import time_level
from jukelite.convert.jukebox_configs import prior_config, vqvae_config
from jukelite.convert.jukebox_hparams import resolve_hparams
from jukelite.inference.window import sample_window
from jukelite.prior import attention
from jukelite.prior.model import LevelPrior, PriorConfig
from jukelite.vqvae.model import LevelVQVAE, count_parameters

# Largest error against float64 a backend may show on unit-variance inputs before the check
# fails: float32 kernels are good to ~1e-6, bf16 ones to about one bf16 ulp of the output.
TOLERANCE = {torch.float32: 1e-4, torch.bfloat16: 3e-2}
TINY_SIZES = {"width": 64, "depth": 2, "heads": 2, "n_ctx": 64, "blocks": 8, "n_tokens": 16}
SAMPLED_TOKENS = {"full": 128, "tiny": 16}
FSDP_STEPS = 3


def jukebox_priors(tiny: bool) -> dict[str, PriorConfig]:
    """The 1b_lyrics top prior's and level-1 upsampler's configs (or tiny ones of the same
    kind: single-stack lyrics with labels and timing; conditioned on upper codes)."""
    components = ["vqvae", "prior_level_1", "prior_level_2"]
    hps, _ = resolve_hparams(components, "1b_lyrics")
    vqvae = vqvae_config(hps["vqvae"])
    configs = {
        "top prior (1b_lyrics)": prior_config("prior_level_2", hps["prior_level_2"], vqvae),
        "upsampler (level 1)": prior_config("prior_level_1", hps["prior_level_1"], vqvae),
    }
    if not tiny:
        return configs
    shrunk = {}
    for name, config in configs.items():
        sizes = dict(TINY_SIZES)
        lyrics = {} if config.lyrics == "none" else {
            "n_tokens": sizes["n_tokens"], "alignment_layer": None, "alignment_head": None}
        if config.upsampler:
            sizes["n_ctx"] = 4 * config.cond_stride ** config.cond_down_t
        shrunk[name] = dataclasses.replace(
            config, width=sizes["width"], depth=sizes["depth"], heads=sizes["heads"],
            n_ctx=sizes["n_ctx"], blocks=sizes["blocks"], cond_width=16, cond_depth=1,
            **lyrics,
        )
    return shrunk


# ---------------------------------------------------------------------------------- attention
def _reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool) -> torch.Tensor:
    q64, k64, v64 = (t.double().transpose(1, 2) for t in (q, k, v))  # [B, H, L, d]
    scores = q64 @ k64.transpose(-1, -2) / math.sqrt(q.shape[-1])
    if causal:
        lq, lk = scores.shape[-2:]
        visible = torch.ones(lq, lk, dtype=torch.bool, device=q.device).tril()
        scores = scores.masked_fill(~visible, float("-inf"))
    return (scores.softmax(-1) @ v64).transpose(1, 2)


def attention_rows(device: torch.device, tiny: bool) -> list[dict[str, Any]]:
    """Max |backend - float64 reference| per backend, dtype and causality."""
    backends = ["sdpa"] + (["xformers"] if attention.attention_backend(device) == "xformers"
                           else [])
    length, heads, head_dim = (64, 2, 32) if tiny else (2048, 8, 64)
    generator = torch.Generator().manual_seed(0)
    rows = []
    for dtype in (torch.float32, torch.bfloat16):
        q, k, v = (torch.randn(2, length, heads, head_dim, generator=generator).to(device, dtype)
                   for _ in range(3))
        for causal in (False, True):
            expected = _reference(q, k, v, causal)
            for backend in backends:
                got = attention.attend_with(backend, q, k, v, causal=causal)
                error = float((got.double() - expected).abs().max())
                rows.append({"check": "attention", "backend": backend,
                             "dtype": str(dtype).removeprefix("torch."), "causal": causal,
                             "max_error": error, "ok": error <= TOLERANCE[dtype]})
    return rows


# ---------------------------------------------------------------------------------- sampling
def sampling_rows(name: str, config: PriorConfig, device: torch.device, dtype: torch.dtype,
                  tokens: int, repeats: int) -> list[dict[str, Any]]:
    """KV-cached sampling tokens/s of a random prior at batch 1 and 8, eager and as a CUDA
    graph (CUDA only)."""
    torch.manual_seed(0)
    with torch.device(device):
        prior = LevelPrior(config).to(dtype).eval()
    rows = []
    for batch in (1, 8):
        inputs = random_window_inputs(prior, batch, torch.Generator().manual_seed(batch))
        known = inputs.prefix.shape[1]
        for step in ("cached", "graphed"):
            row = {"check": "sampling", "prior": name, "parameters": count_parameters(prior),
                   "dtype": str(dtype).removeprefix("torch."), "batch": batch,
                   "cuda_graphs": step == "graphed", "tokens": tokens}
            if step == "graphed" and device.type != "cuda":
                rows.append({**row, "tokens_per_second": None, "note": "needs CUDA"})
                continue
            generator = torch.Generator(device=device).manual_seed(batch)
            seconds = median_time(
                partial(sample_window, prior, inputs.cond, inputs.prefix, SETTINGS, generator,
                        length=known + tokens, step=step),
                device, repeats,
            )
            rows.append({**row, "tokens_per_second": batch * tokens / seconds})
    del prior
    return rows


# ---------------------------------------------------------------------------------- FSDP
def fsdp_row(config: PriorConfig, device: torch.device, steps: int) -> dict[str, Any]:
    """Seconds per sharded training step (one process) and peak memory of an unconditioned
    prior of `config`'s size (row, column and previous-row attention: no lyrics to prime),
    trained as `train.parallel: fsdp` trains: bf16 on CUDA, activation checkpointing, AdamW."""
    from jukelite.train.distributed import setup_distributed, teardown_distributed
    from jukelite.train.fsdp import full_norm, shard_model

    config = dataclasses.replace(config, labels=False, timing=False, lyrics="none",
                                 alignment_layer=None, alignment_head=None, attn_order=2,
                                 checkpoint_activations=True)
    ctx = setup_distributed(str(device), need_group=True)
    bf16 = device.type == "cuda"
    try:
        torch.manual_seed(0)
        with torch.device(device):
            model = LevelPrior(config).train()
        parameters = count_parameters(model)
        shard_model(model, ctx, bf16=bf16)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        codes = torch.randint(0, config.bins, (1, config.n_ctx), device=device)
        autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)

        def step() -> None:
            optimizer.zero_grad(set_to_none=True)
            with autocast:
                loss = model(codes).loss
            loss.backward()
            full_norm(torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0))
            optimizer.step()

        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        seconds = median_time(step, device, steps)
        peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    finally:
        teardown_distributed()
    return {"check": "fsdp", "parameters": parameters, "n_ctx": config.n_ctx,
            "width": config.width, "depth": config.depth, "batch": 1,
            "precision": "bf16" if bf16 else "fp32", "seconds_per_step": seconds,
            "tokens_per_second": config.n_ctx / seconds, "peak_memory_bytes": peak}


# ---------------------------------------------------------------------------------- VQ-VAE
def vqvae_rows(device: torch.device, seconds: float, repeats: int) -> list[dict[str, Any]]:
    """Encode and decode real-time factor of each level of the Jukebox VQ-VAE at 44.1 kHz."""
    hps, _ = resolve_hparams(["vqvae"], "1b_lyrics")
    config = vqvae_config(hps["vqvae"])
    rows = []
    for level in range(config.levels):
        torch.manual_seed(0)
        model = LevelVQVAE(config, level).to(device).eval()
        timing = time_level(model, seconds, 1, device, repeats)
        rows.append({"check": "vqvae", "level": level, "hop_length": timing["hop_length"],
                     "sample_rate": config.sample_rate,
                     "encode_realtime_factor": timing["encode_realtime_factor"],
                     "decode_realtime_factor": timing["decode_realtime_factor"]})
    return rows


# ---------------------------------------------------------------------------------- the check
def bench_gpu(args: argparse.Namespace) -> dict[str, Any]:
    device = torch.device(args.device)
    tiny = bool(getattr(args, "tiny", False))
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    repeats = max(1, int(args.repeats))
    started = time.perf_counter()
    priors = jukebox_priors(tiny)
    rows = attention_rows(device, tiny)
    for name, config in priors.items():
        rows += sampling_rows(name, config, device, dtype, SAMPLED_TOKENS["tiny" if tiny else
                                                                           "full"], repeats)
    rows.append(fsdp_row(priors["top prior (1b_lyrics)"], device, FSDP_STEPS))
    rows += vqvae_rows(device, 0.25 if tiny else 5.0, repeats)
    results = {
        "benchmark": "gpu",
        **environment(device),
        "tiny": tiny,
        "xformers": attention.attention_backend(device) == "xformers",
        "ok": all(row.get("ok", True) for row in rows),
        "seconds": time.perf_counter() - started,
        "rows": rows,
    }
    print(gpu_table(results), file=sys.stderr)
    return results


def _count(parameters: int) -> str:
    return f"{parameters / 1e9:.2f} B" if parameters >= 1e8 else f"{parameters / 1e6:.2f} M"


def _number(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def gpu_table(results: dict[str, Any]) -> str:
    """The rows as one Markdown table (what goes into the README and a closing note)."""
    lines = [f"`jukelite bench gpu{' --tiny' if results['tiny'] else ''}` on "
             f"{results['device_name']} (torch {results['torch']}), "
             f"{results['seconds']:.0f} s, all checks {'passed' if results['ok'] else 'FAILED'}",
             "", "| check | what | result |", "|---|---|---|"]
    for r in results["rows"]:
        if r["check"] == "attention":
            what = f"{r['backend']}, {r['dtype']}, {'causal' if r['causal'] else 'full'}"
            result = f"max error {r['max_error']:.1e} vs float64 ({'ok' if r['ok'] else 'FAIL'})"
        elif r["check"] == "sampling":
            what = (f"{r['prior']}, {_count(r['parameters'])}, {r['dtype']}, batch "
                    f"{r['batch']}{', CUDA graphs' if r['cuda_graphs'] else ''}")
            result = (f"{_number(r['tokens_per_second'])} tokens/s" if r["tokens_per_second"]
                      else r["note"])
        elif r["check"] == "fsdp":
            what = (f"{FSDP_STEPS} FSDP steps, {_count(r['parameters'])}, n_ctx "
                    f"{r['n_ctx']}, {r['precision']}, checkpointed")
            peak = r["peak_memory_bytes"]
            result = (f"{r['seconds_per_step']:.2f} s/step, {_number(r['tokens_per_second'], 0)}"
                      f" tokens/s, peak {_number(peak / 2**30 if peak else None)} GiB")
        else:
            what = f"VQ-VAE level {r['level']} (hop {r['hop_length']}), {r['sample_rate']} Hz"
            result = (f"encode RTF {r['encode_realtime_factor']:.4f}, decode RTF "
                      f"{r['decode_realtime_factor']:.4f}")
        lines.append(f"| {r['check']} | {what} | {result} |")
    return "\n".join(lines)
