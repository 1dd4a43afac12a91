"""Likelihood of given codes under one level's prior: teacher forcing, window by window.

A level is scored in the windows sampling would walk it in (`schedule.WindowSchedule`, laid from
the first given code): every code is scored once, by the first window in which it is new rather
than prefix, given the codes before it in that window, i.e. the context sampling would have
given it. Each window is one full (non-cached) forward pass, the pass Jukebox's teacher-forced
loss uses; log-probabilities are the log-softmax over the prior's whole output vocabulary (in
`single` lyrics mode that includes the lyric ids, as in training), computed in float32.

    score_timing      total length and offset from samples or seconds, with their defaults
    score_codes       a prior + codes -> per-code log-probabilities [n, tokens]
    score_song        the same from a bundle, every input checked first
"""

from __future__ import annotations

import math
import operator
import warnings

import torch
import torch.nn.functional as F
from torch import Tensor

from jukelite.bundle import Bundle, BundleError
from jukelite.inference.request import LyricsWarning, song_conditions
from jukelite.inference.schedule import WindowSchedule, batch_chunks, hop_fraction
from jukelite.prior.model import LevelPrior, PriorConfig, SongConditions


def _upsample_ratio(config: PriorConfig) -> int:
    """Codes of a level per code of the level above, as the prior's conditioner stretches them
    (1 for a prior that reads no upper codes)."""
    return config.cond_stride**config.cond_down_t if config.upsampler else 1


def _samples(value: object, name: str) -> int:
    """An integer count of audio samples (a float would hide a unit mix-up)."""
    try:
        return operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be an integer number of audio samples, got {value!r} "
                         f"(give seconds as {name}_seconds)") from None


def score_timing(
    bundle: Bundle,
    level: int,
    tokens: int,
    total_length: int | None = None,
    offset: int = 0,
    total_length_seconds: float | None = None,
    offset_seconds: float | None = None,
) -> tuple[int, int]:
    """(total_length, offset) in samples at the bundle's rate, from samples or seconds.

    Giving both forms of one is an error (an `offset` of 0 counts as not given). Seconds of
    offset are rounded to whole codes of `level` (for an upsampler, to whole codes of the level
    above, which its upper codes start on); seconds of total length to whole samples. The total
    length defaults to the offset plus the duration of `tokens` codes.
    """
    if level not in bundle.prior_configs:
        raise ValueError(f"level must be one of the bundle's prior levels "
                         f"{sorted(bundle.prior_configs)}, got {level!r}")
    rate, hop = bundle.sample_rate, bundle.hop_lengths[level]
    if total_length is not None and total_length_seconds is not None:
        raise ValueError("give the song length as total_length (samples) or "
                         "total_length_seconds, not both")
    offset = _samples(offset, "offset")
    if offset_seconds is not None:
        if offset:
            raise ValueError("give the offset as offset (samples) or offset_seconds, not both")
        if not (offset_seconds >= 0 and math.isfinite(offset_seconds)):
            raise ValueError(f"offset_seconds must be a finite number >= 0, got "
                             f"{offset_seconds}")
        unit = hop * _upsample_ratio(bundle.prior_configs[level])
        offset = round(offset_seconds * rate / unit) * unit
    if total_length_seconds is not None:
        if not (total_length_seconds > 0 and math.isfinite(total_length_seconds)):
            raise ValueError(f"total_length_seconds must be a finite number > 0, got "
                             f"{total_length_seconds}")
        total_length = round(total_length_seconds * rate)
    total = offset + tokens * hop if total_length is None else _samples(total_length,
                                                                      "total_length")
    return total, offset


def _check_codes(codes: Tensor, bins: int, name: str) -> None:
    if not isinstance(codes, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor [n, tokens], got {type(codes).__name__}")
    if codes.dtype.is_floating_point or codes.dtype.is_complex or codes.dtype == torch.bool:
        raise ValueError(f"{name} must be integer codes, got dtype {codes.dtype}")
    if codes.ndim != 2 or 0 in codes.shape:
        raise ValueError(f"{name} must be [n, tokens] with n, tokens >= 1, got "
                         f"{tuple(codes.shape)}")
    low, high = int(codes.min()), int(codes.max())
    if low < 0 or high >= bins:
        raise ValueError(f"{name} must lie in [0, {bins}) (the prior's codebook), got values "
                         f"in [{low}, {high}]")


def _check_inputs(
    config: PriorConfig, codes: Tensor, hop_length: int, offset: int, upper: Tensor | None
) -> None:
    """Everything about the tensors that would otherwise fail deep inside, or silently."""
    _check_codes(codes, config.bins, "codes")
    if offset < 0 or offset % hop_length:
        raise ValueError(f"offset must be a multiple >= 0 of level {config.level}'s hop length "
                         f"{hop_length} samples, got {offset}")
    if not config.upsampler:
        if upper is not None:
            raise ValueError(f"prior level {config.level} is not an upsampler: it takes no "
                             "upper codes (pass upper_codes=None)")
        return
    ratio, tokens = _upsample_ratio(config), codes.shape[1]
    if upper is None:
        raise ValueError(f"prior level {config.level} is an upsampler: pass upper_codes, the "
                         f"level {config.level + 1} codes [n, tokens / {ratio}] of the same span")
    if tokens % ratio:
        raise ValueError(f"an upsampler scores whole codes of the level above: tokens must be a "
                         f"multiple of {ratio}, got {tokens}")
    if offset % (hop_length * ratio):
        raise ValueError(f"offset must fall on a code of level {config.level + 1} (a multiple of "
                         f"{hop_length * ratio} samples) for the upper codes to line up, got "
                         f"{offset}")
    _check_codes(upper, config.bins, "upper_codes")
    if upper.shape != (codes.shape[0], tokens // ratio):
        raise ValueError(f"upper_codes must be [{codes.shape[0]}, {tokens // ratio}] (the level "
                         f"{config.level + 1} codes of the same span: {tokens} / {ratio}), got "
                         f"{tuple(upper.shape)}")


@torch.no_grad()
def score_codes(
    prior: LevelPrior,
    song: SongConditions,
    codes: Tensor,
    hop_length: int,
    fraction: float,
    offset: int = 0,
    upper: Tensor | None = None,
    max_batch_size: int | None = None,
) -> Tensor:
    """Log-probability of each code of `codes` [n, tokens] under `prior`: float32 [n, tokens]
    on the CPU.

    `song` is what the song is conditioned on, `hop_length` the level's audio samples per code,
    `fraction` the window hop as a fraction of n_ctx (`schedule.hop_fraction`), `offset` where
    the codes start in the song (audio samples, a multiple of `hop_length`), `upper` the level
    above's codes of the same span (upsamplers). Samples run `max_batch_size` at a time.
    """
    config = prior.config
    _check_inputs(config, codes, hop_length, offset, upper)
    n, total = codes.shape
    first = offset // hop_length  # the song's index of the first given code
    lyric = config.seq_len - config.n_ctx  # lyric prefix positions (single mode)
    if upper is not None:  # window_inputs slices upper codes by song index
        upper = F.pad(upper.long(), (first // prior.upsample_ratio, 0))
    device = prior.embedding.x_emb.weight.device
    scores = torch.empty(n, total, dtype=torch.float32)
    chunks = batch_chunks(n, max_batch_size)
    done = 0  # codes scored by earlier windows
    for window in WindowSchedule(total, config.n_ctx, fraction):
        new = slice(lyric + done - window.start, lyric + window.end - window.start)
        for rows in chunks:
            piece = codes[rows, window.start : window.end].long().to(device)
            piece = F.pad(piece, (0, config.n_ctx - piece.shape[1]))  # causal: padding unseen
            inputs = prior.window_inputs(song, hop_length, first + window.start,
                                         piece.shape[0], None if upper is None else upper[rows])
            tokens = prior.sequence(piece, inputs.lyrics)
            logits = prior.logits(tokens, inputs.cond)[:, new].float()
            picked = logits.log_softmax(-1).gather(-1, tokens[:, new, None])[..., 0]
            scores[rows, done : window.end] = picked.cpu()
        done = window.end
    return scores


def score_song(
    bundle: Bundle,
    level: int,
    codes: Tensor,
    artist: str = "unknown",
    genre: str | list[str] = "unknown",
    lyrics: str = "",
    total_samples: int | None = None,
    offset: int = 0,
    upper: Tensor | None = None,
    max_batch_size: int | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
) -> Tensor:
    """Log-probabilities [n, tokens] (float32, CPU) of one level's `codes` under its prior in
    `bundle`, every input checked before the prior is loaded (see `score_codes`; timing in
    samples, see `score_timing` for seconds). Only this level's prior is put on `device`,
    in `dtype` (default float32)."""
    if level not in bundle.levels:
        raise ValueError(f"level must be one of the bundle's levels {bundle.levels}, "
                         f"got {level!r}")
    config = bundle.prior_configs.get(level)
    if config is None:
        raise BundleError(f"{bundle.path} has no prior for level {level} (priors: "
                          f"{sorted(bundle.prior_configs)}): nothing to score with")
    if config.parallel:
        raise ValueError(f"the level {level} prior decodes in parallel (masked codes): it has no "
                         "per-code log-probabilities in order; score an autoregressive level")
    hop = bundle.hop_lengths[level]
    _check_inputs(config, codes, hop, offset, upper)  # before the prior is loaded
    tokens = codes.shape[1]
    last = offset + (tokens - 1) * hop  # where the last code starts
    total = offset + tokens * hop if total_samples is None else total_samples
    if total <= last:
        raise ValueError(f"total_length must reach past the start of the last code: {tokens} "
                         f"codes of {hop} samples from offset {offset} need total_length > "
                         f"{last} samples, got {total}")
    if config.timing:
        config.timing_range.check_total(total)
    genres = [genre] if isinstance(genre, str) else list(genre)
    if not genres:
        raise ValueError("genre: give at least one genre (or 'unknown')")
    if lyrics and config.lyrics == "none":
        warnings.warn(f"prior level {level} is not conditioned on lyrics: they do not change "
                      "its scores", LyricsWarning, stacklevel=3)
    elif lyrics and bundle.lyrics_tokenizer(level) is not None:
        message = bundle.lyrics_tokenizer(level).normalize(lyrics).warning()
        if message:
            warnings.warn(f"lyrics: {message}", LyricsWarning, stacklevel=3)
    song = song_conditions(bundle, level, artist, genres, lyrics, total)
    prior = bundle.prior(level, device, dtype)
    return score_codes(prior, song, codes, hop, hop_fraction(level, bundle.top_level), offset,
                       upper, max_batch_size)
