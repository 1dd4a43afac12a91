"""EMA vector quantiser with random restarts of dead codes (Jukebox bottleneck, reference §2.4).

The codebook is not a parameter: it follows the running mean of the encoder outputs assigned to
each code (EMA of sums and counts), so the optimiser and weight-EMA never touch it. A code whose EMA
count falls below `restart_threshold` is moved to a random current encoder output, which keeps the
whole codebook in use. All state lives in persistent buffers, so checkpoints resume exactly.

Under torch.distributed the per-code sums and counts are all-reduced and the init/restart candidates
come from rank 0, so every rank holds the same codebook without relying on DDP buffer broadcasts.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


class QuantizerOutput(NamedTuple):
    quantized: torch.Tensor  # [N, D, T], straight-through in training, detached in eval
    codes: torch.Tensor  # [N, T] long
    commit_loss: torch.Tensor  # scalar, mean squared distance to the (detached) chosen code
    metrics: dict[str, torch.Tensor]  # detached scalars


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


class VectorQuantizer(nn.Module):
    """Nearest-neighbour (squared L2) codebook of `codebook_size` vectors of size `code_dim`."""

    def __init__(
        self,
        codebook_size: int,
        code_dim: int,
        decay: float = 0.99,
        restart_threshold: float = 1.0,
    ) -> None:
        super().__init__()
        self.codebook_size = codebook_size
        self.code_dim = code_dim
        self.decay = decay
        self.restart_threshold = restart_threshold
        self.register_buffer("codebook", torch.zeros(codebook_size, code_dim))
        self.register_buffer("ema_sum", torch.zeros(codebook_size, code_dim))
        self.register_buffer("ema_count", torch.zeros(codebook_size))
        self.register_buffer("initialized", torch.tensor(False))

    # -- lookup ---------------------------------------------------------------------------------

    def _nearest(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [M, D] -> (codes [M], squared distance to the chosen code [M])."""
        k = self.codebook
        distance = x.pow(2).sum(dim=1, keepdim=True) - 2 * x @ k.t() + k.pow(2).sum(dim=1)[None, :]
        min_distance, codes = distance.min(dim=1)
        return codes, min_distance

    @staticmethod
    def _flatten(x: torch.Tensor) -> torch.Tensor:
        """[N, D, T] -> [N*T, D] in float32 (the codebook maths is never done in low precision)."""
        return x.permute(0, 2, 1).reshape(-1, x.shape[1]).float()

    def _check_input(self, x: torch.Tensor) -> None:
        if x.ndim != 3 or x.shape[1] != self.code_dim:
            raise ValueError(
                f"expected latents [batch, {self.code_dim}, time], got shape {tuple(x.shape)}"
            )

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Latents [N, D, T] -> codes [N, T] (long)."""
        self._check_input(x)
        with torch.autocast(x.device.type, enabled=False):
            codes, _ = self._nearest(self._flatten(x))
        return codes.view(x.shape[0], x.shape[2])

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes [N, T] -> latents [N, D, T]."""
        return F.embedding(codes, self.codebook).permute(0, 2, 1)

    # -- training-time codebook maintenance ------------------------------------------------------

    def _candidates(self, x: torch.Tensor) -> torch.Tensor:
        """K random rows of x [M, D] (tiled with small noise if M < K), identical on every rank."""
        m, d = x.shape
        if m < self.codebook_size:
            x = x.repeat(math.ceil(self.codebook_size / m), 1)
            x = x + torch.randn_like(x) * (0.01 / math.sqrt(d))
        idx = torch.randperm(x.shape[0], device=x.device)[: self.codebook_size]
        candidates = x[idx].contiguous()
        if _distributed():
            dist.broadcast(candidates, src=0)
        return candidates

    @torch.no_grad()
    def _initialize(self, x: torch.Tensor) -> None:
        self.codebook.copy_(self._candidates(x))
        self.ema_sum.copy_(self.codebook)
        self.ema_count.fill_(1.0)
        self.initialized.fill_(True)

    @torch.no_grad()
    def _ema_update(self, x: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """Move each code to the EMA mean of its assigned vectors; restart dead codes.

        Returns the per-code assignment counts of this batch (summed over ranks).
        """
        onehot = F.one_hot(codes, self.codebook_size).to(x.dtype)  # [M, K]
        sums = onehot.t() @ x  # [K, D]
        counts = onehot.sum(dim=0)  # [K]
        if _distributed():
            dist.all_reduce(sums)
            dist.all_reduce(counts)

        d = self.decay
        self.ema_sum.mul_(d).add_(sums, alpha=1 - d)
        self.ema_count.mul_(d).add_(counts, alpha=1 - d)

        alive = self.ema_count >= self.restart_threshold
        means = self.ema_sum / self.ema_count.clamp(min=1e-12)[:, None]
        if bool(alive.all()):  # same decision on every rank: ema_count is identical everywhere
            self.codebook.copy_(means)
        else:
            # Like Jukebox, only the code vector moves; its EMA statistics keep accumulating.
            restart = self._candidates(x)
            self.codebook.copy_(torch.where(alive[:, None], means, restart))
        return counts

    # -- forward ------------------------------------------------------------------------------

    def forward(self, x: torch.Tensor) -> QuantizerOutput:
        """Quantise latents [N, D, T]; in training mode also update the codebook."""
        self._check_input(x)
        n, _, t = x.shape
        with torch.autocast(x.device.type, enabled=False):
            flat = self._flatten(x)
            if self.training and not bool(self.initialized):
                self._initialize(flat.detach())
            previous = self.codebook.clone()  # the output uses the codebook before this update

            codes, min_distance = self._nearest(flat.detach())
            if self.training:
                counts = self._ema_update(flat.detach(), codes)
            else:
                counts = torch.bincount(codes, minlength=self.codebook_size).float()

            quantized = F.embedding(codes, previous).view(n, t, -1).permute(0, 2, 1)
            commit_loss = F.mse_loss(x.float(), quantized)
            if self.training:
                quantized = x.float() + (quantized - x.float()).detach()  # straight-through

            with torch.no_grad():
                probs = counts / counts.sum().clamp(min=1)
                entropy = -(probs * torch.log2(probs.clamp(min=1e-30))).sum()
                metrics = {
                    "usage": (self.ema_count >= self.restart_threshold).float().mean(),
                    "used_current": (counts > 0).float().sum(),
                    "entropy": entropy,
                    "perplexity": torch.pow(2.0, entropy),
                    "fit": min_distance.mean(),
                    "codebook_change": (self.codebook - previous).pow(2).mean().sqrt(),
                }
        return QuantizerOutput(quantized, codes.view(n, t), commit_loss, metrics)

    def extra_repr(self) -> str:
        return (
            f"codebook_size={self.codebook_size}, code_dim={self.code_dim}, decay={self.decay}, "
            f"restart_threshold={self.restart_threshold}"
        )
