"""jukelite: Jukebox-style hierarchical, lyrics-conditioned music generation.

Public API: `load(path)` -> `Jukebox`, whose `generate(...)` returns a `Song`.
"""

from jukelite.api import Jukebox, Song, load

__all__ = ["Jukebox", "Song", "load"]
