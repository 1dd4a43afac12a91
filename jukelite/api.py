"""The Python API: load a complete bundle and sample songs top-down.

    import jukelite
    jb = jukelite.load("models/tiny")
    song = jb.generate(artist="Mira Vale", genre="ambient", lyrics="...", seconds=8, seed=0)
    song.save("out/")

The top prior writes the coarse codes window by window; each upsampler fills in the next level
conditioned on the codes above; the finest level's decoder renders the audio. Only the prior
being sampled sits on the device: the others are not loaded, or are dropped after their level.
Every entry point (`generate`, `continue_`, `upsample`, `resume`) builds a `SampleRequest` and
runs the same loop; with `output_dir` the codes are saved after every window.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from jukelite.audio import convert_channels, load_audio
from jukelite.autoencode import decode_codes, encode_audio
from jukelite.bundle import (
    BundleError,
    file_sha256,
    load_prior_level,
    load_vqvae_level,
    package_versions,
    read_manifest,
)
from jukelite.data.labels import LabelVocabulary, label_vector
from jukelite.data.lyrics import LyricsTokenizer, lyric_window
from jukelite.demo_model import demo_bundle_path
from jukelite.prior.model import LevelPrior, PriorConfig
from jukelite.sampling import SamplingSettings, sample_level
from jukelite.song import (
    SONG_FORMAT,
    SampleRequest,
    Song,
    SongAlignment,
    empty_codes,
    read_progress,
    save_level_audio,
    save_progress,
)

# Jukebox's window overlap: the top prior moves 1/8 window at a time, the upsamplers 1/2.
HOP_FRACTION_TOP = 0.125
HOP_FRACTION_UPSAMPLER = 0.5
DEFAULT_TEMPERATURE = 0.99

Progress = Callable[[int, int, int], None]  # (level, codes done, codes to do) at this level


class LyricsWarning(UserWarning):
    """Lyrics that the model cannot take as written (characters dropped, or no lyric prior)."""


class Jukebox:
    """A complete bundle ready to sample: every VQ-VAE level and every prior it claims.

    `dtype` (e.g. torch.bfloat16 on CUDA) is the precision the priors sample in; the logits
    are filtered and sampled in float32 whatever it is. `compile=True` runs each one-token
    step under torch.compile (a one-off compile per prior, then fewer, fused kernels).
    """

    def __init__(
        self,
        bundle: str | Path,
        device: str | torch.device = "cpu",
        dtype: torch.dtype | None = None,
        compile: bool = False,
    ):
        self.bundle, self.device, self.dtype = Path(bundle), torch.device(device), dtype
        self.step = "compiled" if compile else "cached"
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
        recommended = manifest.get("sampling", {}).get("temperature", {})
        self.default_temperature = {  # the bundle's own (jukelite pack --temperature), else 0.99
            level: float(recommended.get(str(level), DEFAULT_TEMPERATURE))
            for level in self.levels
        }
        self.prior_configs = {
            level: PriorConfig.from_dict(manifest["priors"][str(level)]["config"])
            for level in self.levels
        }
        self.vocabulary = (
            LabelVocabulary.from_dict(manifest["labels"]) if manifest.get("labels") else None
        )
        self.tokenizer = (
            LyricsTokenizer.from_dict(manifest["lyrics"]) if manifest.get("lyrics") else None
        )

    @property
    def top_level(self) -> int:
        return self.levels[-1]

    @property
    def artists(self) -> list[str]:
        return list(self.vocabulary.artists) if self.vocabulary else []

    @property
    def genres(self) -> list[str]:
        return list(self.vocabulary.genres) if self.vocabulary else []

    # ------------------------------------------------------------------ audio <-> codes
    def encode(
        self, audio: Tensor | str | Path, levels: list[int] | None = None
    ) -> dict[int, Tensor]:
        """Audio (a file, or [N, C, S] / [C, S] at the bundle's rate) -> codes of every level."""
        audio = self._audio(audio)
        return {
            level: encode_audio(load_vqvae_level(self.bundle, level, self.device), audio)
            for level in (self.levels if levels is None else levels)
        }

    def decode(self, codes: dict[int, Tensor] | Tensor, level: int | None = None) -> Tensor:
        """Codes of one level [N, tokens] (default: the finest in a dict) -> audio [N, C, S]."""
        if isinstance(codes, dict):
            level = min(codes) if level is None else level
            if level not in codes:
                raise ValueError(f"no codes for level {level} (have {sorted(codes)})")
            codes = codes[level]
        level = self.levels[0] if level is None else level
        if level not in self.levels:
            raise ValueError(f"{self.bundle} has no level {level} (levels {self.levels})")
        decoder = load_vqvae_level(self.bundle, level, self.device)
        return decode_codes(decoder, codes.long()).clamp(-1, 1)

    def _audio(self, audio: Tensor | str | Path) -> Tensor:
        if isinstance(audio, str | Path):
            return load_audio(audio, sample_rate=self.sample_rate, channels=self.channels)[None]
        audio = audio.float()
        if audio.ndim == 2:
            audio = audio[None]
        if audio.ndim != 3:
            raise ValueError(f"audio must be [N, C, S] or [C, S], got {tuple(audio.shape)}")
        if audio.shape[1] != self.channels:
            audio = torch.stack([convert_channels(a, self.channels) for a in audio])
        return audio

    # ------------------------------------------------------------------ entry points
    def generate(
        self,
        artist: str = "unknown",
        genre: str | list[str] = "unknown",
        lyrics: str = "",
        seconds: float = 8.0,
        n_samples: int = 1,
        seed: int = 0,
        temperature: float | dict[int, float] | None = None,
        top_k: int = 0,
        top_p: float = 0.0,
        levels: str | int = "all",
        max_batch_size: int | None = None,
        alignment: bool = False,
        output_dir: str | Path | None = None,
        progress: Progress | None = None,
    ) -> Song:
        """Sample `n_samples` songs of `seconds` top-down and render the finest level sampled.

        `levels`: "all", "top" (a quick preview) or the lowest level to sample. `temperature`
        is one value or one per level (default: the bundle's `default_temperature`).
        `progress(level, done, total)` is told after every sampled token (counted over all
        samples). With `output_dir` the codes and `song.json` are written after every window
        and each finished level's WAVs as soon as it is done; `resume(output_dir)` continues a
        stopped run.
        """
        request = self._request(
            "generate", artist, genre, lyrics, self._total(seconds), n_samples, seed,
            temperature, top_k, top_p, levels, max_batch_size, alignment,
        )
        return self._run(request, {}, output_dir, progress)

    def continue_(
        self,
        prompt: Tensor | str | Path,
        seconds: float,
        prime_seconds: float | None = None,
        artist: str = "unknown",
        genre: str | list[str] = "unknown",
        lyrics: str = "",
        n_samples: int = 1,
        seed: int = 0,
        temperature: float | dict[int, float] | None = None,
        top_k: int = 0,
        top_p: float = 0.0,
        levels: str | int = "all",
        max_batch_size: int | None = None,
        alignment: bool = False,
        output_dir: str | Path | None = None,
        progress: Progress | None = None,
    ) -> Song:
        """Continue a song: the first `prime_seconds` of `prompt` (default all of it) are
        encoded at every level and kept; the rest of the `seconds` is sampled after them."""
        audio = self._audio(prompt)
        total = self._total(seconds)
        top_hop = self.hop_lengths[self.top_level]
        available = audio.shape[-1] if prime_seconds is None else min(
            audio.shape[-1], round(prime_seconds * self.sample_rate))
        primed = available // top_hop * top_hop
        source = str(prompt) if isinstance(prompt, str | Path) else "tensor"
        if primed < top_hop:
            raise ValueError(f"the prompt ({source}) is shorter than one top-level token "
                             f"({top_hop} samples): nothing to continue")
        if primed >= total:
            raise ValueError(
                f"the prompt ({primed / self.sample_rate:.2f} s used of {source}) must be "
                f"shorter than the song ({total / self.sample_rate:.2f} s): raise seconds"
            )
        if audio.shape[0] not in (1, n_samples):
            raise ValueError(f"the prompt holds {audio.shape[0]} clips; give 1 or n_samples")
        request = self._request(
            "continue", artist, genre, lyrics, total, n_samples, seed, temperature, top_k,
            top_p, levels, max_batch_size, alignment,
        )
        request.prime = {"source": source, "samples": primed}
        clip = audio[..., :primed].expand(n_samples, -1, -1)
        codes = {
            level: encoded[:, : primed // self.hop_lengths[level]]
            for level, encoded in self.encode(clip, self._sampled_levels(request)).items()
        }
        return self._run(request, codes, output_dir, progress)

    def upsample(
        self,
        codes: dict[int, Tensor] | Tensor,
        artist: str = "unknown",
        genre: str | list[str] = "unknown",
        lyrics: str = "",
        seed: int = 0,
        temperature: float | dict[int, float] | None = None,
        top_k: int = 0,
        top_p: float = 0.0,
        levels: str | int = "all",
        max_batch_size: int | None = None,
        output_dir: str | Path | None = None,
        progress: Progress | None = None,
    ) -> Song:
        """Sample the levels below given codes (a tensor = the top level's codes) again: the
        given levels are kept, every level under the lowest given one is sampled afresh."""
        if isinstance(codes, Tensor):
            codes = {self.top_level: codes}
        codes = {int(level): c.long().cpu() for level, c in codes.items()}
        if self.top_level not in codes:
            raise ValueError(f"upsampling needs the top level's codes (level {self.top_level}); "
                             f"got levels {sorted(codes)}")
        top = codes[self.top_level]
        request = self._request(
            "upsample", artist, genre, lyrics, top.shape[1] * self.hop_lengths[self.top_level],
            top.shape[0], seed, temperature, top_k, top_p, levels, max_batch_size, False,
        )
        kept = {level: c for level, c in codes.items() if level > request.lowest_level}
        for level, c in kept.items():
            expected = request.total_samples // self.hop_lengths[level]
            if c.shape != (request.n_samples, expected):
                raise ValueError(f"level {level} codes are {tuple(c.shape)}, expected "
                                 f"[{request.n_samples}, {expected}] to match the top level")
        return self._run(request, kept, output_dir, progress)

    def resume(
        self, output_dir: str | Path, levels: str | int | None = None,
        progress: Progress | None = None,
    ) -> Song:
        """Continue a stopped run from its directory (same codes as an uninterrupted run);
        `levels` may go further down than the run first asked for (e.g. after a preview)."""
        record, codes = read_progress(output_dir)
        if record.get("bundle_sha256") != file_sha256(self.bundle / "jukelite.json"):
            raise BundleError(
                f"{output_dir} was sampled with a different bundle ({record.get('bundle')}, "
                f"jukelite.json sha256 {str(record.get('bundle_sha256'))[:12]}...) than "
                f"{self.bundle}; resuming would mix two models"
            )
        request = SampleRequest.from_dict(record["request"])
        if levels is not None:
            request.lowest_level = self._lowest_level(levels)
        return self._run(request, codes, output_dir, progress, record)

    # ------------------------------------------------------------------ checks
    def _total(self, seconds: float) -> int:
        """Song length in samples, rounded up to whole top-level tokens."""
        if not seconds > 0:
            raise ValueError(f"seconds must be > 0, got {seconds}")
        top_hop = self.hop_lengths[self.top_level]
        return math.ceil(seconds * self.sample_rate / top_hop) * top_hop

    def _lowest_level(self, levels: str | int) -> int:
        if levels == "all":
            return self.levels[0]
        if levels == "top":
            return self.top_level
        try:
            level = int(levels)
        except ValueError:
            level = None
        if level not in self.levels:
            raise ValueError(f"levels must be 'all', 'top' or one of {self.levels}, got {levels!r}")
        return level

    def _sampled_levels(self, request: SampleRequest) -> list[int]:
        return [level for level in self.levels if level >= request.lowest_level]

    def _request(
        self, mode: str, artist: str, genre: str | list[str], lyrics: str, total: int,
        n_samples: int, seed: int, temperature: float | dict[int, float] | None, top_k: int,
        top_p: float, levels: str | int, max_batch_size: int | None, alignment: bool,
    ) -> SampleRequest:
        """Check everything up front, before minutes of sampling: labels, length, lyrics."""
        genres = [genre] if isinstance(genre, str) else list(genre)
        if not genres:
            raise ValueError("give at least one genre")
        if self.vocabulary is not None:
            self.vocabulary.artist_id(artist)  # unknown names raise with the closest ones
            self.vocabulary.genre_ids(genres)
        top = self.prior_configs[self.top_level]
        if top.timing:
            top.timing_range.check_total(total)
        lowest = self._lowest_level(levels)
        if isinstance(temperature, dict):
            unknown = sorted(set(temperature) - set(self.levels))
            if unknown:
                raise ValueError(f"temperature given for level(s) {unknown}; levels are "
                                 f"{self.levels}")
            per_level = {level: temperature.get(level, self.default_temperature[level])
                         for level in self.levels}
        elif temperature is None:
            per_level = dict(self.default_temperature)
        else:
            per_level = dict.fromkeys(self.levels, float(temperature))
        for t in per_level.values():
            SamplingSettings(t, top_k, top_p)  # validates
        if lyrics and not any(c.lyrics != "none" for c in self.prior_configs.values()):
            warnings.warn("this model is not conditioned on lyrics: they are ignored",
                          LyricsWarning, stacklevel=3)
        elif lyrics and self.tokenizer is not None:
            message = self.tokenizer.normalize(lyrics).warning()
            if message:
                warnings.warn(f"lyrics: {message}", LyricsWarning, stacklevel=3)
        if alignment and top.lyrics == "none":
            raise ValueError("alignment needs a lyrics-conditioned top prior; this one has none")
        return SampleRequest(
            mode=mode, artist=artist, genres=genres, lyrics=lyrics, total_samples=total,
            n_samples=n_samples, seed=seed,
            temperature={str(level): t for level, t in per_level.items()},
            top_k=top_k, top_p=top_p, lowest_level=lowest, max_batch_size=max_batch_size,
            alignment=alignment,
        )

    # ------------------------------------------------------------------ the sampling loop
    def _new_record(self, request: SampleRequest) -> dict[str, Any]:
        return {
            "format": SONG_FORMAT,
            "status": "running",
            "request": request.to_dict(),
            "bundle": str(self.bundle),
            "bundle_sha256": file_sha256(self.bundle / "jukelite.json"),
            "sample_rate": self.sample_rate,
            "hop_lengths": {str(level): self.hop_lengths[level] for level in self.levels},
            "seconds": request.total_samples / self.sample_rate,
            "device": str(self.device),
            "dtype": str(self.dtype or torch.float32),
            "step": self.step,
            "versions": package_versions(),
            "levels": {},
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }

    def _run(
        self,
        request: SampleRequest,
        codes: dict[int, Tensor],
        output_dir: str | Path | None,
        progress: Progress | None,
        record: dict[str, Any] | None = None,
    ) -> Song:
        out = None if output_dir is None else Path(output_dir)
        record = record or self._new_record(request)
        record["request"], record["status"] = request.to_dict(), "running"
        lyric_tokens = self.tokenizer.encode(request.lyrics) if self.tokenizer else []
        codes, aligned = dict(codes), None
        if out is not None:
            save_progress(out, codes, record, self.sample_rate)
        for level in reversed(self._sampled_levels(request)):
            tokens = request.total_samples // self.hop_lengths[level]
            stats = record["levels"].setdefault(str(level), {"seconds": 0.0, "sampled": 0})
            stats["tokens"] = tokens
            if codes.get(level, empty_codes(request.n_samples)).shape[1] < tokens:
                self._sample_level(level, request, lyric_tokens, codes, record, out, progress)
            if request.alignment and level == self.top_level:
                aligned = self._align(request, lyric_tokens, codes[level], record, out)
            if out is not None:
                save_level_audio(out, level, self.decode(codes[level], level), self.sample_rate)
                save_progress(out, codes, record, self.sample_rate)
        lowest = request.lowest_level
        audio = self.decode(codes[lowest], lowest)
        record["status"] = "complete"
        if out is not None:
            save_progress(out, codes, record, self.sample_rate)
        kept = {level: c for level, c in codes.items() if level >= lowest}
        return Song(audio, self.sample_rate, kept, record, aligned)

    def _sample_level(
        self,
        level: int,
        request: SampleRequest,
        lyric_tokens: list[int],
        codes: dict[int, Tensor],
        record: dict[str, Any],
        out: Path | None,
        progress: Progress | None,
    ) -> None:
        """Sample (the rest of) one level into `codes[level]`, saving after every window."""
        tokens = request.total_samples // self.hop_lengths[level]
        have = codes.get(level, empty_codes(request.n_samples))
        prior = self._prior(level)  # only the prior being sampled sits on the device
        window = self._window_inputs(prior, level, request, lyric_tokens, codes.get(level + 1))
        stats = record["levels"][str(level)]
        done, goal = have.shape[1] * request.n_samples, tokens * request.n_samples

        def saved(index: int, so_far: Tensor) -> None:
            codes[level] = so_far.cpu()
            if out is not None:
                save_progress(out, codes, record, self.sample_rate)

        def tick(k: int) -> None:
            nonlocal done
            done += k
            if progress is not None:
                progress(level, done, goal)

        began = time.perf_counter()
        fraction = HOP_FRACTION_TOP if level == self.top_level else HOP_FRACTION_UPSAMPLER
        settings = SamplingSettings(request.temperature[str(level)], request.top_k, request.top_p)
        codes[level] = sample_level(
            prior, tokens, partial(_condition_for, window, prior.config.lyrics), request.seed,
            have.to(self.device), fraction, settings, saved, request.max_batch_size, tick,
            self.step,
        ).cpu()
        stats["seconds"] += time.perf_counter() - began
        stats["sampled"] += (tokens - have.shape[1]) * request.n_samples
        stats["tokens_per_second"] = stats["sampled"] / max(stats["seconds"], 1e-9)

    def _align(
        self, request: SampleRequest, lyric_tokens: list[int], codes: Tensor,
        record: dict[str, Any], out: Path | None,
    ) -> SongAlignment:
        """Lyric timings of the top level, read off the chosen attention layer and head over
        every window, one sample at a time (the matrix is tokens x characters)."""
        from jukelite.alignment import (
            align_level,
            alignment_layer,
            build_alignment,
        )

        prior = self._prior(self.top_level)
        window = self._window_inputs(prior, self.top_level, request, lyric_tokens, None)
        layer, head = alignment_layer(prior.config, prior.transformer.blocks)
        n_chars = len(lyric_tokens)
        per_token = self.hop_lengths[self.top_level] / self.sample_rate
        alignments, matrices = [], []
        for index in range(request.n_samples):
            rows = slice(index, index + 1)
            matrix = align_level(
                prior, codes[rows].to(self.device), lambda start, rows=rows: window(start, rows),
                HOP_FRACTION_TOP, layer, head, n_chars,
            )[0].numpy()
            matrices.append(matrix)
            alignments.append(build_alignment(request.lyrics, self.tokenizer, matrix, per_token))
        meta = {"level": self.top_level, "layer": layer, "head": head}
        record["alignment"] = {**meta, "samples": [a.to_dict() for a in alignments]}
        aligned = SongAlignment(alignments, matrices, per_token, meta)
        if out is not None:
            aligned.save(out)
        return aligned

    def _prior(self, level: int) -> LevelPrior:
        prior = load_prior_level(self.bundle, level, self.device)
        return prior if self.dtype is None else prior.to(self.dtype)

    def _window_inputs(
        self, prior: LevelPrior, level: int, request: SampleRequest, lyric_tokens: list[int],
        upper: Tensor | None,
    ) -> Callable[[int, slice], tuple[Any, Tensor | None, int]]:
        """window(start, rows) of one level -> (conditioning, lyric ids of the window or None,
        song index of the lyric window's first character): labels and timing for the window's
        offset, its lyric window, and for upsamplers the matching upper codes."""
        config, hop = prior.config, self.hop_lengths[level]
        length, total = config.n_ctx * hop, request.total_samples
        artist_id, genre_ids = 0, [0]
        if self.vocabulary is not None:
            artist_id = self.vocabulary.artist_id(request.artist)
            genre_ids = self.vocabulary.genre_ids(request.genres) or [0]

        def window(start: int, rows: slice):
            count = rows.stop - rows.start
            y, lyric_start = None, 0
            if config.labels:
                y = label_vector(total, start * hop, length, artist_id, genre_ids)
                y = y[None].expand(count, -1).to(self.device)
            lyrics = None
            if config.lyrics != "none":
                chars = lyric_window(lyric_tokens, total, start * hop, length, config.n_tokens)
                lyrics = torch.tensor([chars.tokens] * count, device=self.device)
                lyric_start = chars.start
            upper_window = None
            if config.upsampler:
                ratio = prior.upsample_ratio
                piece = upper[rows, start // ratio : (start + config.n_ctx) // ratio]
                missing = config.n_ctx // ratio - piece.shape[1]  # a song shorter than a window
                upper_window = torch.nn.functional.pad(piece, (0, missing)).to(self.device)
            return prior.condition(y, upper_window, lyrics), lyrics, lyric_start

        return window


def _condition_for(window: Callable, lyrics_mode: str, start: int, rows: slice):
    """What `sample_level` needs of a window: its conditioning, and the lyric ids only where
    they prefix the sequence (single-stack lyric priors)."""
    cond, lyrics, _ = window(start, rows)
    return cond, lyrics if lyrics_mode == "single" else None


def load(
    path: str | Path | None = None, device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None, compile: bool = False,
) -> Jukebox:
    """A bundle ready for sampling: `path`, or the shipped demo model when no path is given."""
    if path is None:
        path = demo_bundle_path()
    return Jukebox(path, device, dtype, compile)
