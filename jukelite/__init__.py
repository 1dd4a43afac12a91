"""jukelite: Jukebox-style hierarchical, lyrics-conditioned music generation.

Public API: `load(path)` -> `Jukebox`, whose `generate(...)` returns a `Song`; sampling options
as keywords or one `SamplingOptions`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jukelite.api import Jukebox, SamplingOptions, Song, load

__all__ = ["Jukebox", "SamplingOptions", "Song", "load"]


def __getattr__(name: str) -> Any:
    """The API on first use: `import jukelite` (and so `jukelite --help`) must not pay for
    importing torch, which takes seconds."""
    if name in __all__:
        from jukelite import api

        return getattr(api, name)
    raise AttributeError(f"module 'jukelite' has no attribute {name!r}")
