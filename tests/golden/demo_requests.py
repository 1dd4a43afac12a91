"""The fixed requests whose demo-model outputs are recorded in tests/golden (public API only)."""

from __future__ import annotations

import torch

import jukelite
from jukelite.data.synth import synth_song

ARTIST, GENRE, LYRICS = "Mira Vale", "folk", "oh the river runs slow\nand the night is long"


def run_requests() -> tuple[dict[str, torch.Tensor], list]:
    """{case.level_L: codes} of every case, and the alignment (character start times)."""
    jb = jukelite.load()
    codes: dict[str, torch.Tensor] = {}

    def keep(case: str, song) -> None:
        for level, tensor in song.codes.items():
            codes[f"{case}.level_{level}"] = tensor

    # The top level over three windows, two samples drawn one at a time, filters on, aligned.
    top = jb.generate(artist=ARTIST, genre=GENRE, lyrics=LYRICS, seconds=2.5, n_samples=2,
                      seed=3, levels="top", temperature=0.9, top_k=200, top_p=0.95,
                      max_batch_size=1, alignment=True)
    keep("top", top)
    # Every level, the library's default settings.
    keep("all", jb.generate(artist=ARTIST, genre=[GENRE, "rock"], lyrics=LYRICS, seconds=1.0,
                            seed=0))
    # The two upsamplers below the top codes above, per-level temperatures.
    keep("upsample", jb.upsample(top.codes[2], artist=ARTIST, genre=GENRE, lyrics=LYRICS,
                                 seed=5, temperature={1: 0.8, 0: 0.95}, levels=1))
    # A continuation of a demo song's first half second.
    song = synth_song(11, 1.0, jb.sample_rate, artist=ARTIST, genre=GENRE)
    prompt = torch.from_numpy(song.audio)
    keep("continue", jb.continue_(prompt, seconds=1.5, prime_seconds=0.5, artist=ARTIST,
                                  genre=GENRE, lyrics=LYRICS, seed=7, levels=1))
    alignment = [sample.to_dict() for sample in top.alignment.samples]
    return codes, alignment
