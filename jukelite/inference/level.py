"""One level of a song, sampled window by window.

Each window is primed with the codes already there (a prompt, the previous window's overlap or
a stopped run's codes), so earlier codes never change; its conditioning comes from the prior
itself (`LevelPrior.window_inputs`). `sample_level` yields the codes after every window, so the
run loop can save them and a stopped run resumes where it stopped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from jukelite.bundle import DEFAULT_STEPS
from jukelite.inference.options import SamplingSettings
from jukelite.inference.parallel import sample_window_parallel
from jukelite.inference.schedule import Window, WindowSchedule, batch_chunks, window_generator
from jukelite.inference.window import sample_window
from jukelite.prior.model import Conditioning, LevelPrior, SongConditions


@dataclass(frozen=True)
class LevelJob:
    """Everything that decides the codes of one level of one request."""

    prior: LevelPrior
    song: SongConditions
    hop_length: int  # audio samples per code at this level
    schedule: WindowSchedule
    settings: SamplingSettings
    seed: int
    upper: Tensor | None = None  # the level above's codes [N, t] (upsamplers)
    max_batch_size: int | None = None  # samples drawn at once (None: all)
    step: str = "cached"  # the one-token step (`window.step_function`)
    guidance: float = 1.0  # classifier-free guidance scale (1: plain conditional sampling)
    steps: int = DEFAULT_STEPS  # decoding steps per window of a parallel prior


@torch.no_grad()
def sample_level(
    job: LevelJob, codes: Tensor, on_tokens: Callable[[int], None] | None = None
) -> Iterator[Tensor]:
    """Sample the codes of `job`'s level after the `codes` [N, t] already there, yielding all
    codes [N, t'] after every window; `on_tokens(k)` is told after each step that k more codes
    exist (for progress bars). Samples are drawn `job.max_batch_size` at a time, each chunk
    from its own random stream, made on the prior's device."""
    prior, config = job.prior, job.prior.config
    offset = config.seq_len - config.n_ctx  # lyric positions before the music (single mode)
    shift = config.n_vocab if offset else 0  # music ids follow the lyric ids in that mode
    chunks = batch_chunks(codes.shape[0], job.max_batch_size)
    for window in job.schedule:
        if window.end <= codes.shape[1]:
            continue  # already sampled (a resumed run) or given (a prompt)
        pieces = []
        for chunk, rows in enumerate(chunks):
            count = rows.stop - rows.start
            upper = None if job.upper is None else job.upper[rows]
            inputs = prior.window_inputs(job.song, job.hop_length, window.start, count, upper)
            generator = window_generator(job.seed, config.level, window.index, chunk,
                                         prior.embedding.x_emb.weight.device)
            if config.parallel:
                pieces.append(_parallel_window(job, window, codes[rows], inputs.cond, upper,
                                               generator, on_tokens, count))
                continue
            known = codes[rows, window.start :] + shift
            prefix = torch.cat([inputs.prefix, known], dim=1)
            uncond = None
            if job.guidance != 1.0:
                null = prior.window_inputs(job.song, job.hop_length, window.start, count, upper,
                                           null=True)
                uncond = (null.cond, torch.cat([null.prefix, known], dim=1))
            tokens = sample_window(
                prior, inputs.cond, prefix, job.settings,
                generator,
                on_token=None if on_tokens is None else lambda _, k=count: on_tokens(k),
                length=offset + window.end - window.start, step=job.step,
                guidance=job.guidance, uncond=uncond,
            )
            pieces.append(tokens[:, offset + codes.shape[1] - window.start :] - shift)
        codes = torch.cat([codes, torch.cat(pieces).to(codes.device)], dim=1)
        yield codes


def _parallel_window(job: LevelJob, window: Window, codes: Tensor, cond: Conditioning,
                     upper: Tensor | None, generator: torch.Generator,
                     on_tokens: Callable[[int], None] | None, count: int) -> Tensor:
    """The new codes of one window of a parallel prior, after the `codes` [n, t] already there."""
    uncond = None
    if job.guidance != 1.0:
        uncond = job.prior.window_inputs(job.song, job.hop_length, window.start, count, upper,
                                         null=True).cond
    known = codes[:, window.start :]
    tokens = sample_window_parallel(
        job.prior, cond, known, job.steps, job.settings, generator,
        length=window.end - window.start, guidance=job.guidance, uncond=uncond,
        on_step=None if on_tokens is None else lambda revealed: on_tokens(revealed * count))
    return tokens[:, known.shape[1] :]
