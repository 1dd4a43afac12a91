"""The Python API: load a complete bundle and generate songs top-down.

    import jukelite
    jb = jukelite.load("models/tiny")
    song = jb.generate(artist="Mira Vale", genre="ambient", lyrics="...", seconds=8, seed=0)
    song.save("out/")

The top prior writes the coarse codes window by window; each upsampler fills in the next level
conditioned on the codes above; the finest level's decoder renders the audio. Only the prior
being sampled sits on the device: the others are not loaded, or are dropped after their level.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from jukelite.audio import save_audio
from jukelite.autoencode import decode_codes
from jukelite.bundle import BundleError, load_prior_level, load_vqvae_level, read_manifest
from jukelite.codes import save_codes
from jukelite.data.labels import LabelVocabulary, label_vector
from jukelite.data.lyrics import LyricsTokenizer, lyric_window
from jukelite.fileio import write_json_atomic
from jukelite.prior.model import LevelPrior
from jukelite.sampling import SamplingSettings, sample_level

# Jukebox's window overlap: the top prior moves 1/8 window at a time, the upsamplers 1/2.
HOP_FRACTION_TOP = 0.125
HOP_FRACTION_UPSAMPLER = 0.5


@dataclass
class Song:
    """Generated audio [n_samples, channels, samples] in [-1, 1], its codes and its settings."""

    audio: Tensor
    sample_rate: int
    codes: dict[int, Tensor]
    record: dict[str, Any] = field(default_factory=dict)

    def save(self, directory: str | Path) -> Path:
        """WAVs (`level_L/sample_i.wav` for the finest level decoded), codes and a JSON record."""
        directory = Path(directory)
        level = min(self.codes)
        for index, audio in enumerate(self.audio):
            path = directory / f"level_{level}" / f"sample_{index}.wav"
            save_audio(path, audio, self.sample_rate)
        info = {"sample_rate": self.sample_rate, "audio_samples": self.audio.shape[-1]}
        save_codes(directory / "codes.safetensors", self.codes, info)
        write_json_atomic(directory / "song.json", self.record)
        return directory


class Jukebox:
    """A complete bundle ready to sample: every VQ-VAE level and every prior it claims."""

    def __init__(self, bundle: str | Path, device: str | torch.device = "cpu"):
        self.bundle, self.device = Path(bundle), torch.device(device)
        manifest = read_manifest(self.bundle)
        self.sample_rate, self.channels = manifest["sample_rate"], manifest["channels"]
        self.levels = sorted(int(level) for level in manifest["vqvae"])
        missing = [level for level in self.levels if str(level) not in manifest["priors"]]
        if not self.levels or missing:
            raise BundleError(
                f"{self.bundle} cannot sample yet: it has no prior for level(s) {missing} "
                f"(VQ-VAE levels {self.levels}, priors {sorted(manifest['priors'])})"
            )
        self.hop_lengths = {int(k): v for k, v in manifest["hop_lengths"].items()}
        self.vocabulary = (
            LabelVocabulary.from_dict(manifest["labels"]) if manifest.get("labels") else None
        )
        self.tokenizer = (
            LyricsTokenizer.from_dict(manifest["lyrics"]) if manifest.get("lyrics") else None
        )

    @property
    def top_level(self) -> int:
        return self.levels[-1]

    def _labels(self, artist: str, genres: list[str]) -> tuple[int, list[int]]:
        if self.vocabulary is None:
            return 0, []
        return self.vocabulary.artist_id(artist), self.vocabulary.genre_ids(genres)

    def generate(
        self,
        artist: str = "unknown",
        genre: str | list[str] = "unknown",
        lyrics: str = "",
        seconds: float = 8.0,
        n_samples: int = 1,
        seed: int = 0,
        temperature: float = 0.99,
        top_k: int = 0,
        top_p: float = 0.0,
        progress: Callable[[int, int, int], None] | None = None,
    ) -> Song:
        """Sample `n_samples` songs of `seconds` top-down and render the finest level.

        `progress(level, window, codes_so_far)` is called after every window (for UIs)."""
        genres = [genre] if isinstance(genre, str) else list(genre)
        artist_id, genre_ids = self._labels(artist, genres)
        top_hop = self.hop_lengths[self.top_level]
        total = math.ceil(seconds * self.sample_rate / top_hop) * top_hop
        settings = SamplingSettings(temperature, top_k, top_p)
        lyric_tokens = self.tokenizer.encode(lyrics) if self.tokenizer else []
        codes: dict[int, Tensor] = {}
        for level in reversed(self.levels):
            prior = load_prior_level(self.bundle, level, self.device)
            condition_for = self._conditioner(prior, level, total, artist_id, genre_ids,
                                              lyric_tokens, n_samples, codes.get(level + 1))
            fraction = HOP_FRACTION_TOP if level == self.top_level else HOP_FRACTION_UPSAMPLER
            tokens = total // self.hop_lengths[level]
            on_window = None if progress is None else partial(_report, progress, level)
            codes[level] = sample_level(
                prior, tokens, condition_for, seed,
                torch.zeros(n_samples, 0, dtype=torch.long, device=self.device),
                fraction, settings, on_window,
            ).cpu()
            del prior  # only the prior being sampled stays on the device
        decoder = load_vqvae_level(self.bundle, self.levels[0], self.device)
        audio = decode_codes(decoder, codes[self.levels[0]]).clamp(-1, 1)
        record = {
            "artist": artist, "genres": genres, "lyrics": lyrics,
            "seconds": total / self.sample_rate, "n_samples": n_samples, "seed": seed,
            "temperature": temperature, "top_k": top_k, "top_p": top_p,
            "bundle": str(self.bundle),
        }
        return Song(audio, self.sample_rate, codes, record)

    def _conditioner(
        self, prior: LevelPrior, level: int, total: int, artist_id: int, genre_ids: list[int],
        lyric_tokens: list[int], n_samples: int, upper: Tensor | None,
    ) -> Callable[[int], tuple[Any, Tensor | None]]:
        """condition_for(start) of one level: labels and timing for the window's offset, its
        lyric window, and for upsamplers the matching codes of the level above."""
        config, hop = prior.config, self.hop_lengths[level]
        length = config.n_ctx * hop

        def condition_for(start: int):
            offset = start * hop
            y = None
            if config.labels:
                y = label_vector(total, offset, length, artist_id, genre_ids or [0])
                y = y[None].expand(n_samples, -1).to(self.device)
            lyrics = None
            if config.lyrics != "none":
                window = lyric_window(lyric_tokens, total, offset, length, config.n_tokens)
                lyrics = torch.tensor([window.tokens] * n_samples, device=self.device)
            upper_window = None
            if config.upsampler:
                ratio = prior.upsample_ratio
                piece = upper[:, start // ratio : (start + config.n_ctx) // ratio]
                missing = config.n_ctx // ratio - piece.shape[1]  # a song shorter than a window
                upper_window = torch.nn.functional.pad(piece, (0, missing)).to(self.device)
            cond = prior.condition(y, upper_window, lyrics)
            return cond, lyrics if config.lyrics == "single" else None

        return condition_for


def _report(progress: Callable[[int, int, int], None], level: int, window: int, codes: Tensor):
    progress(level, window, codes.shape[1])


def load(path: str | Path | None = None, device: str | torch.device = "cpu") -> Jukebox:
    """A bundle ready for sampling (`path`; the bundled demo model arrives with issue 5)."""
    if path is None:
        raise BundleError("no demo model is bundled yet: pass the path of a trained bundle")
    return Jukebox(path, device)
