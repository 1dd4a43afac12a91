"""jukelite: Jukebox-style hierarchical, lyrics-conditioned music generation.

Public API: `load(path)` -> `Jukebox`, whose `generate(...)` returns a `Song`; sampling options
as keywords or one `SamplingOptions`.
"""

from jukelite.api import Jukebox, SamplingOptions, Song, load

__all__ = ["Jukebox", "SamplingOptions", "Song", "load"]
