"""Audio through a bundle's VQ-VAE levels and back: tensors for the sampling run and the API,
files for `jukelite encode`, `decode` and `reconstruct`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from jukelite.audio import load_audio, save_audio
from jukelite.bundle import Bundle, BundleError, load_vqvae_level, read_manifest, vqvae_levels
from jukelite.inference.codes import CodesError, load_codes, save_codes
from jukelite.vqvae.chunked import decode_codes, encode_audio
from jukelite.vqvae.losses import reconstruction_report
from jukelite.vqvae.model import LevelVQVAE


def encode_levels(
    bundle: Bundle, audio: torch.Tensor, levels: list[int], device: torch.device
) -> dict[int, torch.Tensor]:
    """Audio [N, C, S] at the bundle's rate -> codes [N, ceil(S / hop)] of each level."""
    return {level: encode_audio(bundle.vqvae(level, device), audio) for level in levels}


def decode_level(
    bundle: Bundle, codes: torch.Tensor, level: int, device: torch.device
) -> torch.Tensor:
    """Codes [N, t] of one level -> audio [N, C, t * hop] in [-1, 1], by that level's decoder."""
    return decode_codes(bundle.vqvae(level, device), codes.long()).clamp(-1, 1)


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


def _decode_level(codes_path: str | Path, codes: dict[int, torch.Tensor], level: int | None
                  ) -> int:
    """The level to decode: `level`, or the finest in the file; refused when absent."""
    if not codes:
        raise CodesError(f"{codes_path} holds no codes")
    level = min(codes) if level is None else level
    if level not in codes:
        raise CodesError(f"{codes_path} has no codes for level {level} (levels: {sorted(codes)})")
    return level


def decoded_bytes(codes_path: str | Path, bundle: str | Path, level: int | None = None) -> int:
    """About how many bytes `decode_file` will write (16-bit WAV), from the codes' shape and
    the bundle's manifest alone, so free space can be checked before decoding."""
    codes, info = load_codes(codes_path)
    level = _decode_level(codes_path, codes, level)
    manifest = read_manifest(bundle)
    hop = (manifest.get("hop_lengths") or {}).get(str(level))
    if hop is None:
        raise BundleError(f"{bundle} has no VQ-VAE level {level} "
                          f"(levels present: {vqvae_levels(bundle)})")
    n, tokens = codes[level].shape
    samples = min(tokens * int(hop), int(info.get("audio_samples") or tokens * int(hop)))
    return n * (samples * int(manifest["channels"]) * 2 + 1024)


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
    level = _decode_level(codes_path, codes, level)
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


def reconstruction_outputs(output: str | Path, levels: list[int]) -> dict[int, Path]:
    """Where `reconstruct_file` writes each level: `output` for one level, else
    `<stem>.level<L><suffix>`."""
    path = Path(output)
    if len(levels) == 1:
        return {levels[0]: path}
    return {level: path.with_name(f"{path.stem}.level{level}{path.suffix or '.wav'}")
            for level in levels}


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
    A silent reference (all zero, or below -100 dBFS) has no spectral convergence or SI-SDR:
    those are None, with a line under "notes" saying why.
    """
    audio = load_bundle_audio(audio_path, bundle)
    chosen = _levels_of(bundle, levels)
    outputs = reconstruction_outputs(output, chosen) if output is not None else {}
    results: dict[int, dict[str, Any]] = {}
    for level in chosen:
        model = load_vqvae_level(bundle, level, device)
        codes = encode_audio(model, audio, progress=progress)
        recon = decode_codes(model, codes, progress=progress)[..., : audio.shape[-1]]
        metrics: dict[str, Any] = reconstruction_report(audio, recon, model.config.sample_rate)
        counts = torch.bincount(codes.flatten(), minlength=model.config.codebook_size)
        metrics["codes_used"] = int((counts > 0).sum())
        metrics["hop_length"] = model.hop_length
        if level in outputs:
            path = outputs[level]
            save_audio(path, recon[0], model.config.sample_rate)
            metrics["output"] = str(path)
        results[level] = metrics
    return results
