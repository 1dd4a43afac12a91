"""Training windows over a set of songs, read through a decoded-audio cache.

Decoding and resampling compressed audio is far slower than a training step needs, so every
file is decoded once into a float32 ``.npy`` file (:class:`AudioCache`) and windows are sliced
from a memory map of it. :class:`WindowDataset` follows Jukebox: each song is cut into a grid of
``sample_length`` chunks, one epoch is one pass over the chunks, and training items are chunks
drawn at random *as a pure function of (seed, index)*. That last point makes resuming exact (the
sampler just continues counting) and DDP sharding trivial (ranks take disjoint indices).
"""

from __future__ import annotations

import hashlib
import operator
import os
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Subset

from jukelite.audio import AudioError, convert_channels, load_audio
from jukelite.data.manifest import ManifestEntry
from jukelite.fileio import atomic_path

_CACHE_FORMAT = 1  # bump when the cached arrays change meaning; old files are then ignored


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/jukelite/audio``, else ``~/.cache/jukelite/audio``."""
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "jukelite" / "audio"


class AudioCache:
    """Each audio file decoded and resampled to ``sample_rate`` once, kept as ``.npy [C, T]``.

    The key hashes the file's real path, size, mtime and the target rate, so an edited or
    replaced file is decoded again (stale entries are simply left behind; delete the folder to
    reclaim space). The file's own channel count is kept so the dataset can still downmix at
    random. Writes are atomic, so DDP ranks and DataLoader workers may race on the same file:
    the loser's rename just replaces an identical array. Open memory maps are kept in a small
    per-process LRU (each holds a file descriptor); it is dropped when the cache is pickled.
    """

    def __init__(
        self, sample_rate: int, cache_dir: str | os.PathLike[str] | None = None, max_open: int = 128
    ) -> None:
        if int(sample_rate) != sample_rate or sample_rate <= 0:
            raise ValueError(f"AudioCache: sample_rate must be a positive integer, got "
                             f"{sample_rate!r}")
        self.sample_rate = int(sample_rate)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.max_open = max(1, int(max_open))
        self._open: OrderedDict[str, np.ndarray] = OrderedDict()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_open"] = OrderedDict()  # memmaps would pickle as full copies of the audio
        return state

    def path_for(self, path: str | os.PathLike[str]) -> Path:
        """Where the decoded copy of ``path`` lives (whether or not it exists yet)."""
        real = os.path.realpath(path)
        try:
            st = os.stat(real)
        except OSError as err:
            raise AudioError(path, f"cannot read audio ({err.strerror or err})") from err
        ident = f"{_CACHE_FORMAT}\0{real}\0{st.st_size}\0{st.st_mtime_ns}\0{self.sample_rate}"
        digest = hashlib.sha256(ident.encode("utf-8", "surrogateescape")).hexdigest()[:32]
        return self.cache_dir / digest[:2] / f"{digest}.npy"

    def load(self, path: str | os.PathLike[str]) -> np.ndarray:
        """The decoded audio of ``path`` as a read-only float32 memmap ``[C, T]``."""
        key = os.fspath(path)
        arr = self._open.get(key)
        if arr is not None:
            self._open.move_to_end(key)
            return arr
        target = self.path_for(path)
        if not target.is_file():
            self._decode_to(path, target)
        arr = np.load(target, mmap_mode="r")
        self._open[key] = arr
        if len(self._open) > self.max_open:
            self._open.popitem(last=False)
        return arr

    def _decode_to(self, path: str | os.PathLike[str], target: Path) -> None:
        audio = load_audio(path, sample_rate=self.sample_rate).numpy().astype(np.float32)
        with atomic_path(target) as tmp, open(tmp, "wb") as f:  # np.save(path) would add .npy
            np.save(f, np.ascontiguousarray(audio))

    def prepare(self, entries: Sequence[ManifestEntry], progress: bool = True) -> list[int]:
        """Decode every entry not cached yet (with a progress bar); return each song's length.

        Under DDP call this on one rank before the others build their datasets, or every rank
        decodes the same files (correct, only wasted work).
        """
        missing = [e.path for e in entries if not self.path_for(e.path).is_file()]
        if missing:
            from tqdm.auto import tqdm

            bar = tqdm(missing, desc="decoding audio", unit="song", disable=not progress)
            for path in bar:
                self._decode_to(path, self.path_for(path))
        return [int(self.load(e.path).shape[1]) for e in entries]


def _entry_key(entry: ManifestEntry) -> str:
    """The part of a song's path that is the same on every machine: parent folder + file name.

    The parent is included so ``album1/01.flac`` and ``album2/01.flac`` split independently.
    """
    path = Path(entry.path)
    return f"{path.parent.name}/{path.name}"


def _split_hash(seed: int, entry: ManifestEntry) -> float:
    digest = hashlib.sha256(f"{seed}\0{_entry_key(entry)}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def evenly_spaced(dataset: Dataset, count: int) -> Dataset:
    """At most `count` items spread evenly over `dataset` (a fixed, cheap validation set)."""
    if count >= len(dataset):
        return dataset
    step = len(dataset) / count
    return Subset(dataset, [int(i * step) for i in range(count)])


def split_entries(
    entries: Sequence[ManifestEntry], valid_fraction: float, seed: int = 0
) -> tuple[list[ManifestEntry], list[ManifestEntry]]:
    """Split songs into (train, valid), whole songs only, identically on every machine.

    Entries whose manifest ``split`` is set keep it. The others go to valid when a hash of
    ``(seed, parent folder/file name)`` falls below ``valid_fraction``. With
    ``valid_fraction > 0`` and at least two songs, validation is never left empty (the
    unassigned song with the smallest hash is moved there), and training is never left empty
    either (the valid song with the largest hash goes back). Input order is kept in both lists.
    """
    if not 0.0 <= valid_fraction < 1.0:
        raise ValueError(f"valid_fraction must be in [0, 1), got {valid_fraction}")
    if entries and all(e.split == "valid" for e in entries):
        raise ValueError(f"all {len(entries)} songs are marked split='valid' in the manifest; "
                         "nothing is left to train on")
    hashes = {i: _split_hash(seed, e) for i, e in enumerate(entries) if e.split is None}
    valid = {i for i, e in enumerate(entries) if e.split == "valid"}
    valid |= {i for i, h in hashes.items() if h < valid_fraction}
    if valid_fraction > 0 and len(entries) >= 2 and not valid and hashes:
        valid.add(min(hashes, key=hashes.__getitem__))
    if entries and len(valid) == len(entries):  # every unassigned song hashed into valid
        movable = [i for i in valid if i in hashes]
        valid.discard(max(movable, key=hashes.__getitem__))
    train = [e for i, e in enumerate(entries) if i not in valid]
    return train, [e for i, e in enumerate(entries) if i in valid]


class WindowDataset(Dataset):
    """Fixed-length audio windows on a per-song grid of ``sample_length`` chunks.

    A song shorter than a window is one chunk, zero-padded at the end; a trailing partial chunk
    counts when it is at least half a window, and its window is moved back to end at the song's
    end (real audio rather than padding, like Jukebox's clamping). ``len`` is the number of
    chunks: one epoch.

    Train mode: item ``i`` (any ``i >= 0``, also past ``len``) is a chunk drawn uniformly with
    ``np.random.default_rng([seed, i])``; ``random_shift`` jitters its start by
    U[-sample_length/2, sample_length/2) samples (clamped into the song) and
    ``random_downmix`` mixes stereo files to mono as ``m*L + (1-m)*R`` with m ~ U[0, 1).
    Eval mode: item ``i`` is chunk ``i`` in order, no augmentation, IndexError past the end.
    Without ``random_downmix`` stereo becomes mono with m = 0.5; mono files are copied to both
    channels when ``channels=2``.

    Items are dicts: ``audio`` float32 ``[channels, sample_length]``, ``total_length`` (song
    length in samples at ``sample_rate``), ``offset`` (window start in samples; the padding of
    a short song is after the audio), and ``song`` (index into ``self.entries``).
    """

    def __init__(
        self,
        entries: Sequence[ManifestEntry],
        *,
        sample_rate: int,
        sample_length: int,
        channels: int = 1,
        train: bool = True,
        seed: int = 0,
        random_downmix: bool = False,
        random_shift: bool = False,
        cache: AudioCache | None = None,
    ) -> None:
        if not entries:
            raise ValueError("WindowDataset: no songs given (the entry list is empty)")
        if int(sample_length) != sample_length or sample_length <= 0:
            raise ValueError(f"WindowDataset: sample_length must be a positive integer, got "
                             f"{sample_length!r}")
        if channels not in (1, 2):
            raise ValueError(f"WindowDataset: channels must be 1 or 2, got {channels!r}")
        if cache is None:
            cache = AudioCache(sample_rate)
        elif cache.sample_rate != sample_rate:
            raise ValueError(f"WindowDataset: cache decodes at {cache.sample_rate} Hz but "
                             f"sample_rate is {sample_rate} Hz")
        self.entries = list(entries)
        self.sample_rate = int(sample_rate)
        self.sample_length = int(sample_length)
        self.channels = channels
        self.train = train
        self.seed = int(seed)
        self.random_downmix = random_downmix
        self.random_shift = random_shift
        self.cache = cache
        self.lengths = np.asarray(cache.prepare(self.entries), dtype=np.int64)
        for entry, n in zip(self.entries, self.lengths, strict=True):
            if n <= 0:
                raise AudioError(entry.path, "audio is empty after resampling")
        full, rest = np.divmod(self.lengths, self.sample_length)
        chunks = np.maximum(full + (2 * rest >= self.sample_length), 1)
        # chunk_end[s] = one past the last global chunk index of song s
        self.chunk_end = np.cumsum(chunks)

    def __len__(self) -> int:
        return int(self.chunk_end[-1])

    def _locate(self, chunk: int) -> tuple[int, int]:
        """Global chunk index -> (song index, window start in samples)."""
        song = int(np.searchsorted(self.chunk_end, chunk, side="right"))
        first = int(self.chunk_end[song - 1]) if song else 0
        start = (chunk - first) * self.sample_length
        last_start = max(int(self.lengths[song]) - self.sample_length, 0)
        return song, min(start, last_start)

    def __getitem__(self, index: int) -> dict[str, Any]:
        i = operator.index(index)
        if i < 0:
            raise IndexError(f"WindowDataset: index must be >= 0, got {i}")
        mix = 0.5
        if self.train:
            rng = np.random.default_rng([self.seed, i])
            song, offset = self._locate(int(rng.integers(len(self))))
            if self.random_shift:
                half = self.sample_length // 2
                last_start = max(int(self.lengths[song]) - self.sample_length, 0)
                offset = min(max(offset + int(rng.integers(-half, half)), 0), last_start)
            if self.random_downmix:
                mix = float(rng.random())
        else:
            if i >= len(self):
                raise IndexError(f"WindowDataset: index {i} out of range for {len(self)} "
                                 "eval windows")
            song, offset = self._locate(i)
        audio = self._window(song, offset, mix)
        return {
            "audio": audio,
            "total_length": int(self.lengths[song]),
            "offset": offset,
            "song": song,
        }

    def _window(self, song: int, offset: int, mix: float) -> torch.Tensor:
        data = self.cache.load(self.entries[song].path)
        piece = torch.from_numpy(np.array(data[:, offset : offset + self.sample_length]))
        if piece.shape[0] > 2:
            piece = piece.mean(dim=0, keepdim=True)  # surround: no meaningful L/R to blend
        piece = convert_channels(piece, self.channels, mix=mix)
        if piece.shape[1] < self.sample_length:
            piece = torch.nn.functional.pad(piece, (0, self.sample_length - piece.shape[1]))
        return piece.contiguous()
