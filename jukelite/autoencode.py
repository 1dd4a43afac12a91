"""Push audio through a bundle's VQ-VAE levels: encode, decode and reconstruct files.

Long files are processed in chunks with overlapping context on both sides, so memory stays
bounded (a four-minute song at level 0 would otherwise need several GB of activations) while
the codes away from the song's ends match a whole-file pass.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from jukelite.audio import load_audio, save_audio
from jukelite.bundle import BundleError, load_vqvae_level, read_manifest, vqvae_levels
from jukelite.codes import CodesError, load_codes, save_codes
from jukelite.vqvae.losses import reconstruction_metrics
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


@torch.no_grad()
def encode_audio(
    model: LevelVQVAE,
    audio: torch.Tensor,
    chunk_seconds: float = DEFAULT_CHUNK_SECONDS,
    context_seconds: float = DEFAULT_CONTEXT_SECONDS,
    progress: bool = False,
) -> torch.Tensor:
    """Audio [N, C, T] -> codes [N, ceil(T / hop)], chunk by chunk."""
    hop, rate = model.hop_length, model.config.sample_rate
    device = next(model.parameters()).device
    padded = torch.nn.functional.pad(audio, (0, -audio.shape[-1] % hop))
    return _chunked(
        padded.shape[-1] // hop,
        int(chunk_seconds * rate) // hop,
        int(context_seconds * rate) // hop,
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
    hop, rate = model.hop_length, model.config.sample_rate
    device = next(model.parameters()).device
    return _chunked(
        codes.shape[-1],
        int(chunk_seconds * rate) // hop,
        int(context_seconds * rate) // hop,
        lambda lo, hi: model.decode(codes[..., lo:hi].to(device)),
        hop,
        f"decode level {model.level}",
        progress,
    )


def _levels_of(bundle: str | Path, levels: list[int] | None) -> list[int]:
    present = vqvae_levels(bundle)
    if not present:
        raise BundleError(f"{bundle} holds no VQ-VAE level yet")
    if levels is None:
        return present
    missing = [level for level in levels if level not in present]
    if missing:
        raise BundleError(f"{bundle} has no VQ-VAE level {missing} (levels present: {present})")
    return levels


def load_bundle_audio(path: str | Path, bundle: str | Path) -> torch.Tensor:
    """Read an audio file at the bundle's sample rate and channel count -> [1, C, T]."""
    manifest = read_manifest(bundle)
    return load_audio(path, sample_rate=manifest["sample_rate"], channels=manifest["channels"])[
        None
    ]


def encode_file(
    audio_path: str | Path,
    bundle: str | Path,
    output: str | Path,
    levels: list[int] | None = None,
    device: str = "cpu",
    progress: bool = True,
) -> Path:
    """`jukelite encode`: write the codes of `audio_path` at the chosen levels (default all)."""
    audio = load_bundle_audio(audio_path, bundle)
    codes = {}
    for level in _levels_of(bundle, levels):
        model = load_vqvae_level(bundle, level, device)
        codes[level] = encode_audio(model, audio, progress=progress)
    manifest = read_manifest(bundle)
    info = {
        "sample_rate": manifest["sample_rate"],
        "channels": manifest["channels"],
        "hop_lengths": {str(level): manifest["hop_lengths"][str(level)] for level in codes},
        "audio_samples": audio.shape[-1],
        "source": str(audio_path),
    }
    return save_codes(output, codes, info)


def _check_codes_fit(
    codes_path: str | Path,
    info: dict[str, Any],
    level: int,
    codes: torch.Tensor,
    model: LevelVQVAE,
) -> None:
    """Refuse codes made by a different model: they would decode to noise without any error."""
    made_with = {
        "sample_rate": info.get("sample_rate"),
        "hop_length": (info.get("hop_lengths") or {}).get(str(level)),
    }
    expected = {"sample_rate": model.config.sample_rate, "hop_length": model.hop_length}
    for key, value in made_with.items():
        if value is not None and value != expected[key]:
            raise CodesError(
                f"{codes_path}: level {level} codes were made with {key} {value}, "
                f"but this bundle's level {level} has {key} {expected[key]}"
            )
    size = model.config.codebook_size
    if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= size):
        raise CodesError(
            f"{codes_path}: level {level} codes lie in [{int(codes.min())}, "
            f"{int(codes.max())}], outside this bundle's codebook [0, {size - 1}]"
        )


def decode_file(
    codes_path: str | Path,
    bundle: str | Path,
    output: str | Path,
    level: int | None = None,
    device: str = "cpu",
    progress: bool = True,
) -> Path:
    """`jukelite decode`: render one level's codes (default: the finest in the file) to audio."""
    codes, info = load_codes(codes_path)
    if not codes:
        raise CodesError(f"{codes_path} holds no codes")
    level = min(codes) if level is None else level
    if level not in codes:
        raise CodesError(f"{codes_path} has no codes for level {level} (levels: {sorted(codes)})")
    model = load_vqvae_level(bundle, level, device)
    _check_codes_fit(codes_path, info, level, codes[level], model)
    audio = decode_codes(model, codes[level], progress=progress)
    if "audio_samples" in info:
        audio = audio[..., : info["audio_samples"]]
    output = Path(output)
    if audio.shape[0] == 1:
        save_audio(output, audio[0], model.config.sample_rate)
        return output
    for index in range(audio.shape[0]):
        save_audio(
            output.with_name(f"{output.stem}_{index}{output.suffix}"),
            audio[index],
            model.config.sample_rate,
        )
    return output


def reconstruct_file(
    audio_path: str | Path,
    bundle: str | Path,
    output: str | Path | None = None,
    levels: list[int] | None = None,
    device: str = "cpu",
    progress: bool = True,
) -> dict[int, dict[str, Any]]:
    """`jukelite reconstruct`: encode and decode through each level; returns metrics per level.

    With one level the audio goes to `output`; with several, to `<stem>.level<L><suffix>`.
    """
    audio = load_bundle_audio(audio_path, bundle)
    chosen = _levels_of(bundle, levels)
    results: dict[int, dict[str, Any]] = {}
    for level in chosen:
        model = load_vqvae_level(bundle, level, device)
        codes = encode_audio(model, audio, progress=progress)
        recon = decode_codes(model, codes, progress=progress)[..., : audio.shape[-1]]
        metrics: dict[str, Any] = reconstruction_metrics(audio, recon, model.config.sample_rate)
        counts = torch.bincount(codes.flatten(), minlength=model.config.codebook_size)
        metrics["codes_used"] = int((counts > 0).sum())
        metrics["hop_length"] = model.hop_length
        if output is not None:
            path = Path(output)
            if len(chosen) > 1:
                path = path.with_name(f"{path.stem}.level{level}{path.suffix or '.wav'}")
            save_audio(path, recon[0], model.config.sample_rate)
            metrics["output"] = str(path)
        results[level] = metrics
    return results
