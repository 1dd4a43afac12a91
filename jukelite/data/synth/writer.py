"""The demo dataset on disk: songs as audio files, ``metadata.csv`` and ``manifest.jsonl``.

:func:`write_synth_dataset` pairs genres and artists so that a few songs cover every genre, gives
each song a seed derived from the dataset's, and writes what the training data loaders read.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import numpy as np

from jukelite.data.synth.score import GENRES
from jukelite.data.synth.song import synth_song
from jukelite.data.synth.voice import ARTISTS


def write_synth_dataset(
    out_dir: Path,
    n_songs: int,
    seconds: float,
    sample_rate: int = 22050,
    seed: int = 0,
    fmt: str = "flac",
    channels: int = 1,
) -> Path:
    """Write ``n_songs`` songs plus ``metadata.csv`` and ``manifest.jsonl``; return the manifest.

    Genres cycle through :data:`GENRES` and artists through :data:`ARTISTS` (offset by ``seed``),
    so any ``n_songs >= len(GENRES)`` covers every genre, and with 4 genres and 5 artists the
    pairings vary. Each song's own seed is derived from ``(seed, index)``.
    """
    from jukelite.audio import save_audio
    from jukelite.data.manifest import ManifestEntry, write_manifest
    from jukelite.fileio import write_text_atomic

    fmt = fmt.lower().lstrip(".")
    if fmt not in ("flac", "wav"):
        raise ValueError(f"fmt must be 'flac' or 'wav', got {fmt!r}")
    if n_songs < 1:
        raise ValueError(f"n_songs must be >= 1, got {n_songs}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    entries = []
    table = io.StringIO()
    writer = csv.writer(table, lineterminator="\n")
    writer.writerow(["file", "artist", "genre", "lyrics"])
    for i in range(n_songs):
        song_seed = int(np.random.SeedSequence([seed, i]).generate_state(1)[0])
        song = synth_song(
            song_seed, seconds, sample_rate,
            artist=ARTISTS[(seed + i) % len(ARTISTS)],
            genre=GENRES[(seed + i) % len(GENRES)],
            channels=channels,
        )
        name = f"song_{i:03d}.{fmt}"
        save_audio(out_dir / name, song.audio, sample_rate)
        writer.writerow([name, song.artist, ";".join([song.genre]), song.lyrics])
        entries.append(ManifestEntry(
            path=Path(os.path.abspath(out_dir / name)),
            artist=song.artist,
            genres=[song.genre],
            lyrics=song.lyrics,
            lyrics_timing=[tuple(w) for w in song.lyrics_timing],
            split=None,
            duration=song.audio.shape[1] / sample_rate,
            sample_rate=sample_rate,
            channels=channels,
            extra={"key": song.key, "bpm": song.bpm, "seed": song_seed},
        ))
    write_text_atomic(out_dir / "metadata.csv", table.getvalue())
    manifest = out_dir / "manifest.jsonl"
    write_manifest(entries, manifest)
    return manifest
