"""Ancestral sampling of one prior window with the KV cache, and the logits filters.

A window is sampled token by token: the codes already there (a prompt, or the overlap with the
previous window) are fed in one chunked prefill, then each new token costs one cached step.
Logits are filtered and sampled in float32 whatever precision the prior runs in. Randomness
comes only from the `torch.Generator` passed in, so a seed repeats bit for bit on the CPU.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from jukelite.inference.options import SamplingSettings
from jukelite.prior.model import Conditioning, LevelPrior


def filter_logits(logits: Tensor, top_k: int = 0, top_p: float = 0.0) -> Tensor:
    """Set to -inf every logit outside the top k, then outside the smallest set whose
    probability reaches top_p (the most likely token always survives)."""
    logits = logits.float().clone()
    if top_k > 0 and top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[..., -1:]
        logits[logits < kth] = float("-inf")
    if 0.0 < top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        cumulative = sorted_logits.softmax(-1).cumsum(-1)
        drop = cumulative - sorted_logits.softmax(-1) >= top_p  # mass before this token
        sorted_logits[drop] = float("-inf")
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
    return logits


def sample_from_logits(
    logits: Tensor, settings: SamplingSettings, generator: torch.Generator | None = None
) -> Tensor:
    """logits [N, V] -> tokens [N] drawn from the filtered, tempered distribution (float32)."""
    tempered = logits.float() / settings.temperature
    filtered = filter_logits(tempered, settings.top_k, settings.top_p)
    probs = filtered.softmax(-1)
    if generator is not None and generator.device != probs.device:
        probs = probs.to(generator.device)  # a CPU generator keeps CUDA runs seedable too
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


STEP_KINDS = ("cached", "static", "compiled")


def step_function(prior: LevelPrior, kind: str) -> Callable | None:
    """The one-token step to use: None for `logits_cached` (Python-level slicing, fastest
    eagerly), the static `logits_step` (position as a tensor, fixed shapes), or that step under
    torch.compile, built once per prior and reused by every window."""
    if kind not in STEP_KINDS:
        raise ValueError(f"step must be one of {STEP_KINDS}, got {kind!r}")
    if kind == "cached":
        return None
    if kind == "static":
        return prior.logits_step
    compiled = getattr(prior, "_compiled_step", None)
    if compiled is None:
        compiled = torch.compile(prior.logits_step, dynamic=False)
        prior._compiled_step = compiled
    return compiled


def _both(a: Tensor | None, b: Tensor | None) -> Tensor | None:
    return None if a is None else torch.cat([a, b.to(a.dtype)])


def stack_conditions(cond: Conditioning, uncond: Conditioning) -> Conditioning:
    """One batch of [conditioned rows; unconditioned rows], so that guidance costs one pass."""
    return Conditioning(_both(cond.start, uncond.start), _both(cond.x_cond, uncond.x_cond),
                        _both(cond.encoder_kv, uncond.encoder_kv), None)


def guided_logits(logits: Tensor, batch: int, guidance: float) -> Tensor:
    """Logits of [conditioned rows; unconditioned rows] (2 * batch) -> `u + guidance * (c - u)`
    per conditioned row, in float32: classifier-free guidance."""
    conditioned, unconditioned = logits.float().split(batch)
    return unconditioned + guidance * (conditioned - unconditioned)


@torch.no_grad()
def sample_window(
    prior: LevelPrior,
    cond: Conditioning,
    prefix: Tensor,
    settings: SamplingSettings = SamplingSettings(),
    generator: torch.Generator | None = None,
    on_token: Callable[[int], None] | None = None,
    length: int | None = None,
    step: str = "cached",
    guidance: float = 1.0,
    uncond: tuple[Conditioning, Tensor] | None = None,
) -> Tensor:
    """Complete one window: prefix [N, p] (in the prior's sequence space, p < seq_len) ->
    tokens [N, length] (default the whole window, seq_len). The prefix is fed as one chunk;
    every later token is one step (`step`: see `step_function`) writing into the
    preallocated caches and token buffer.

    In `single` lyrics mode the prefix holds the lyric window at least, and music positions may
    only emit music codes (lyric ids are masked out rather than clamped afterwards).

    Classifier-free guidance: with `uncond` (the null conditioning and its prefix) and a
    `guidance` scale other than 1, the conditioned and unconditioned rows run as one batch and
    each token is drawn from `u + guidance * (c - u)` of their logits (0: the unconditioned
    model; 1 skips the second half and is plain conditional sampling, bit for bit).
    """
    config = prior.config
    batch, known = prefix.shape
    length = config.seq_len if length is None else length
    if not known < length <= config.seq_len:
        raise ValueError(f"need prefix length {known} < length {length} <= {config.seq_len}")
    if config.lyrics == "single" and known < config.n_tokens:
        raise ValueError(f"a single-stack lyrics prior needs the {config.n_tokens} lyric tokens "
                         f"as prefix, got {known}")
    device = prior.embedding.x_emb.weight.device
    guided = uncond is not None and guidance != 1.0
    if guided:
        cond = stack_conditions(cond, uncond[0])
        prefix = torch.cat([prefix, uncond[1].to(prefix.device)])
    rows = prefix.shape[0]
    tokens = torch.zeros(rows, config.seq_len, dtype=torch.long, device=device)
    tokens[:, :known] = prefix.to(device)
    caches = prior.init_caches(rows)
    if known:
        prior.logits_cached(tokens, 0, known, caches, cond)
    music_from = config.n_vocab if config.lyrics == "single" else 0
    static = step_function(prior, step)
    for position in range(known, length):
        if static is None:
            logits = prior.logits_cached(tokens, position, 1, caches, cond)[:, -1]
        else:
            at = torch.tensor(position, device=device)
            logits = static(tokens[:, max(position - 1, 0)], at, caches, cond)
        if guided:
            logits = guided_logits(logits, batch, guidance)
        if music_from:
            logits[:, :music_from] = float("-inf")
        drawn = sample_from_logits(logits, settings, generator).to(device)
        tokens[:, position] = torch.cat([drawn, drawn]) if guided else drawn
        if on_token is not None:
            on_token(position)
    return tokens[:batch, :length]
