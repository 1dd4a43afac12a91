"""Parallel decoding of one upsampler window: hidden codes revealed by confidence in a few steps.

The window starts with its known codes (the overlap with the previous window, a prompt, a stopped
run's codes) and every other code hidden. Each step predicts every hidden code at once, draws a
candidate for each (temperature, top-k and top-p as in autoregressive sampling) and keeps the
candidates it is most sure of, revealing codes on `masking.hidden_after_steps`' cosine curve; the
rest are hidden again and redrawn next step with more context. Known codes never change.

Confidence is the log-probability of the drawn candidate plus Gumbel noise that fades to zero
over the steps (MaskGIT's annealed choice), so early steps do not all pick the same easy codes.
All randomness comes from the `torch.Generator` passed in: a seed repeats bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from jukelite.inference.options import SamplingSettings
from jukelite.inference.window import filter_logits, guided_logits, stack_conditions
from jukelite.prior.masking import hidden_after_steps
from jukelite.prior.model import Conditioning, LevelPrior

#: Scale of the Gumbel noise added to the confidence at the first step (zero at the last).
CHOICE_NOISE = 1.0


def _uniform(shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device,
             ) -> Tensor:
    on = generator.device if generator is not None else device
    return torch.rand(shape, generator=generator, device=on).to(device)


def _draw(logits: Tensor, settings: SamplingSettings, generator: torch.Generator | None,
          ) -> tuple[Tensor, Tensor]:
    """logits [M, V] -> (drawn codes [M], their log-probabilities [M]), in float32. Drawn by
    inverting each row's cumulative distribution at one uniform number: the distribution of
    `torch.multinomial`, at a fraction of its cost for hundreds of rows at once."""
    filtered = filter_logits(logits.float() / settings.temperature, settings.top_k,
                             settings.top_p)
    log_probs = filtered.log_softmax(-1)
    cumulative = log_probs.exp().cumsum(-1)
    point = _uniform((log_probs.shape[0], 1), generator, log_probs.device) * cumulative[:, -1:]
    drawn = torch.searchsorted(cumulative, point, right=True).clamp_(max=log_probs.shape[1] - 1)
    return drawn[:, 0], log_probs.gather(-1, drawn).squeeze(-1)


def _gumbel(shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device,
            ) -> Tensor:
    uniform = _uniform(shape, generator, device).clamp(1e-20, 1.0 - 1e-7)
    return -torch.log(-torch.log(uniform))


@torch.no_grad()
def sample_window_parallel(
    prior: LevelPrior,
    cond: Conditioning,
    known: Tensor,
    steps: int,
    settings: SamplingSettings = SamplingSettings(),
    generator: torch.Generator | None = None,
    length: int | None = None,
    guidance: float = 1.0,
    uncond: Conditioning | None = None,
    on_step: Callable[[int], None] | None = None,
) -> Tensor:
    """Complete one window: `known` [N, k] codes at its start -> codes [N, length] (default
    n_ctx), k < length. Positions past `length` (a song shorter than a window) stay hidden
    context and are never drawn. `steps` model passes at most; `on_step(r)` is told after each
    that r more codes per sample are revealed.

    Guidance: with `uncond` (the null conditioning) and a `guidance` scale other than 1, the
    conditioned and unconditioned rows run as one batch and codes are drawn from
    `u + guidance * (c - u)` of their logits; 1 is plain conditional decoding, bit for bit."""
    config = prior.config
    if not config.parallel:
        raise ValueError(f"the level {config.level} prior decodes autoregressively "
                         "(model.decoding is not parallel)")
    batch, k = known.shape
    length = config.n_ctx if length is None else length
    if not k < length <= config.n_ctx:
        raise ValueError(f"need known codes {k} < length {length} <= n_ctx {config.n_ctx}")
    device = prior.embedding.x_emb.weight.device
    guided = uncond is not None and guidance != 1.0
    if guided:
        cond = stack_conditions(cond, uncond)
    tokens = torch.full((batch, config.n_ctx), config.mask_id, dtype=torch.long, device=device)
    tokens[:, :k] = known.to(device)
    counts = hidden_after_steps(length - k, steps)
    hidden_now = length - k  # the same in every row
    for step, still_hidden in enumerate(counts, start=1):
        hidden = tokens == config.mask_id
        hidden[:, length:] = False  # padding past the song's end is context, not drawn
        rows = torch.cat([tokens, tokens]) if guided else tokens
        logits = prior.masked_logits(rows, cond)
        if guided:
            logits = guided_logits(logits, batch, guidance)
        drawn, log_probs = _draw(logits[hidden], settings, generator)
        noise = CHOICE_NOISE * (1 - step / len(counts))
        if noise > 0:
            log_probs = log_probs + noise * _gumbel(tuple(log_probs.shape), generator, device)
        confidence = torch.full(tokens.shape, float("-inf"), device=device)
        confidence[hidden] = log_probs
        candidates = tokens.clone()
        candidates[hidden] = drawn
        revealed, hidden_now = hidden_now - still_hidden, still_hidden
        chosen = confidence.topk(revealed, dim=1).indices
        tokens.scatter_(1, chosen, candidates.gather(1, chosen))
        if on_step is not None:
            on_step(revealed)
    return tokens[:, :length]
