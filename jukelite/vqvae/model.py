"""The VQ-VAE: one independent autoencoder per level, and the set of them (reference §2.3).

Level L reads raw audio, downsamples it by hop_length(L) into `code_dim`-wide latents, snaps them
to its own codebook and decodes raw audio from those codes alone. Levels share no weights, so each
can be trained on its own (`LevelVQVAE`) or all jointly in one run (`VQVAE`, loss = sum of levels).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from jukelite.vqvae.blocks import Decoder, Encoder
from jukelite.vqvae.config import VQVAEConfig
from jukelite.vqvae.losses import (
    linf_topk,
    metric_stft,
    multiresolution_stft_distance,
    spectral_convergence_db,
)
from jukelite.vqvae.quantizer import VectorQuantizer


class LevelVQVAE(nn.Module):
    """Audio [N, C, T] -> codes [N, T / hop] -> audio, for one level of the hierarchy."""

    def __init__(self, config: VQVAEConfig, level: int) -> None:
        super().__init__()
        config.validate()
        if not 0 <= level < config.levels:
            raise ValueError(f"level must be in [0, {config.levels - 1}], got {level}")
        self.config = config
        self.level = level
        stages = dict(
            code_dim=config.code_dim,
            downs_t=config.downs_t[: level + 1],
            strides_t=config.strides_t[: level + 1],
            width=config.width[level],
            depth=config.depth[level],
            m_conv=config.m_conv,
            growth=config.dilation_growth_rate,
            cycle=config.dilation_cycle,
        )
        self.encoder = Encoder(config.channels, **stages)
        self.quantizer = VectorQuantizer(
            config.codebook_size,
            config.code_dim,
            config.ema_decay,
            config.restart_threshold,
            lookup=config.quantizer_lookup,
            lookup_dim=config.lookup_dim,
            restart=config.restart,
            restart_horizon=config.restart_horizon,
            restart_max_fraction=config.restart_max_fraction,
        )
        self.decoder = Decoder(
            config.channels, **stages, reverse_dilation=config.reverse_decoder_dilation
        )
        # Loss normalisers (data statistics, DataStatistics in losses.py); saved with the weights.
        self.register_buffer("norm_l2", torch.tensor(1.0))
        self.register_buffer("norm_spec", torch.tensor(1.0))

    @property
    def hop_length(self) -> int:
        return self.config.hop_length(self.level)

    def set_data_statistics(self, l2: float, spec: float) -> None:
        """Set the loss normalisers: l2 = Var(training audio), spec = mean ||STFT magnitude||_F."""
        if not (l2 > 0 and spec > 0):
            raise ValueError(f"data statistics must be positive, got l2={l2}, spec={spec}")
        self.norm_l2.fill_(l2)
        self.norm_spec.fill_(spec)

    def _check_audio(self, audio: torch.Tensor) -> None:
        if audio.ndim != 3:
            raise ValueError(
                f"expected audio [batch, channels, samples], got shape {tuple(audio.shape)}"
            )
        if audio.shape[1] != self.config.channels:
            raise ValueError(
                f"this VQ-VAE takes {self.config.channels} channel(s), got {audio.shape[1]} "
                f"(audio shape {tuple(audio.shape)})"
            )
        if audio.shape[2] == 0:
            raise ValueError("audio has no samples")

    @torch.no_grad()
    def encode(self, audio: torch.Tensor) -> torch.Tensor:
        """Audio [N, C, T] -> codes [N, ceil(T / hop)]; the end is zero-padded to a whole code."""
        self._check_audio(audio)
        pad = -audio.shape[2] % self.hop_length
        return self.quantizer.encode(self.encoder(F.pad(audio, (0, pad))))

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes [N, t] -> audio [N, C, t * hop] (unbounded; clamp to [-1, 1] when writing)."""
        if codes.ndim != 2 or codes.dtype not in (torch.int64, torch.int32):
            raise ValueError(
                f"expected integer codes [batch, tokens], got {codes.dtype} {tuple(codes.shape)}"
            )
        k = self.config.codebook_size
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= k):
            raise ValueError(f"codes must be in [0, {k - 1}], got [{codes.min()}, {codes.max()}]")
        return self.decoder(self.quantizer.decode(codes.long()))

    def forward(
        self, audio: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """Reconstruct audio [N, C, T] (T a multiple of hop) -> (recon, loss, detached metrics)."""
        self._check_audio(audio)
        if audio.shape[2] % self.hop_length:
            raise ValueError(
                f"level {self.level} needs a length that is a multiple of its hop "
                f"{self.hop_length}, got {audio.shape[2]} samples"
            )
        cfg = self.config
        latents = self.encoder(audio)
        quantized, _codes, commit, vq_metrics = self.quantizer(latents)
        recon = self.decoder(quantized)

        target, estimate = audio.float(), recon.float()
        l2 = F.mse_loss(estimate, target)
        linf = linf_topk(estimate, target, cfg.linf_k)
        multispec = multiresolution_stft_distance(target, estimate, cfg.stft_resolutions()).mean()
        loss = (
            cfg.l2_weight * l2 / self.norm_l2
            + cfg.linf_weight * linf / self.norm_l2
            + cfg.multispectral_weight * multispec / self.norm_spec
            + cfg.commit * commit
        )

        with torch.no_grad():
            sc_db = spectral_convergence_db(target, estimate, *metric_stft(cfg.sample_rate))
            metrics = {
                "loss": loss.detach(),
                "l2": l2.detach(),
                "linf": linf.detach(),
                "multispectral": multispec.detach(),
                "commit": commit.detach(),
                "spectral_convergence_db": sc_db.mean(),
                **vq_metrics,
            }
        return recon, loss, metrics


class VQVAE(nn.Module):
    """Several levels of LevelVQVAE trained side by side; the loss is the sum of their losses."""

    def __init__(self, config: VQVAEConfig, levels: list[int] | None = None) -> None:
        super().__init__()
        self.config = config
        chosen = list(range(config.levels)) if levels is None else sorted(set(levels))
        if not chosen:
            raise ValueError("VQVAE needs at least one level")
        self.levels = nn.ModuleDict({str(level): LevelVQVAE(config, level) for level in chosen})

    @property
    def level_ids(self) -> list[int]:
        return [int(k) for k in self.levels]

    def level(self, level: int) -> LevelVQVAE:
        if str(level) not in self.levels:
            raise KeyError(f"this VQVAE holds levels {self.level_ids}, not {level}")
        return self.levels[str(level)]

    def set_data_statistics(self, l2: float, spec: float) -> None:
        for module in self.levels.values():
            module.set_data_statistics(l2, spec)

    def encode(self, audio: torch.Tensor) -> dict[int, torch.Tensor]:
        """Audio [N, C, T] -> {level: codes [N, ceil(T / hop_level)]}."""
        return {int(k): m.encode(audio) for k, m in self.levels.items()}

    def decode(self, codes: torch.Tensor, level: int) -> torch.Tensor:
        """Codes of one level [N, t] -> audio [N, C, t * hop], with that level's decoder only."""
        return self.level(level).decode(codes)

    def forward(
        self, audio: torch.Tensor
    ) -> tuple[dict[int, torch.Tensor], torch.Tensor, dict[str, torch.Tensor]]:
        """Audio [N, C, T] (T a multiple of every held level's hop) -> (recons, loss, metrics)."""
        hop = max(m.hop_length for m in self.levels.values())
        if audio.ndim == 3 and audio.shape[2] % hop:
            raise ValueError(
                f"VQVAE levels {self.level_ids} need a length that is a multiple of {hop}, "
                f"got {audio.shape[2]} samples"
            )
        recons: dict[int, torch.Tensor] = {}
        metrics: dict[str, torch.Tensor] = {}
        total = audio.new_zeros((), dtype=torch.float32)
        for key, module in self.levels.items():
            recon, loss, level_metrics = module(audio)
            recons[int(key)] = recon
            total = total + loss
            metrics.update({f"level_{key}/{name}": v for name, v in level_metrics.items()})
        return recons, total, metrics


def count_parameters(module: nn.Module) -> int:
    """Trainable parameters (codebooks are buffers and not counted); works on the meta device."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
