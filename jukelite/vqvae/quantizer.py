"""EMA vector quantiser with restarts of dead codes (Jukebox bottleneck, reference §2.4).

The codebook is not a parameter: it follows the running mean of the encoder outputs assigned to
each code (EMA of sums and counts), so the optimiser and weight-EMA never touch it. All state lives
in persistent buffers, so checkpoints resume exactly.

Two recipe options (defaults reproduce Jukebox exactly, with the same state_dict keys):

- `lookup="factorised"` (ViT-VQGAN): latents are projected by a learned linear map to `lookup_dim`
  dimensions and l2-normalised; codes live on that unit sphere (EMA of normalised vectors,
  renormalised), the nearest code is the one of highest cosine, and the chosen code is projected
  back up to `code_dim` by a second learned linear map. A low-dimensional, normalised lookup spreads
  assignments over the codebook instead of letting a few large-norm codes win everything.
- `restart="usage"`: Jukebox restarts a code whose per-*step* EMA count falls below a threshold;
  with small CPU batches (8 x 64 vectors for 256 codes) most counts sit near that threshold and
  codes restart constantly. The usage rule instead counts the vectors seen since each code was
  last chosen and restarts a code only when it went unused for `restart_horizon * codebook_size`
  vectors (a uniformly used code expects `restart_horizon` hits in that span, independent of
  batch size). At most `restart_max_fraction` of the codebook restarts per step, longest-unused
  first, each onto a current encoder output drawn with probability proportional to its distance
  from its nearest code (the worst-fitted latents), with fresh EMA statistics.

Under torch.distributed the per-code sums and counts (and the number of vectors seen) are
all-reduced and the init/restart candidates come from rank 0, so every rank holds the same codebook
without relying on DDP buffer broadcasts.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

LOOKUPS = ("euclidean", "factorised")
RESTARTS = ("jukebox", "usage")


class QuantizerOutput(NamedTuple):
    quantized: torch.Tensor  # [N, D, T], straight-through in training, detached in eval
    codes: torch.Tensor  # [N, T] long
    commit_loss: torch.Tensor  # scalar, mean squared distance to the (detached) chosen code
    metrics: dict[str, torch.Tensor]  # detached scalars


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


class VectorQuantizer(nn.Module):
    """Codebook of `codebook_size` codes for latents of size `code_dim`.

    Euclidean lookup (default): codes are `code_dim` vectors, nearest by squared L2. Factorised
    lookup: codes are unit vectors of size `lookup_dim`, nearest by cosine (see module docstring).
    """

    def __init__(
        self,
        codebook_size: int,
        code_dim: int,
        decay: float = 0.99,
        restart_threshold: float = 1.0,
        lookup: str = "euclidean",
        lookup_dim: int = 8,
        restart: str = "jukebox",
        restart_horizon: float = 16.0,
        restart_max_fraction: float = 0.05,
    ) -> None:
        super().__init__()
        if lookup not in LOOKUPS:
            raise ValueError(f"quantizer lookup must be one of {LOOKUPS}, got {lookup!r}")
        if restart not in RESTARTS:
            raise ValueError(f"quantizer restart must be one of {RESTARTS}, got {restart!r}")
        if isinstance(lookup_dim, bool) or not isinstance(lookup_dim, int) or lookup_dim < 1:
            raise ValueError(f"quantizer lookup_dim must be an integer >= 1, got {lookup_dim!r}")
        if not restart_horizon > 0:
            raise ValueError(f"quantizer restart_horizon must be positive, got {restart_horizon!r}")
        if not 0 < restart_max_fraction <= 1:
            raise ValueError(
                f"quantizer restart_max_fraction must be in (0, 1], got {restart_max_fraction!r}"
            )
        self.codebook_size = codebook_size
        self.code_dim = code_dim
        self.decay = decay
        self.restart_threshold = restart_threshold
        self.lookup = lookup
        self.lookup_dim = lookup_dim
        self.restart = restart
        self.restart_horizon = restart_horizon
        self.restart_max_fraction = restart_max_fraction
        factorised = lookup == "factorised"
        self.space_dim = lookup_dim if factorised else code_dim  # where codes live and EMA runs
        # Only the chosen options add modules/buffers: default state_dicts keep their keys.
        self.project_in = nn.Linear(code_dim, lookup_dim) if factorised else None
        self.project_out = nn.Linear(lookup_dim, code_dim) if factorised else None
        self.register_buffer("codebook", torch.zeros(codebook_size, self.space_dim))
        self.register_buffer("ema_sum", torch.zeros(codebook_size, self.space_dim))
        self.register_buffer("ema_count", torch.zeros(codebook_size))
        self.register_buffer("initialized", torch.tensor(False))
        if restart == "usage":
            # Vectors seen (over all ranks) since each code was last chosen; capped, see _usage.
            self.register_buffer("unused_for", torch.zeros(codebook_size))

    @property
    def factorised(self) -> bool:
        return self.lookup == "factorised"

    @property
    def horizon_vectors(self) -> float:
        """Vectors a code may go unchosen before the usage rule calls it dead."""
        return self.restart_horizon * self.codebook_size

    # -- lookup ---------------------------------------------------------------------------------

    def _to_space(self, flat: torch.Tensor) -> torch.Tensor:
        """Latent rows [M, code_dim] -> rows in the lookup space (projected, l2-normalised)."""
        if self.project_in is None:
            return flat
        weight, bias = self.project_in.weight.float(), self.project_in.bias.float()
        return F.normalize(F.linear(flat, weight, bias), dim=1)

    def _from_space(self, z: torch.Tensor) -> torch.Tensor:
        """Rows in the lookup space [..., space_dim] -> latents [..., code_dim]."""
        if self.project_out is None:
            return z
        weight, bias = self.project_out.weight.float(), self.project_out.bias.float()
        return F.linear(z, weight, bias)

    def _nearest(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """z [M, space_dim] -> (codes [M], squared distance to the chosen code [M]).

        Factorised: z and the codes are unit vectors, so the squared distance is 2 - 2 cos and
        the nearest code is the one of highest cosine.
        """
        k = self.codebook
        if self.factorised:
            cosine, codes = (z @ k.t()).max(dim=1)
            return codes, (2 - 2 * cosine).clamp(min=0)
        distance = z.pow(2).sum(dim=1, keepdim=True) - 2 * z @ k.t() + k.pow(2).sum(dim=1)[None, :]
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
            codes, _ = self._nearest(self._to_space(self._flatten(x)))
        return codes.view(x.shape[0], x.shape[2])

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes [N, T] -> latents [N, D, T]."""
        return self._from_space(F.embedding(codes, self.codebook)).permute(0, 2, 1)

    # -- training-time codebook maintenance ------------------------------------------------------

    def _candidates(self, x: torch.Tensor) -> torch.Tensor:
        """K random rows of x [M, D] (tiled with small noise if M < K), identical on every rank."""
        m, d = x.shape
        if m < self.codebook_size:
            x = x.repeat(math.ceil(self.codebook_size / m), 1)
            x = x + torch.randn_like(x) * (0.01 / math.sqrt(d))
        idx = torch.randperm(x.shape[0], device=x.device)[: self.codebook_size]
        candidates = self._on_sphere(x[idx]).contiguous()
        if _distributed():
            dist.broadcast(candidates, src=0)
        return candidates

    def _far_candidates(self, x: torch.Tensor, distance: torch.Tensor, n: int) -> torch.Tensor:
        """n rows of x [M, D] drawn with probability proportional to `distance`, from rank 0."""
        weights = distance.clamp(min=0) + 1e-12
        idx = torch.multinomial(weights, n, replacement=n > x.shape[0])
        candidates = x[idx]
        if n > x.shape[0]:  # repeated rows would restart several codes onto one point
            candidates = candidates + torch.randn_like(candidates) * (0.01 / math.sqrt(x.shape[1]))
        candidates = self._on_sphere(candidates).contiguous()
        if _distributed():
            dist.broadcast(candidates, src=0)
        return candidates

    def _on_sphere(self, z: torch.Tensor) -> torch.Tensor:
        return F.normalize(z, dim=1) if self.factorised else z

    def _means(self) -> torch.Tensor:
        """The codes the EMA statistics call for (renormalised in the factorised space)."""
        means = self.ema_sum / self.ema_count.clamp(min=1e-12)[:, None]
        return self._on_sphere(means)

    @torch.no_grad()
    def _initialize(self, x: torch.Tensor) -> None:
        self.codebook.copy_(self._candidates(x))
        self.ema_sum.copy_(self.codebook)
        self.ema_count.fill_(1.0)
        self.initialized.fill_(True)
        if self.restart == "usage":
            self.unused_for.zero_()

    @torch.no_grad()
    def _ema_update(
        self, x: torch.Tensor, codes: torch.Tensor, distance: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Move each code to the EMA mean of its assigned vectors; restart dead codes.

        Returns the per-code assignment counts of this batch (summed over ranks) and the number
        of codes restarted.
        """
        # Per-code sums and counts by adding rows onto their codes: a dense [M, K] one-hot would
        # cost M * K floats (268 MB per level-0 step at batch 4 x 65536, 2048 codes). Counts are
        # added ones rather than a bincount, which reads its maximum back to the host on CUDA.
        sums = x.new_zeros(self.codebook_size, x.shape[1]).index_add_(0, codes, x)  # [K, D]
        counts = x.new_zeros(self.codebook_size).index_add_(0, codes, x.new_ones(len(codes)))
        if _distributed():
            dist.all_reduce(sums)
            dist.all_reduce(counts)

        d = self.decay
        self.ema_sum.mul_(d).add_(sums, alpha=1 - d)
        self.ema_count.mul_(d).add_(counts, alpha=1 - d)
        if self.restart == "usage":
            return counts, self._usage_restart(x, distance, counts)

        alive = self.ema_count >= self.restart_threshold
        means = self._means()
        if bool(alive.all()):  # same decision on every rank: ema_count is identical everywhere
            self.codebook.copy_(means)
            return counts, counts.new_zeros(())
        # Like Jukebox, only the code vector moves; its EMA statistics keep accumulating.
        restart = self._candidates(x)
        self.codebook.copy_(torch.where(alive[:, None], means, restart))
        return counts, (~alive).sum().to(counts.dtype)

    @torch.no_grad()
    def _usage_restart(
        self, x: torch.Tensor, distance: torch.Tensor, counts: torch.Tensor
    ) -> torch.Tensor:
        """The usage rule: restart codes unchosen for a horizon of vectors (see module doc)."""
        seen = counts.sum()  # vectors of this step over all ranks (counts are all-reduced)
        cap = 4 * self.horizon_vectors  # bounded so float32 stays exact
        self.unused_for.add_(seen).clamp_(max=cap)
        self.unused_for.masked_fill_(counts > 0, 0.0)

        self.codebook.copy_(self._means())
        dead = self.unused_for >= self.horizon_vectors
        n_dead = int(dead.sum())  # identical on every rank
        if n_dead == 0:
            return counts.new_zeros(())
        n = min(n_dead, max(1, int(self.restart_max_fraction * self.codebook_size)))
        # Longest unused first; stable sort on a rank-identical buffer gives identical picks.
        order = torch.sort(-self.unused_for, stable=True).indices[:n]
        fresh = self._far_candidates(x, distance, n)
        self.codebook[order] = fresh
        self.ema_sum[order] = fresh
        self.ema_count[order] = 1.0
        self.unused_for[order] = 0.0
        return counts.new_tensor(float(n))

    # -- forward ------------------------------------------------------------------------------

    def forward(self, x: torch.Tensor) -> QuantizerOutput:
        """Quantise latents [N, D, T]; in training mode also update the codebook."""
        self._check_input(x)
        n, _, t = x.shape
        with torch.autocast(x.device.type, enabled=False):
            flat = self._flatten(x)
            z = self._to_space(flat)  # == flat (same tensor) for the euclidean lookup
            if self.training and not bool(self.initialized):
                self._initialize(z.detach())
            previous = self.codebook.clone()  # the output uses the codebook before this update

            codes, min_distance = self._nearest(z.detach())
            if self.training:
                counts, restarts = self._ema_update(z.detach(), codes, min_distance)
            else:
                counts = torch.bincount(codes, minlength=self.codebook_size).float()
                restarts = counts.new_zeros(())

            chosen = F.embedding(codes, previous)  # [M, space_dim]
            if self.factorised:
                commit_loss = F.mse_loss(z, chosen)
                if self.training:
                    chosen = z + (chosen - z).detach()  # straight-through in the lookup space
                quantized = self._from_space(chosen).view(n, t, -1).permute(0, 2, 1)
            else:
                quantized = chosen.view(n, t, -1).permute(0, 2, 1)
                commit_loss = F.mse_loss(x.float(), quantized)
                if self.training:
                    quantized = x.float() + (quantized - x.float()).detach()  # straight-through

            with torch.no_grad():
                probs = counts / counts.sum().clamp(min=1)
                entropy = -(probs * torch.log2(probs.clamp(min=1e-30))).sum()
                if self.restart == "usage":
                    usage = (self.unused_for < self.horizon_vectors).float().mean()
                else:
                    usage = (self.ema_count >= self.restart_threshold).float().mean()
                metrics = {
                    "usage": usage,
                    "used_current": (counts > 0).float().sum(),
                    "entropy": entropy,
                    "perplexity": torch.pow(2.0, entropy),
                    "fit": min_distance.mean(),
                    "codebook_change": (self.codebook - previous).pow(2).mean().sqrt(),
                    "restarts": restarts,
                }
        return QuantizerOutput(quantized, codes.view(n, t), commit_loss, metrics)

    def extra_repr(self) -> str:
        text = (
            f"codebook_size={self.codebook_size}, code_dim={self.code_dim}, decay={self.decay}, "
            f"restart_threshold={self.restart_threshold}"
        )
        if self.factorised:
            text += f", lookup=factorised, lookup_dim={self.lookup_dim}"
        if self.restart == "usage":
            text += (
                f", restart=usage, restart_horizon={self.restart_horizon}, "
                f"restart_max_fraction={self.restart_max_fraction}"
            )
        return text
