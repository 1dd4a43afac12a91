"""Encode and decode audio of any length with one VQ-VAE level, chunk by chunk.

Long files are processed in chunks with overlapping context on both sides, so memory stays
bounded (a four-minute song at level 0 would otherwise need several GB of activations) while
the codes away from the song's ends match a whole-file pass.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from tqdm.auto import tqdm

from jukelite.vqvae.model import LevelVQVAE

DEFAULT_CHUNK_SECONDS = 20.0
DEFAULT_CONTEXT_SECONDS = 1.0


def _chunked(
    tokens: int,
    chunk: int,
    context: int,
    run: Callable[[int, int], torch.Tensor],
    scale: int,
    desc: str,
    progress: bool,
) -> torch.Tensor:
    """Run `run(lo, hi)` over token chunks of `chunk` with `context` extra tokens on each side,
    trim each output (which has `scale` values per token on its last axis) to its own chunk
    and join them."""
    chunk, outputs = max(1, chunk), []
    starts = range(0, tokens, chunk)
    for start in tqdm(starts, desc=desc, disable=not progress or len(starts) < 2, leave=False):
        stop = min(tokens, start + chunk)
        lo, hi = max(0, start - context), min(tokens, stop + context)
        outputs.append(run(lo, hi)[..., (start - lo) * scale : (stop - lo) * scale].cpu())
    return torch.cat(outputs, dim=-1)


def _in_tokens(model: LevelVQVAE, *seconds: float) -> list[int]:
    """Durations in whole codes of the model's level."""
    return [int(s * model.config.sample_rate) // model.hop_length for s in seconds]


@torch.no_grad()
def encode_audio(
    model: LevelVQVAE,
    audio: torch.Tensor,
    chunk_seconds: float = DEFAULT_CHUNK_SECONDS,
    context_seconds: float = DEFAULT_CONTEXT_SECONDS,
    progress: bool = False,
) -> torch.Tensor:
    """Audio [N, C, T] -> codes [N, ceil(T / hop)], chunk by chunk."""
    hop, device = model.hop_length, next(model.parameters()).device
    padded = torch.nn.functional.pad(audio, (0, -audio.shape[-1] % hop))
    return _chunked(
        padded.shape[-1] // hop,
        *_in_tokens(model, chunk_seconds, context_seconds),
        lambda lo, hi: model.encode(padded[..., lo * hop : hi * hop].to(device)),
        1,
        f"encode level {model.level}",
        progress,
    )


@torch.no_grad()
def decode_codes(
    model: LevelVQVAE,
    codes: torch.Tensor,
    chunk_seconds: float = DEFAULT_CHUNK_SECONDS,
    context_seconds: float = DEFAULT_CONTEXT_SECONDS,
    progress: bool = False,
) -> torch.Tensor:
    """Codes [N, t] -> audio [N, C, t * hop], chunk by chunk."""
    device = next(model.parameters()).device
    return _chunked(
        codes.shape[-1],
        *_in_tokens(model, chunk_seconds, context_seconds),
        lambda lo, hi: model.decode(codes[..., lo:hi].to(device)),
        model.hop_length,
        f"decode level {model.level}",
        progress,
    )
