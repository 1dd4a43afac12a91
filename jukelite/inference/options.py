"""How to sample: the per-token settings and the options of a whole request.

`SamplingSettings` turns one level's logits into tokens; `SamplingOptions` is what a caller
chooses besides the song itself (seed, temperatures, filters, how far down to sample, batch
size, alignment), carried as one value from the API to the run loop.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jukelite.bundle import DEFAULT_TEMPERATURE, check_temperature


@dataclass(frozen=True)
class SamplingSettings:
    """How logits become tokens: temperature, then top-k, then top-p (0 disables a filter)."""

    temperature: float = DEFAULT_TEMPERATURE
    top_k: int = 0
    top_p: float = 0.0

    def __post_init__(self) -> None:
        check_temperature(self.temperature)
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0 (0 = off), got {self.top_k}")
        if not 0.0 <= self.top_p <= 1.0:
            raise ValueError(f"top_p must lie in [0, 1] (0 = off), got {self.top_p}")


@dataclass(frozen=True)
class SamplingOptions:
    """Everything a request chooses besides the song (labels, lyrics, length, sample count).

    `temperature`: one value, one per level ({level: T}; unnamed levels keep the bundle's
    default), or None for the bundle's defaults. `levels`: "all", "top" (a quick preview) or
    the lowest level to sample. `max_batch_size`: samples drawn at once (None: all).
    `alignment`: also read the lyric timings off the top prior's attention.
    """

    seed: int = 0
    temperature: float | Mapping[int, float] | None = None
    top_k: int = 0
    top_p: float = 0.0
    levels: str | int = "all"
    max_batch_size: int | None = None
    alignment: bool = False

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def build(cls, options: SamplingOptions | None = None, **values: Any) -> SamplingOptions:
        """`options` (default: all defaults) with `values` replacing fields of the same name;
        an unknown name is an error that lists the valid ones."""
        unknown = sorted(set(values) - set(cls.names()))
        if unknown:
            raise TypeError(f"unknown sampling option(s) {', '.join(unknown)}; "
                            f"valid: {', '.join(cls.names())}")
        return dataclasses.replace(options or cls(), **values)
