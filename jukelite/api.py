"""The Python API: load a complete bundle and sample songs top-down.

    import jukelite
    jb = jukelite.load("models/tiny")
    song = jb.generate(artist="Mira Vale", genre="ambient", lyrics="...", seconds=8, seed=0)
    song.save("out/")

A thin facade over `jukelite.inference`: each entry point turns its arguments into a checked
`SampleRequest` (plus the codes that already exist) and hands it to the run loop.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from jukelite.audio import convert_channels, load_audio
from jukelite.bundle import Bundle, BundleError, demo_bundle_path
from jukelite.data.labels import LabelVocabulary
from jukelite.data.lyrics import LyricsTokenizer
from jukelite.inference.codec import decode_level, encode_levels
from jukelite.inference.options import SamplingOptions, check_cuda_graphs, check_device
from jukelite.inference.request import (
    LyricsWarning,
    SampleRequest,
    lowest_level,
    new_request,
    primed_samples,
    song_length,
)
from jukelite.inference.run import Progress, Sampler
from jukelite.inference.score import score_song, score_timing
from jukelite.inference.song import Song, clear_run, read_progress
from jukelite.inference.window import step_kind
from jukelite.prior.model import PriorConfig

__all__ = ["Jukebox", "LyricsWarning", "SamplingOptions", "Song", "load"]


class Jukebox:
    """A complete bundle ready to sample: every VQ-VAE level and every prior it claims.

    `dtype` (e.g. torch.bfloat16 on CUDA) is the precision the priors sample in; the logits
    are filtered and sampled in float32 whatever it is. `compile=True` runs each one-token
    step under torch.compile (a one-off compile per prior, then fewer, fused kernels).
    `cuda_graphs=True` (CUDA devices only) records the one-token step as a CUDA graph once per
    window and replays it for every token, one launch instead of hundreds of small kernels;
    with `compile=True` the compiled step is recorded. Both only change how fast the same
    maths runs, so they may differ between a run and its resume; float32 matmuls on CUDA use
    TF32 either way.

    `generate`, `continue_` and `upsample` take the sampling options as keywords (`seed`,
    `temperature`, `top_k`, `top_p`, `levels`, `max_batch_size`, and `alignment` for the first
    two; see `SamplingOptions`) or as one `options=SamplingOptions(...)`, keywords winning.
    With `output_dir` the codes and `song.json` are written after every window and each
    finished level's WAVs as soon as it is done; `resume(output_dir)` continues a stopped
    run. An `output_dir` that already holds a run is refused unless `overwrite=True`, which
    removes that run's files (and only those) once the new request has been checked.
    `progress(level, done, total)` is told after every sampled code (counted over all
    samples). Arguments of the wrong type or range raise ValueError naming the argument.
    """

    def __init__(
        self,
        bundle: str | Path,
        device: str | torch.device = "cpu",
        dtype: torch.dtype | None = None,
        compile: bool = False,
        cuda_graphs: bool = False,
    ):
        device = check_device(device)  # a missing GPU fails before the bundle is read
        check_cuda_graphs(cuda_graphs, device)
        self._bundle = Bundle.open(bundle)
        if not self._bundle.levels:
            raise BundleError(f"{bundle} has no VQ-VAE level yet: nothing to encode or sample")
        self._sampler = Sampler(self._bundle, device, dtype, step_kind(compile, cuda_graphs))

    # ------------------------------------------------------------------ what the model is
    @property
    def bundle(self) -> Path:
        return self._bundle.path

    @property
    def device(self) -> torch.device:
        return self._sampler.device

    @property
    def dtype(self) -> torch.dtype | None:
        return self._sampler.dtype

    @property
    def step(self) -> str:
        return self._sampler.step

    @property
    def sample_rate(self) -> int:
        return self._bundle.sample_rate

    @property
    def channels(self) -> int:
        return self._bundle.channels

    @property
    def levels(self) -> list[int]:
        return self._bundle.levels

    @property
    def top_level(self) -> int:
        return self._bundle.top_level

    @property
    def hop_lengths(self) -> dict[int, int]:
        return self._bundle.hop_lengths

    @property
    def prior_configs(self) -> dict[int, PriorConfig]:
        return self._bundle.prior_configs

    @property
    def default_temperature(self) -> dict[int, float]:
        return self._bundle.default_temperature

    @property
    def vocabulary(self) -> LabelVocabulary | None:
        return self._bundle.vocabulary

    @property
    def tokenizer(self) -> LyricsTokenizer | None:
        return self._bundle.tokenizer

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
        return encode_levels(self._bundle, self._audio(audio),
                             self.levels if levels is None else levels, self.device)

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
        return decode_level(self._bundle, codes, level, self.device)

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
    def _song_samples(self, total_seconds: float | None) -> int | None:
        if total_seconds is None:
            return None
        return song_length(self._bundle, total_seconds, "total_seconds")

    @staticmethod
    def _output(output_dir: str | Path | None, overwrite: bool) -> Path | None:
        """The run directory, emptied of an earlier run's files when `overwrite` (called once
        the request is checked, so a refused request never costs the old run)."""
        if output_dir is None:
            return None
        out = Path(output_dir)
        if (out / "song.json").exists():
            if not overwrite:
                raise ValueError(f"{out} already holds a run (song.json): continue it with "
                                 "resume() or pass overwrite=True to replace it")
            clear_run(out)
        return out

    def generate(
        self,
        artist: str = "unknown",
        genre: str | list[str] = "unknown",
        lyrics: str = "",
        seconds: float = 8.0,
        n_samples: int = 1,
        *,
        total_seconds: float | None = None,
        options: SamplingOptions | None = None,
        output_dir: str | Path | None = None,
        overwrite: bool = False,
        progress: Progress | None = None,
        **option_values: Any,
    ) -> Song:
        """Sample `n_samples` songs of `seconds` top-down and render the finest level sampled.
        `total_seconds` (default `seconds`): the length of the whole song whose first `seconds`
        are sampled; its timing and lyric windows condition the priors (Jukebox's
        total_sample_length_in_seconds, which must lie in a top prior's timing range)."""
        options = SamplingOptions.build(options, **option_values)
        request = new_request(self._bundle, "generate", artist, genre, lyrics,
                              song_length(self._bundle, seconds), n_samples, options,
                              self._song_samples(total_seconds))
        return self._sampler.run(request, {}, self._output(output_dir, overwrite), progress)

    def continue_(
        self,
        prompt: Tensor | str | Path,
        seconds: float,
        prime_seconds: float | None = None,
        artist: str = "unknown",
        genre: str | list[str] = "unknown",
        lyrics: str = "",
        n_samples: int = 1,
        *,
        total_seconds: float | None = None,
        options: SamplingOptions | None = None,
        output_dir: str | Path | None = None,
        overwrite: bool = False,
        progress: Progress | None = None,
        **option_values: Any,
    ) -> Song:
        """Continue a song: the first `prime_seconds` of `prompt` (default all of it) are
        encoded at every level and kept; the rest of the `seconds` is sampled after them
        (`total_seconds` as in `generate`)."""
        options = SamplingOptions.build(options, **option_values)
        total = song_length(self._bundle, seconds)
        request = new_request(self._bundle, "continue", artist, genre, lyrics, total,
                              n_samples, options, self._song_samples(total_seconds))
        audio = self._audio(prompt)
        source = str(prompt) if isinstance(prompt, str | Path) else "tensor"
        primed = primed_samples(self._bundle, audio.shape[-1], prime_seconds, total, source)
        if audio.shape[0] not in (1, n_samples):
            raise ValueError(f"the prompt holds {audio.shape[0]} clips; give 1 or n_samples")
        request.prime = {"source": source, "samples": primed}
        clip = audio[..., :primed].expand(n_samples, -1, -1)
        codes = {
            level: encoded[:, : primed // self.hop_lengths[level]]
            for level, encoded in self.encode(clip, request.sampled_levels(self._bundle)).items()
        }
        return self._sampler.run(request, codes, self._output(output_dir, overwrite), progress)

    def upsample(
        self,
        codes: dict[int, Tensor] | Tensor,
        artist: str = "unknown",
        genre: str | list[str] = "unknown",
        lyrics: str = "",
        *,
        total_seconds: float | None = None,
        options: SamplingOptions | None = None,
        output_dir: str | Path | None = None,
        overwrite: bool = False,
        progress: Progress | None = None,
        **option_values: Any,
    ) -> Song:
        """Sample the levels below given codes (a tensor = the top level's codes) again: the
        given levels are kept, every level under the lowest given one is sampled afresh
        (`total_seconds` as in `generate`)."""
        options = SamplingOptions.build(options, **option_values)
        if options.alignment:
            raise ValueError("upsample keeps the top level as given: there is nothing to align")
        if isinstance(codes, Tensor):
            codes = {self.top_level: codes}
        if not isinstance(codes, dict) or not all(isinstance(c, Tensor) for c in codes.values()):
            raise ValueError("codes must be a tensor [n_samples, tokens] or a dict "
                             f"{{level: tensor}}, got {type(codes).__name__}")
        codes = {int(level): c.long().cpu() for level, c in codes.items()}
        if self.top_level not in codes:
            raise ValueError(f"upsampling needs the top level's codes (level {self.top_level}); "
                             f"got levels {sorted(codes)}")
        top = codes[self.top_level]
        if top.ndim != 2 or top.shape[1] == 0:
            raise ValueError(f"level {self.top_level} codes must be [n_samples, tokens], got "
                             f"shape {tuple(top.shape)}")
        request = new_request(self._bundle, "upsample", artist, genre, lyrics,
                              top.shape[1] * self.hop_lengths[self.top_level], top.shape[0],
                              options, self._song_samples(total_seconds))
        kept = {level: c for level, c in codes.items() if level > request.lowest_level}
        for level, c in kept.items():
            expected = request.total_samples // self.hop_lengths[level]
            if c.shape != (request.n_samples, expected):
                raise ValueError(f"level {level} codes are {tuple(c.shape)}, expected "
                                 f"[{request.n_samples}, {expected}] to match the top level")
        return self._sampler.run(request, kept, self._output(output_dir, overwrite), progress)

    def score(
        self,
        codes: Tensor,
        level: int,
        artist: str = "unknown",
        genre: str | list[str] = "unknown",
        lyrics: str = "",
        total_length: int | None = None,
        offset: int = 0,
        upper_codes: Tensor | None = None,
        *,
        total_length_seconds: float | None = None,
        offset_seconds: float | None = None,
        max_batch_size: int | None = None,
    ) -> Tensor:
        """Log-probability of each of `codes` [n, tokens] under level `level`'s prior, given
        the song's labels, lyrics and timing (teacher forcing, in the windows sampling uses):
        float32 [n, tokens] on the CPU; bits per token = -mean / ln 2.

        `total_length` (the song's length) and `offset` (where the codes start in it) are in
        samples at the bundle's rate, as Jukebox's labels carry them, or in seconds through
        `total_length_seconds` / `offset_seconds` (see `inference.score.score_timing`); the
        song defaults to ending where the codes do. An upsampler needs `upper_codes`, the
        level above's codes of the same span [n, tokens / upsample ratio].
        """
        bundle = self._bundle
        if level not in self.levels:
            raise ValueError(f"level must be one of {self.levels}, got {level!r}")
        tokens = codes.shape[-1] if isinstance(codes, Tensor) else 0
        total, start = score_timing(bundle, level, tokens, total_length, offset,
                                    total_length_seconds, offset_seconds)
        return score_song(bundle, level, codes, artist, genre, lyrics, total, start, upper_codes,
                          max_batch_size, self.device, self.dtype)

    def resume(
        self, output_dir: str | Path, levels: str | int | None = None,
        progress: Progress | None = None,
    ) -> Song:
        """Continue a stopped run from its directory (same codes as an uninterrupted run);
        `levels` may go further down than the run first asked for (e.g. after a preview)."""
        record, codes = read_progress(output_dir)
        if record.get("bundle_sha256") != self._bundle.sha256:
            raise BundleError(
                f"{output_dir} was sampled with a different bundle ({record.get('bundle')}, "
                f"jukelite.json sha256 {str(record.get('bundle_sha256'))[:12]}...) than "
                f"{self.bundle}; resuming would mix two models"
            )
        request = SampleRequest.from_dict(record["request"])
        if levels is not None:
            request.lowest_level = lowest_level(self._bundle, levels)
        return self._sampler.run(request, codes, output_dir, progress, record)


def load(
    path: str | Path | None = None, device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None, compile: bool = False, cuda_graphs: bool = False,
) -> Jukebox:
    """A bundle ready for sampling: `path`, or the shipped demo model when no path is given.
    A `device` this machine lacks ("cuda" without a GPU, "foo") raises ValueError, as does
    `cuda_graphs=True` on a device that is not CUDA (see `Jukebox`)."""
    return Jukebox(demo_bundle_path() if path is None else path, device, dtype, compile,
                   cuda_graphs)
