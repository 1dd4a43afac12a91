"""Learning-rate schedules: linear warm-up, then constant, linear or cosine decay to zero."""

from __future__ import annotations

import math

import torch


def lr_multiplier(step: int, total_steps: int, warmup: int, schedule: str) -> float:
    """Factor applied to the base learning rate at optimizer step `step` (0-based)."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
    if schedule == "linear":
        return 1.0 - progress
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    raise ValueError(f"unknown schedule {schedule!r}; expected constant, linear or cosine")


def build_scheduler(
    optimizer: torch.optim.Optimizer, total_steps: int, warmup: int, schedule: str
) -> torch.optim.lr_scheduler.LambdaLR:
    lr_multiplier(0, total_steps, warmup, schedule)  # reject an unknown schedule up front
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_multiplier(step, total_steps, warmup, schedule)
    )
