"""The run loop: a request sampled top-down through every level, saved as it goes.

`generate`, `continue_`, `upsample` and `resume` all come here with a checked request and the
codes that already exist (none, a prompt's, kept upper levels, or a stopped run's). Each level
still short of its length is sampled window by window by its own prior (the only one on the
device), the codes and `song.json` are saved after every window, and each finished level is
rendered by its own decoder. Data walks one way: the only call back up is `progress`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from jukelite.bundle import Bundle, package_versions
from jukelite.inference.codec import decode_level
from jukelite.inference.level import LevelJob, sample_level
from jukelite.inference.options import check_cuda_graphs
from jukelite.inference.request import SampleRequest
from jukelite.inference.schedule import WindowSchedule, hop_fraction
from jukelite.inference.song import (
    SONG_FORMAT,
    Song,
    empty_codes,
    save_level_audio,
    save_progress,
)
from jukelite.inference.window import GRAPHED_STEPS, STEP_KINDS
from jukelite.prior.model import SongConditions

if TYPE_CHECKING:
    from jukelite.inference.alignment import SongAlignment

Progress = Callable[[int, int, int], None]  # (level, codes done, codes to do) at this level


@contextmanager
def tf32_matmuls(device: torch.device) -> Iterator[None]:
    """While sampling on CUDA, let float32 matmuls use TF32 tensor cores (several times faster
    on Ampere and later, ~1e-3 relative error, far below what sampling at a temperature
    notices); the switch is process-wide, so it is put back afterwards (scoring stays exact).
    The CPU's matmuls are left exactly as they are."""
    if device.type != "cuda":
        yield
        return
    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = True
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before


class Sampler:
    """Samples requests with one bundle on one device.

    `dtype` (e.g. torch.bfloat16 on CUDA) is the precision the priors run in; logits are
    filtered and sampled in float32 whatever it is. `step` is the one-token step
    (`window.STEP_KINDS`: cached, static, compiled, or either static step replayed as a CUDA
    graph). Float32 matmuls on CUDA run in TF32 while a request is sampled (`tf32_matmuls`).
    """

    def __init__(
        self, bundle: Bundle, device: torch.device, dtype: torch.dtype | None = None,
        step: str = "cached",
    ) -> None:
        if step not in STEP_KINDS:
            raise ValueError(f"step must be one of {STEP_KINDS}, got {step!r}")
        check_cuda_graphs(step in GRAPHED_STEPS, device, f"step {step!r}")
        self.bundle, self.device, self.dtype, self.step = bundle, device, dtype, step

    def new_record(self, request: SampleRequest) -> dict[str, Any]:
        """The `song.json` of a new run: the request, the bundle and the machine."""
        bundle = self.bundle
        return {
            "format": SONG_FORMAT,
            "status": "running",
            "request": request.to_dict(),
            "bundle": str(bundle.path),
            "bundle_sha256": bundle.sha256,
            "sample_rate": bundle.sample_rate,
            "hop_lengths": {str(level): bundle.hop_lengths[level] for level in bundle.levels},
            "seconds": request.total_samples / bundle.sample_rate,
            "device": str(self.device),
            "dtype": str(self.dtype or torch.float32),
            "step": self.step,
            "versions": package_versions(),
            "levels": {},
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }

    def run(
        self,
        request: SampleRequest,
        codes: dict[int, Tensor],
        output_dir: str | Path | None = None,
        progress: Progress | None = None,
        record: dict[str, Any] | None = None,
    ) -> Song:
        """Sample what `codes` still lacks of `request`, top-down, and render its lowest level.
        With `output_dir`, codes and record are saved after every window and each finished
        level's WAVs as soon as it is done; `record` continues a resumed run's."""
        with tf32_matmuls(self.device):
            return self._run(request, codes, output_dir, progress, record)

    def _run(
        self,
        request: SampleRequest,
        codes: dict[int, Tensor],
        output_dir: str | Path | None,
        progress: Progress | None,
        record: dict[str, Any] | None,
    ) -> Song:
        bundle, out = self.bundle, None if output_dir is None else Path(output_dir)
        record = record or self.new_record(request)
        record["request"], record["status"] = request.to_dict(), "running"
        codes, aligned = dict(codes), None

        def save() -> None:
            if out is not None:
                save_progress(out, codes, record, bundle.sample_rate)

        save()
        for level in reversed(request.sampled_levels(bundle)):
            song = request.song_conditions(bundle, level)  # each prior's own vocabularies
            tokens = request.total_samples // bundle.hop_lengths[level]
            stats = record["levels"].setdefault(str(level), {"seconds": 0.0, "sampled": 0})
            stats["tokens"] = tokens
            if codes.get(level, empty_codes(request.n_samples)).shape[1] < tokens:
                self._sample_level(level, request, song, codes, stats, save, progress)
            if request.alignment and level == bundle.top_level:
                aligned = self.align(request, song, codes[level])
                record["alignment"] = aligned.to_record()
                if out is not None:
                    aligned.save(out)
            if out is not None:
                save_level_audio(out, level, self.decode(codes[level], level), bundle.sample_rate)
                save()
        lowest = request.lowest_level
        audio = self.decode(codes[lowest], lowest)
        record["status"] = "complete"
        save()
        kept = {level: c for level, c in codes.items() if level >= lowest}
        return Song(audio, bundle.sample_rate, kept, record, aligned)

    def _sample_level(
        self,
        level: int,
        request: SampleRequest,
        song: SongConditions,
        codes: dict[int, Tensor],
        stats: dict[str, Any],
        save: Callable[[], None],
        progress: Progress | None,
    ) -> None:
        """Sample the rest of `codes[level]`, saving after every window; timings into `stats`."""
        have = codes.get(level, empty_codes(request.n_samples))
        job = self._job(level, request, song, codes.get(level + 1))
        tokens = job.schedule.total
        done, goal = have.shape[1] * request.n_samples, tokens * request.n_samples

        def tick(k: int) -> None:
            nonlocal done
            done += k
            if progress is not None:
                progress(level, done, goal)

        began = time.perf_counter()
        for so_far in sample_level(job, have.to(self.device), tick):
            codes[level] = so_far.cpu()
            save()
        stats["seconds"] += time.perf_counter() - began
        stats["sampled"] += (tokens - have.shape[1]) * request.n_samples
        stats["tokens_per_second"] = stats["sampled"] / max(stats["seconds"], 1e-9)

    def _job(
        self, level: int, request: SampleRequest, song: SongConditions, upper: Tensor | None
    ) -> LevelJob:
        bundle = self.bundle
        prior = bundle.prior(level, self.device, self.dtype)  # only this prior on the device
        tokens = request.total_samples // bundle.hop_lengths[level]
        schedule = WindowSchedule(tokens, prior.config.n_ctx,
                                  hop_fraction(level, bundle.top_level))
        return LevelJob(
            prior, song, bundle.hop_lengths[level], schedule, request.settings(level),
            request.seed, upper, request.max_batch_size, self.step,
            request.guidance_scale(level), request.decoding_steps(level),
        )

    def decode(self, codes: Tensor, level: int) -> Tensor:
        return decode_level(self.bundle, codes, level, self.device)

    def align(self, request: SampleRequest, song: SongConditions, codes: Tensor) -> SongAlignment:
        """Lyric timings of the top level's codes [N, t] (see `inference.alignment`)."""
        from jukelite.inference.alignment import align_song

        bundle, level = self.bundle, self.bundle.top_level
        prior = bundle.prior(level, self.device, self.dtype)
        return align_song(prior, song, codes.to(self.device), bundle.hop_lengths[level],
                          bundle.sample_rate, request.lyrics, bundle.lyrics_tokenizer(level))
