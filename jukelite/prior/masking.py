"""Which codes a parallel (masked) decoder hides: in training, and step by step when sampling.

Training hides a fraction of each window drawn from a cosine schedule (MaskGIT's choice: most
windows are mostly hidden, as early sampling steps are, a few are nearly complete, as late ones
are). Half of the windows also keep a random-length prefix visible, because sampling always
starts from one: the overlap with the previous window, a prompt or a resumed run's codes.
Sampling reveals the hidden codes on the same cosine curve, a few at first and more later.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

#: Training windows that keep a visible prefix (sampling's overlap with the previous window).
KNOWN_PREFIX_RATE = 0.5


def cosine_mask_ratio(progress: Tensor) -> Tensor:
    """Fraction of codes still hidden at `progress` in [0, 1] (1 at 0, 0 at 1)."""
    return torch.cos(progress * (math.pi / 2))


def draw_training_mask(
    batch: int,
    n_ctx: int,
    generator: torch.Generator | None = None,
    known_prefix_rate: float = KNOWN_PREFIX_RATE,
) -> Tensor:
    """bool [batch, n_ctx], True = hidden. Per row: with probability `known_prefix_rate` the first
    L codes (L uniform in [1, n_ctx)) stay visible; of the rest a cosine-schedule fraction
    (at least one code) is hidden at random positions. Drawn on the CPU from `generator` (the
    global stream when None), so a seeded trainer draws the same masks when it resumes."""
    if n_ctx < 2:
        raise ValueError(f"a masked window needs n_ctx >= 2, got {n_ctx}")
    ratio = cosine_mask_ratio(torch.rand(batch, generator=generator))
    with_prefix = torch.rand(batch, generator=generator) < known_prefix_rate
    prefix = torch.randint(1, n_ctx, (batch,), generator=generator) * with_prefix
    hidden = (ratio * (n_ctx - prefix)).ceil().long().clamp(min=1)
    scores = torch.rand(batch, n_ctx, generator=generator)
    positions = torch.arange(n_ctx)
    scores = scores.masked_fill(positions[None, :] < prefix[:, None], 2.0)  # never drawn
    rank = scores.argsort(dim=1).argsort(dim=1)
    return rank < hidden[:, None]


def hidden_after_steps(total: int, steps: int) -> list[int]:
    """How many of `total` hidden codes are still hidden after each of `steps` sampling steps:
    the cosine curve, every step revealing at least one code, none hidden after the last.
    Fewer codes than steps take only as many steps as codes."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    counts, hidden = [], total
    for step in range(1, steps + 1):
        if hidden == 0:
            break
        target = math.floor(total * math.cos(math.pi / 2 * step / steps)) if step < steps else 0
        hidden = max(0, min(hidden - 1, target))
        counts.append(hidden)
    return counts
