"""Ancestral sampling of one prior window with the KV cache, and the logits filters.

A window is sampled token by token: the codes already there (a prompt, or the overlap with the
previous window) are fed in one chunked prefill, then each new token costs one cached step.
Randomness comes only from the `torch.Generator` passed in, so a seed repeats bit for bit on
the CPU.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from jukelite.prior.model import Conditioning, LevelPrior


@dataclass(frozen=True)
class SamplingSettings:
    """How logits become tokens: temperature, then top-k, then top-p (0 disables a filter)."""

    temperature: float = 0.99
    top_k: int = 0
    top_p: float = 0.0

    def __post_init__(self) -> None:
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0 (0 = off), got {self.top_k}")
        if not 0.0 <= self.top_p <= 1.0:
            raise ValueError(f"top_p must lie in [0, 1] (0 = off), got {self.top_p}")


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
    """logits [N, V] -> tokens [N] drawn from the filtered, tempered distribution."""
    filtered = filter_logits(logits / settings.temperature, settings.top_k, settings.top_p)
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
) -> Tensor:
    """Complete one window: prefix [N, p] (in the prior's sequence space, p < seq_len) ->
    tokens [N, length] (default the whole window, seq_len). The prefix is fed as one chunk;
    every later token is one step (`step`: see `step_function`) writing into the
    preallocated caches and token buffer.

    In `single` lyrics mode the prefix holds the lyric window at least, and music positions may
    only emit music codes (lyric ids are masked out rather than clamped afterwards).
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
    tokens = torch.zeros(batch, config.seq_len, dtype=torch.long, device=device)
    tokens[:, :known] = prefix.to(device)
    caches = prior.init_caches(batch)
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
        if music_from:
            logits[:, :music_from] = float("-inf")
        tokens[:, position] = sample_from_logits(logits, settings, generator).to(device)
        if on_token is not None:
            on_token(position)
    return tokens[:, :length]


def window_starts(total: int, n_ctx: int, hop: int) -> list[int]:
    """First token of each window covering [0, total): every `hop` tokens, the last one moved
    back to end exactly at `total` (Jukebox's schedule); one short window if total <= n_ctx."""
    if total <= n_ctx:
        return [0]
    starts = []
    for start in range(0, total - n_ctx + hop, hop):
        starts.append(min(start, total - n_ctx))
    return starts


def window_generator(seed: int, level: int, window: int, chunk: int = 0) -> torch.Generator:
    """An independent random stream per (seed, level, window, batch chunk): a run resumed from
    saved codes draws exactly what the uninterrupted run drew."""
    entropy = [seed, level, window, chunk]
    state = np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(state) % (2**63))


def batch_chunks(n_samples: int, max_batch_size: int | None) -> list[slice]:
    """Rows of each chunk when `n_samples` are sampled at most `max_batch_size` at a time."""
    if max_batch_size is not None and max_batch_size < 1:
        raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
    size = n_samples if not max_batch_size else max_batch_size
    return [slice(i, min(i + size, n_samples)) for i in range(0, n_samples, max(size, 1))]


ConditionFor = Callable[[int, slice], tuple[Conditioning, "Tensor | None"]]


@torch.no_grad()
def sample_level(
    prior: LevelPrior,
    total: int,
    condition_for: ConditionFor,
    seed: int,
    codes: Tensor | None = None,
    hop_fraction: float = 0.5,
    settings: SamplingSettings = SamplingSettings(),
    on_window: Callable[[int, Tensor], None] | None = None,
    max_batch_size: int | None = None,
    on_tokens: Callable[[int], None] | None = None,
    step: str = "cached",
) -> Tensor:
    """Sample `total` codes of the prior's level window by window.

    Each window starts `hop_fraction * n_ctx` tokens after the previous one and is primed with
    the codes already there, so earlier codes never change. `condition_for(start, rows)` gives
    the conditioning of samples `rows` for the window at `start` (labels and timing for its
    offset, the matching upper codes, the lyric window) and, for single-stack lyrics priors,
    the lyric tokens that prefix it. `codes` [N, t] are kept as they are (a prompt, or a
    stopped run to resume). Samples are drawn `max_batch_size` at a time (all at once when
    None). `on_window` gets each window's index and all codes so far (e.g. to save them);
    `on_tokens(k)` is told after each step that k more codes exist (for progress bars).
    `step` picks the one-token step (`step_function`).
    """
    config = prior.config
    hop = max(1, int(config.n_ctx * hop_fraction))
    if codes is None:
        raise ValueError("pass codes [N, 0] (or a prompt) so the batch size is known")
    offset = config.seq_len - config.n_ctx  # lyric positions before the music
    chunks = batch_chunks(codes.shape[0], max_batch_size)
    for index, start in enumerate(window_starts(total, config.n_ctx, hop)):
        end = min(start + config.n_ctx, total)
        if end <= codes.shape[1]:
            continue  # already sampled (a resumed run) or given (a prompt)
        pieces = []
        for chunk, rows in enumerate(chunks):
            cond, lyric_prefix = condition_for(start, rows)
            prefix = codes[rows, start:]
            if lyric_prefix is not None:
                prefix = torch.cat([lyric_prefix, prefix + config.n_vocab], dim=1)
            count = rows.stop - rows.start
            window = sample_window(
                prior, cond, prefix, settings, window_generator(seed, config.level, index, chunk),
                on_token=None if on_tokens is None else lambda _, k=count: on_tokens(k),
                length=offset + end - start, step=step,
            )
            new = window[:, offset + codes.shape[1] - start :]
            pieces.append(new - (config.n_vocab if offset else 0))
        codes = torch.cat([codes, torch.cat(pieces).to(codes.device)], dim=1)
        if on_window is not None:
            on_window(index, codes)
    return codes
