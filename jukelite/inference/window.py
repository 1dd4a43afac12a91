"""Ancestral sampling of one prior window with the KV cache, and the logits filters.

A window is sampled token by token: the codes already there (a prompt, or the overlap with the
previous window) are fed in one chunked prefill, then each new token costs one cached step.
Logits are filtered and sampled in float32 whatever precision the prior runs in. Randomness
comes only from the `torch.Generator` passed in, so a seed repeats bit for bit on the CPU.

On a GPU the token loop never waits for the host: the generator lives on the device, the
position and previous token of the static step are device tensors advanced in place, and
nothing reads a value back, so the CPU can queue the next steps while the GPU runs. The static
step can also be compiled and/or recorded once per window as a CUDA graph (`STEP_KINDS`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from jukelite.inference.options import SamplingSettings
from jukelite.prior.attention import attention_backend
from jukelite.prior.model import Conditioning, LevelPrior


def filter_logits(logits: Tensor, top_k: int = 0, top_p: float = 0.0) -> Tensor:
    """Set to -inf every logit outside the top k, then outside the smallest set whose
    probability reaches top_p (the most likely token always survives)."""
    logits = logits.float().clone()
    if top_k > 0 and top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[..., -1:]
        logits.masked_fill_(logits < kth, float("-inf"))  # a masked fill, never a host sync
    if 0.0 < top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        cumulative = sorted_logits.softmax(-1).cumsum(-1)
        drop = cumulative - sorted_logits.softmax(-1) >= top_p  # mass before this token
        sorted_logits.masked_fill_(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
    return logits


def sample_from_logits(
    logits: Tensor, settings: SamplingSettings, generator: torch.Generator | None = None
) -> Tensor:
    """logits [N, V] -> tokens [N] drawn from the filtered, tempered distribution (float32),
    on the logits' device. Pass a generator on that device (`schedule.window_generator`): one
    elsewhere (e.g. a CPU generator for CUDA logits) still works, at the cost of copying the
    probabilities to it and the tokens back every call."""
    tempered = logits.float() / settings.temperature
    filtered = filter_logits(tempered, settings.top_k, settings.top_p)
    probs = filtered.softmax(-1)
    if generator is not None and generator.device != probs.device:
        return torch.multinomial(probs.to(generator.device), 1, generator=generator
                                 ).squeeze(-1).to(probs.device)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


# cached: `logits_cached` (Python-level slicing, fastest eagerly); static: `logits_step`;
# compiled: that step under torch.compile; graphed / compiled-graphed: the static or compiled
# step recorded as a CUDA graph once per window and replayed for every token (CUDA only).
STEP_KINDS = ("cached", "static", "compiled", "graphed", "compiled-graphed")
GRAPHED_STEPS = ("graphed", "compiled-graphed")


def step_kind(compile: bool = False, cuda_graphs: bool = False) -> str:
    """The step kind of the API's `compile` and `cuda_graphs` switches."""
    if cuda_graphs:
        return "compiled-graphed" if compile else "graphed"
    return "compiled" if compile else "cached"


def step_function(prior: LevelPrior, kind: str) -> Callable | None:
    """The one-token step to use: None for `logits_cached`, the static `logits_step`
    (position as a tensor, fixed shapes) for "static" and "graphed", or that step under
    torch.compile for "compiled" and "compiled-graphed", built once per prior and reused by
    every window."""
    if kind not in STEP_KINDS:
        raise ValueError(f"step must be one of {STEP_KINDS}, got {kind!r}")
    if kind == "cached":
        return None
    if kind in ("static", "graphed"):
        return prior.logits_step
    compiled = getattr(prior, "_compiled_step", None)
    if compiled is None:
        compiled = torch.compile(prior.logits_step, dynamic=False)
        prior._compiled_step = compiled
    return compiled


def capture_step(run: Callable[[], Tensor], device: torch.device) -> Callable[[], Tensor]:
    """`run` (one token step on input buffers that stay put) recorded once as a CUDA graph:
    each call replays every kernel of the step in one launch, reading whatever the buffers
    hold by then, and returns the same output tensor, overwritten.

    The recording needs one call first (lazy initialisation, or the compile of a compiled
    step, must not happen inside it); that call writes the keys and values of the current
    position, which the first replay writes again from the same token, so it changes nothing.
    """
    with torch.cuda.device(device):
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            run()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            logits = run()

    def replay() -> Tensor:
        graph.replay()
        return logits

    return replay


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

    The static steps read the position and the previous token from device tensors that are
    advanced in place, so a token costs no copy from the host; "graphed" steps replay one
    CUDA graph recorded for this window's caches and conditioning.
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
    attention_backend(device)  # decided now, outside any compiled or recorded step
    guided = uncond is not None and guidance != 1.0
    if guided:
        cond = stack_conditions(cond, uncond[0])
        prefix = torch.cat([prefix, uncond[1].to(prefix.device)])
    rows = prefix.shape[0]
    tokens = torch.zeros(rows, config.seq_len, dtype=torch.long, device=device)
    tokens[:, :known] = prefix.to(device)
    caches = prior.init_caches(rows, encoder_kv=cond.encoder_kv)  # no step fills a cache
    if known:
        prior.logits_cached(tokens, 0, known, caches, cond)
    music_from = config.n_vocab if config.lyrics == "single" else 0
    static = step_function(prior, step)
    if static is not None:
        # The static step's inputs stay on the device, updated in place after every token.
        at = torch.full((), known, dtype=torch.long, device=device)
        previous = tokens[:, max(known - 1, 0)].clone()  # the token before `at`

        def run() -> Tensor:
            return static(previous, at, caches, cond)

        if step in GRAPHED_STEPS:
            run = capture_step(run, device)
    for position in range(known, length):
        if static is None:
            logits = prior.logits_cached(tokens, position, 1, caches, cond)[:, -1]
        else:
            logits = run()
        if guided:
            logits = guided_logits(logits, batch, guidance)
        if music_from:
            logits[:, :music_from] = float("-inf")
        drawn = sample_from_logits(logits, settings, generator)
        if guided:
            drawn = torch.cat([drawn, drawn])
        tokens[:, position] = drawn
        if static is not None:
            previous.copy_(drawn)
            at.add_(1)
        if on_token is not None:
            on_token(position)
    return tokens[:batch, :length]
