"""Config dataclasses that travel as JSON (recipes, bundle manifests) and refuse unknown keys."""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

T = TypeVar("T", bound="StrictConfig")


class StrictConfig:
    """Mixin for config dataclasses: `to_dict()` and a `from_dict()` that names unknown keys."""

    @classmethod
    def from_dict(cls: type[T], values: dict[str, Any]) -> T:
        """Build from a plain dict (recipe section, bundle JSON); unknown keys are an error."""
        valid = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(values) - set(valid))
        if unknown:
            raise ValueError(
                f"unknown {cls.__name__} key(s) {unknown}; valid keys are: {', '.join(valid)}"
            )
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
