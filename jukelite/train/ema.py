"""Exponential moving average of weights, kept apart from the raw weights.

The optimizer always updates the raw weights; the average lives in its own tensors and is only
swapped into the model for evaluation and export, so a checkpoint holds both and resuming
continues both exactly.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


class WeightEMA:
    """EMA of a model's floating-point parameters (buffers such as codebooks are not averaged)."""

    def __init__(self, model: nn.Module, decay: float, warmup: bool = True):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must lie in (0, 1), got {decay}")
        self.decay = decay
        self.warmup = warmup
        self.updates = 0
        self.params = {n: p for n, p in model.named_parameters() if p.requires_grad}
        self.shadow = {n: p.detach().float().clone() for n, p in self.params.items()}

    def current_decay(self) -> float:
        """Early in training a long average would be dominated by the random initialisation."""
        if not self.warmup:
            return self.decay
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self) -> None:
        weight = 1.0 - self.current_decay()
        names = list(self.shadow)
        torch._foreach_lerp_(
            [self.shadow[n] for n in names],
            [self.params[n].detach().float() for n in names],
            weight,
        )
        self.updates += 1

    @contextmanager
    def swapped_in(self) -> Iterator[None]:
        """Temporarily load the averaged weights into the model (e.g. to evaluate or export)."""
        backup = {n: p.detach().clone() for n, p in self.params.items()}
        with torch.no_grad():
            for name, param in self.params.items():
                param.copy_(self.shadow[name])
        try:
            yield
        finally:
            with torch.no_grad():
                for name, param in self.params.items():
                    param.copy_(backup[name])

    def state_dict(self) -> dict:
        return {"decay": self.decay, "updates": self.updates, "shadow": dict(self.shadow)}

    def load_state_dict(self, state: dict) -> None:
        missing = set(self.shadow) ^ set(state["shadow"])
        if missing:
            raise ValueError(
                f"EMA state does not match the model (differing keys: {sorted(missing)})"
            )
        self.updates = int(state["updates"])
        for name, tensor in state["shadow"].items():
            self.shadow[name].copy_(tensor)
