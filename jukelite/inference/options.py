"""How to sample: the per-token settings and the options of a whole request.

`SamplingSettings` turns one level's logits into tokens; `SamplingOptions` is what a caller
chooses besides the song itself (seed, temperatures, filters, how far down to sample, batch
size, alignment), carried as one value from the API to the run loop.

The argument checks here (`check_number`, `check_int`, `check_text`, `check_device`,
`check_cuda_graphs`) are the ones the Python API and the `jukelite` command share, so both name
the argument and the value.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from jukelite.bundle import DEFAULT_TEMPERATURE, check_temperature

if TYPE_CHECKING:
    import torch

DEVICE_TYPES = ("cpu", "cuda", "mps")


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_number(name: str, value: Any, minimum: float = 0.0, optional: bool = False) -> Any:
    """`value` as a finite float > `minimum` (None passes when `optional`): a string or an
    infinity is refused up front instead of failing deep inside sampling."""
    if value is None and optional:
        return None
    if not _is_number(value) or not value > minimum:
        raise ValueError(f"{name} must be a number > {minimum:g}, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number > {minimum:g}, got {value!r}")
    return float(value)


def check_int(name: str, value: Any, minimum: int | None = None, optional: bool = False) -> Any:
    """`value` as an int >= `minimum` (None passes when `optional`); 1.5, "2" and True are
    refused rather than rounded or read."""
    if value is None and optional:
        return None
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or (
        minimum is not None and value < minimum
    ):
        bound = "" if minimum is None else f" >= {minimum}"
        raise ValueError(f"{name} must be an integer{bound}, got {value!r}")
    return int(value)


def check_text(name: str, value: Any) -> str:
    """`value` as a string (an artist, lyrics): anything else is refused with its type."""
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string, got {type(value).__name__}")
    return value


def check_temperature_value(name: str, value: Any) -> float:
    """A sampling temperature: a finite number > 0 (inf would make every code equally likely
    and NaN breaks sampling, both silently)."""
    value = check_number(name, value)
    return check_temperature(value)


def check_device(device: Any, name: str = "device") -> torch.device:
    """`device` ("cpu", "cuda", "cuda:N", "mps" or a torch.device) as a torch.device that
    this machine has; `name` is what the message calls it (the API's argument or `--device`)."""
    import torch

    shown = str(device)
    try:
        parsed = device if isinstance(device, torch.device) else torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        parsed = None
    if parsed is None or parsed.type not in DEVICE_TYPES:
        raise ValueError(f"{name} {shown}: not a torch device (use cpu, cuda, cuda:N, mps)")
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{name} {shown}: CUDA is not available on this machine "
                             "(torch.cuda.is_available() is False)")
        count = torch.cuda.device_count()
        if parsed.index is not None and parsed.index >= count:
            raise ValueError(f"{name} {shown}: this machine has {count} CUDA device(s) "
                             f"(cuda:0 to cuda:{count - 1})")
    if parsed.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"{name} {shown}: MPS is not available on this machine "
                         "(torch.backends.mps.is_available() is False)")
    return parsed


def check_cuda_graphs(enabled: Any, device: torch.device, name: str = "cuda_graphs=True"
                      ) -> bool:
    """CUDA graphs (record the one-token step once per window, replay it per token) as a bool,
    refused up front on a device that is not CUDA; `name` is what the message calls the switch
    (the API's argument or `--cuda-graphs`)."""
    if not isinstance(enabled, bool):
        raise ValueError(f"cuda_graphs must be True or False, got {enabled!r}")
    if enabled and device.type != "cuda":
        raise ValueError(f"{name} needs a CUDA device; got {device} (CUDA graphs record and "
                         "replay GPU kernels: pick a CUDA device, or drop it)")
    return enabled


@dataclass(frozen=True)
class SamplingSettings:
    """How logits become tokens: temperature, then top-k, then top-p (0 disables a filter)."""

    temperature: float = DEFAULT_TEMPERATURE
    top_k: int = 0
    top_p: float = 0.0

    def __post_init__(self) -> None:
        check_temperature_value("temperature", self.temperature)
        check_int("top_k", self.top_k, minimum=0)
        _check_top_p(self.top_p)


def check_guidance(value: Any, name: str = "guidance") -> float:
    """A guidance scale: a finite number >= 0."""
    if not _is_number(value) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def _check_top_p(value: Any) -> None:
    if not _is_number(value) or not 0.0 <= value <= 1.0:
        raise ValueError(f"top_p must be a number in [0, 1] (0 = off), got {value!r}")


@dataclass(frozen=True)
class SamplingOptions:
    """Everything a request chooses besides the song (labels, lyrics, length, sample count).

    `temperature`: one value, one per level ({level: T}; unnamed levels keep the bundle's
    default), or None for the bundle's defaults. `levels`: "all", "top" (a quick preview) or
    the lowest level to sample. `max_batch_size`: samples drawn at once (None: all).
    `alignment`: also read the lyric timings off the top prior's attention. `guidance`:
    classifier-free guidance scale, one value or {level: scale} (None or 1: none; 0: the
    unconditioned model; above 1: pushed towards the artist, genre and lyrics), for priors
    trained with train.cond_dropout; None: the bundle's defaults. `steps`: decoding steps per
    window of parallel priors, one value or {level: steps} (None: the bundle's defaults).
    """

    seed: int = 0
    temperature: float | Mapping[int, float] | None = None
    top_k: int = 0
    top_p: float = 0.0
    levels: str | int = "all"
    max_batch_size: int | None = None
    alignment: bool = False
    guidance: float | Mapping[int, float] | None = None
    steps: int | Mapping[int, int] | None = None

    def __post_init__(self) -> None:
        """Types and ranges now, so a bad value fails before a model is loaded or sampled; the
        levels and temperatures a bundle has are checked against it in `new_request`."""
        check_int("seed", self.seed, minimum=0)
        if isinstance(self.temperature, Mapping):
            for level, value in self.temperature.items():
                check_int("temperature level", level, minimum=0)
                check_temperature_value(f"temperature of level {level}", value)
        elif self.temperature is not None:
            check_temperature_value("temperature", self.temperature)
        check_int("top_k", self.top_k, minimum=0)
        _check_top_p(self.top_p)
        if not (self.levels in ("all", "top") or (
                isinstance(self.levels, numbers.Integral) and not isinstance(self.levels, bool))
                or (isinstance(self.levels, str) and self.levels.isdigit())):
            raise ValueError(f"levels must be 'all', 'top' or a level number, got "
                             f"{self.levels!r}")
        check_int("max_batch_size", self.max_batch_size, minimum=1, optional=True)
        if not isinstance(self.alignment, bool):
            raise ValueError(f"alignment must be True or False, got {self.alignment!r}")
        scales = self.guidance.items() if isinstance(self.guidance, Mapping) else (
            [] if self.guidance is None else [(None, self.guidance)])
        for level, value in scales:
            if level is not None:
                check_int("guidance level", level, minimum=0)
            check_guidance(value, "guidance" if level is None else f"guidance of level {level}")
        steps = self.steps.items() if isinstance(self.steps, Mapping) else (
            [] if self.steps is None else [(None, self.steps)])
        for level, value in steps:
            if level is not None:
                check_int("steps level", level, minimum=0)
            check_int("steps" if level is None else f"steps of level {level}", value, minimum=1)

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
