"""Training windows of VQ-VAE codes for the priors, with everything a prior is conditioned on.

Item `i` is a pure function of (seed, i) in training mode, like the audio windows, so resuming
is exact. A window holds `n_ctx` codes of the prior's level starting at a multiple of the
upsampling ratio (so the matching codes of the level above line up), the label vector `y`
(song length, window offset and length in audio samples, artist, genre words), the lyric window
for that stretch of audio, and for upsamplers the codes of the level above.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from typing import Protocol

import numpy as np
import torch
from torch.utils.data import Dataset

from jukelite.data.labels import LabelVocabulary, label_vector
from jukelite.data.lyrics import LyricsTokenizer, lyric_window, timed_lyric_window
from jukelite.data.manifest import ManifestEntry


class SongCodes(Protocol):
    """The codes of every song at one level (`jukelite.train.code_cache.CodeCache`)."""

    hop_length: int
    sample_rate: int

    def prepare(self, entries: Sequence[ManifestEntry], progress: bool = True) -> list[int]: ...

    def load(self, path: str | os.PathLike[str]) -> np.ndarray: ...


class CodeWindowDataset(Dataset):
    """Windows of `n_ctx` codes of one level (plus labels, lyrics, upper codes) over songs."""

    def __init__(
        self,
        entries: Sequence[ManifestEntry],
        codes: SongCodes,
        n_ctx: int,
        vocabulary: LabelVocabulary | None = None,
        upper: SongCodes | None = None,
        upsample_ratio: int = 1,
        tokenizer: LyricsTokenizer | None = None,
        n_tokens: int = 0,
        train: bool = True,
        seed: int = 0,
        progress: bool = True,
    ) -> None:
        self.codes, self.upper, self.n_ctx, self.ratio = codes, upper, n_ctx, upsample_ratio
        self.vocabulary, self.tokenizer, self.n_tokens = vocabulary, tokenizer, n_tokens
        self.train, self.seed = train, seed
        lengths = codes.prepare(entries, progress=progress)
        if upper is not None:
            upper.prepare(entries, progress=progress)
        keep = [(e, n) for e, n in zip(entries, lengths, strict=True) if n >= n_ctx]
        short = len(entries) - len(keep)
        if short:
            warnings.warn(
                f"{short} song(s) are shorter than one window of {n_ctx} tokens "
                f"({n_ctx * codes.hop_length / codes.sample_rate:.2f} s) and are skipped",
                stacklevel=2,
            )
        if not keep:
            raise ValueError(
                f"no song is at least one window long ({n_ctx} tokens = "
                f"{n_ctx * codes.hop_length / codes.sample_rate:.2f} s); lower model.n_ctx"
            )
        self.entries = [e for e, _ in keep]
        self.lengths = np.array([n for _, n in keep], dtype=np.int64)
        # Window starts on a grid of ratio-aligned positions; each song contributes its count.
        self.starts = (self.lengths - n_ctx) // upsample_ratio + 1
        self.cumulative = np.cumsum(self.starts)
        self.lyric_tokens = [
            tokenizer.encode(e.lyrics) if tokenizer is not None else [] for e in self.entries
        ]

    def __len__(self) -> int:
        """Training: the number of distinct windows; evaluation: one window per n_ctx stride."""
        if self.train:
            return int(self.cumulative[-1])
        return int(sum(max(1, (n - self.n_ctx) // self.n_ctx + 1) for n in self.lengths))

    def _locate(self, index: int) -> tuple[int, int]:
        """(song, first token) of item `index`."""
        if self.train:
            rng = np.random.default_rng([self.seed, index])
            flat = int(rng.integers(int(self.cumulative[-1])))
            song = int(np.searchsorted(self.cumulative, flat, side="right"))
            before = int(self.cumulative[song - 1]) if song else 0
            return song, (flat - before) * self.ratio
        for song, n in enumerate(self.lengths):
            count = max(1, (n - self.n_ctx) // self.n_ctx + 1)
            if index < count:
                start = index * self.n_ctx
                return song, start - start % self.ratio
            index -= count
        raise IndexError("evaluation window index out of range")

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        song, start = self._locate(int(index))
        entry = self.entries[song]
        hop = self.codes.hop_length
        codes = np.array(self.codes.load(entry.path)[start : start + self.n_ctx], dtype=np.int64)
        total, offset, length = int(self.lengths[song]) * hop, start * hop, self.n_ctx * hop
        item = {"codes": torch.from_numpy(codes)}
        if self.vocabulary is not None:
            artist = self.vocabulary.artist_id(entry.artist, strict=False)
            genres = self.vocabulary.genre_ids(entry.genres, strict=False)
            item["y"] = label_vector(total, offset, length, artist, genres)
        if self.upper is not None:
            up = start // self.ratio
            upper = self.upper.load(entry.path)[up : up + self.n_ctx // self.ratio]
            item["upper"] = torch.from_numpy(np.array(upper, dtype=np.int64))
        if self.tokenizer is not None:
            if entry.lyrics_timing:
                window = timed_lyric_window(
                    entry.lyrics_timing,
                    self.codes.sample_rate,
                    offset,
                    length,
                    self.n_tokens,
                    self.tokenizer,
                )
            else:
                window = lyric_window(self.lyric_tokens[song], total, offset, length, self.n_tokens)
            item["lyrics"] = torch.tensor(window.tokens, dtype=torch.int64)
        return item
