"""Which windows cover a level, which random stream each draws from, and how samples are batched.

Sampling, resuming, lyric alignment and the benchmarks all walk a level through the same
windows: Jukebox's schedule, in which each window starts `hop_fraction * n_ctx` codes after the
previous one (1/8 for the top prior, 1/2 for the upsamplers) and the last one ends exactly at
the song's end. Each (seed, level, window, batch chunk) gets its own random stream, so a run
resumed from saved codes draws exactly what the uninterrupted run drew.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

# Jukebox's window overlap: the top prior moves 1/8 window at a time, the upsamplers 1/2.
HOP_FRACTION_TOP = 0.125
HOP_FRACTION_UPSAMPLER = 0.5


def hop_fraction(level: int, top_level: int) -> float:
    return HOP_FRACTION_TOP if level == top_level else HOP_FRACTION_UPSAMPLER


def window_starts(total: int, n_ctx: int, hop: int) -> list[int]:
    """First code of each window covering [0, total): every `hop` codes, the last one moved
    back to end exactly at `total`; one short window if total <= n_ctx."""
    if total <= n_ctx:
        return [0]
    return [min(start, total - n_ctx) for start in range(0, total - n_ctx + hop, hop)]


@dataclass(frozen=True)
class Window:
    index: int  # position in the schedule (names the window's random stream)
    start: int  # first code of the window
    end: int  # one past its last code (start + n_ctx, or the song's end)


@dataclass(frozen=True)
class WindowSchedule:
    """The windows of `n_ctx` codes that cover `total` codes of one level."""

    total: int
    n_ctx: int
    hop_fraction: float

    def __post_init__(self) -> None:
        if self.hop_fraction <= 0:
            raise ValueError(f"hop_fraction must be > 0, got {self.hop_fraction}")

    @property
    def hop(self) -> int:
        return max(1, int(self.n_ctx * self.hop_fraction))

    def __iter__(self) -> Iterator[Window]:
        for index, start in enumerate(window_starts(self.total, self.n_ctx, self.hop)):
            yield Window(index, start, min(start + self.n_ctx, self.total))

    def new_windows(self, done: int) -> Iterator[Window]:
        """The windows that still add codes when the first `done` codes exist already (a
        prompt, or a stopped run): a window entirely inside [0, done) is skipped."""
        return (window for window in self if window.end > done)


def window_generator(
    seed: int, level: int, window: int, chunk: int = 0, device: torch.device | str = "cpu"
) -> torch.Generator:
    """The random stream of one (seed, level, window, batch chunk), on the sampling `device`
    so that draws happen where the logits are (no copy to the host per token). The same seed
    gives the same stream on the same kind of device; a CUDA stream differs from the CPU's."""
    entropy = [seed, level, window, chunk]
    state = np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0]
    return torch.Generator(device=device).manual_seed(int(state) % (2**63))


def batch_chunks(n_samples: int, max_batch_size: int | None) -> list[slice]:
    """Rows of each chunk when `n_samples` are sampled at most `max_batch_size` at a time."""
    if max_batch_size is not None and max_batch_size < 1:
        raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
    size = n_samples if not max_batch_size else max_batch_size
    return [slice(i, min(i + size, n_samples)) for i in range(0, n_samples, max(size, 1))]
