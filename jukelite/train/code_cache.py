"""VQ-VAE codes of every song, computed once per (song, VQ-VAE level weights) and cached.

Prior training reads millions of windows of codes; encoding the audio again for each would cost
more than the prior's own step. Each song is encoded once with the frozen VQ-VAE level from the
bundle and kept as an int32 ``.npy`` array. The cache folder is named after the SHA-256 of that
level's weights, so retraining the VQ-VAE (new weights) never serves stale codes.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from jukelite.audio import convert_channels
from jukelite.bundle import BundleError, load_vqvae_level, read_manifest
from jukelite.data.dataset import AudioCache, default_cache_dir
from jukelite.data.manifest import ManifestEntry
from jukelite.fileio import atomic_path
from jukelite.vqvae.chunked import encode_audio
from jukelite.vqvae.model import LevelVQVAE


class CodeCache:
    """Songs -> codes [tokens] of one VQ-VAE level of a bundle, encoded once and memory-mapped."""

    def __init__(
        self,
        bundle: str | os.PathLike[str],
        level: int,
        cache_dir: str | os.PathLike[str] | None = None,
        audio_cache: AudioCache | None = None,
        device: str | torch.device = "cpu",
    ) -> None:
        manifest = read_manifest(bundle)
        entry = manifest["vqvae"].get(str(level))
        if entry is None:
            present = sorted(manifest["vqvae"]) or "none"
            raise BundleError(
                f"{bundle} has no VQ-VAE level {level} to encode with (levels present: {present})"
            )
        self.bundle, self.level, self.device = Path(bundle), level, device
        self.sample_rate, self.channels = manifest["sample_rate"], manifest["channels"]
        self.hop_length = entry["hop_length"]
        self.weights_sha256 = entry["sha256"]
        root = Path(cache_dir) if cache_dir is not None else default_cache_dir().parent / "codes"
        self.folder = root / f"level{level}-{self.weights_sha256[:16]}"
        self.audio_cache = audio_cache or AudioCache(self.sample_rate)
        if self.audio_cache.sample_rate != self.sample_rate:
            raise ValueError(
                f"audio cache decodes at {self.audio_cache.sample_rate} Hz but the bundle's "
                f"VQ-VAE runs at {self.sample_rate} Hz"
            )
        self._model: LevelVQVAE | None = None

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_model"] = None  # DataLoader workers only read cached codes
        return state

    def path_for(self, path: str | os.PathLike[str]) -> Path:
        """Where the codes of the audio file at ``path`` live (named after its audio-cache key)."""
        return self.folder / self.audio_cache.path_for(path).name

    def _encode(self, path: str | os.PathLike[str]) -> np.ndarray:
        if self._model is None:
            self._model = load_vqvae_level(self.bundle, self.level, self.device)
        audio = torch.from_numpy(np.array(self.audio_cache.load(path)))
        audio = convert_channels(
            audio.mean(0, keepdim=True) if audio.shape[0] > 2 else audio, self.channels
        )
        return encode_audio(self._model, audio[None])[0].numpy().astype(np.int32)

    def load(self, path: str | os.PathLike[str]) -> np.ndarray:
        """The codes of one song, int32 [tokens] (read-only memory map); encodes on a miss."""
        target = self.path_for(path)
        if not target.is_file():
            codes = self._encode(path)
            with atomic_path(target) as tmp, open(tmp, "wb") as handle:
                np.save(handle, codes)
        return np.load(target, mmap_mode="r")

    def prepare(self, entries: Sequence[ManifestEntry], progress: bool = True) -> list[int]:
        """Encode every song not cached yet (progress bar); return each song's token count."""
        missing = [e for e in entries if not self.path_for(e.path).is_file()]
        if missing:
            from tqdm.auto import tqdm

            for entry in tqdm(
                missing, desc=f"encoding level {self.level}", unit="song", disable=not progress
            ):
                self.load(entry.path)
        return [int(self.load(e.path).shape[0]) for e in entries]
