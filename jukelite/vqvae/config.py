"""VQ-VAE hyperparameters: one dataclass, JSON-serialisable, shared by recipes and bundles.

Defaults are the released Jukebox VQ-VAE (three levels, hop 8/32/128) except `sample_rate`,
which is 22050 here; STFT sizes are quoted at 44.1 kHz and scaled by `stft_resolutions()`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from jukelite.strict_config import StrictConfig

REFERENCE_SAMPLE_RATE = 44100  # the rate at which Jukebox quotes every STFT size


def scale_stft_resolution(
    n_fft: int, hop: int, window: int, sample_rate: int
) -> tuple[int, int, int]:
    """Scale an STFT quoted at 44.1 kHz to `sample_rate` so it covers the same time spans.

    hop and window are scaled and rounded (half up); n_fft becomes the smallest power of two that is
    at least the scaled n_fft and at least the window (torch.stft needs window <= n_fft).
    """
    scale = sample_rate / REFERENCE_SAMPLE_RATE
    hop = max(1, math.floor(hop * scale + 0.5))
    window = max(1, math.floor(window * scale + 0.5))
    needed = max(n_fft * scale, window)
    n_fft = 1 << max(0, math.ceil(math.log2(needed) - 1e-9))
    return n_fft, hop, window


@dataclass
class VQVAEConfig(StrictConfig):
    """Sizes of every level's autoencoder; per-level lists are indexed by level (0 = finest)."""

    sample_rate: int = 22050
    channels: int = 1
    levels: int = 3
    downs_t: list[int] = field(default_factory=lambda: [3, 2, 2])
    strides_t: list[int] = field(default_factory=lambda: [2, 2, 2])
    width: list[int] = field(default_factory=lambda: [64, 32, 32])
    depth: list[int] = field(default_factory=lambda: [8, 4, 4])
    m_conv: float = 1.0
    dilation_growth_rate: int = 3
    dilation_cycle: int | None = None
    reverse_decoder_dilation: bool = True
    codebook_size: int = 2048
    code_dim: int = 64
    ema_decay: float = 0.99
    restart_threshold: float = 1.0
    # Quantiser options (jukelite/vqvae/quantizer.py); the defaults are Jukebox's bottleneck, and
    # bundles written before these keys existed load with exactly that behaviour.
    quantizer_lookup: str = "euclidean"  # or "factorised": ViT-VQGAN low-dim cosine lookup
    lookup_dim: int = 8  # size of the factorised lookup space (unused for "euclidean")
    restart: str = "jukebox"  # or "usage": restart codes unchosen for restart_horizon * K vectors
    restart_horizon: float = 16.0  # usage rule: horizon in multiples of codebook_size vectors
    restart_max_fraction: float = 0.05  # usage rule: at most this fraction of codes per step
    commit: float = 0.02
    l2_weight: float = 1.0
    linf_weight: float = 0.02
    linf_k: int = 2048
    multispectral_weight: float = 1.0
    stft_n_fft: list[int] = field(default_factory=lambda: [2048, 1024, 512])
    stft_hop: list[int] = field(default_factory=lambda: [240, 120, 50])
    stft_window: list[int] = field(default_factory=lambda: [1200, 600, 240])

    def __post_init__(self) -> None:
        # YAML/JSON may hand us tuples; keep lists so asdict() round-trips through JSON unchanged.
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, tuple):
                setattr(self, f.name, list(value))
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the first offending field."""

        def positive(name: str, value: float) -> None:
            if not value > 0:
                raise ValueError(f"VQVAEConfig.{name} must be positive, got {value!r}")

        def non_negative(name: str, value: float) -> None:
            if not value >= 0:
                raise ValueError(f"VQVAEConfig.{name} must be >= 0, got {value!r}")

        for name in ("sample_rate", "channels", "levels", "codebook_size", "code_dim", "linf_k"):
            positive(name, getattr(self, name))
        positive("m_conv", self.m_conv)
        positive("dilation_growth_rate", self.dilation_growth_rate)
        if self.dilation_cycle is not None:
            positive("dilation_cycle", self.dilation_cycle)
        for name in ("commit", "l2_weight", "linf_weight", "multispectral_weight"):
            non_negative(name, getattr(self, name))
        non_negative("restart_threshold", self.restart_threshold)
        if self.quantizer_lookup not in ("euclidean", "factorised"):
            raise ValueError(
                "VQVAEConfig.quantizer_lookup must be 'euclidean' or 'factorised', got "
                f"{self.quantizer_lookup!r}"
            )
        if (
            isinstance(self.lookup_dim, bool)
            or not isinstance(self.lookup_dim, int)
            or self.lookup_dim < 1
        ):
            raise ValueError(
                f"VQVAEConfig.lookup_dim must be an integer >= 1, got {self.lookup_dim!r}"
            )
        if self.restart not in ("jukebox", "usage"):
            raise ValueError(
                f"VQVAEConfig.restart must be 'jukebox' or 'usage', got {self.restart!r}"
            )
        positive("restart_horizon", self.restart_horizon)
        if not 0.0 < self.restart_max_fraction <= 1.0:
            raise ValueError(
                "VQVAEConfig.restart_max_fraction must be in (0, 1], got "
                f"{self.restart_max_fraction!r}"
            )
        if not 0.0 <= self.ema_decay <= 1.0:
            raise ValueError(f"VQVAEConfig.ema_decay must be in [0, 1], got {self.ema_decay!r}")

        for name in ("downs_t", "strides_t", "width", "depth"):
            values = getattr(self, name)
            if len(values) != self.levels:
                raise ValueError(
                    f"VQVAEConfig.{name} needs one entry per level ({self.levels}), got {values!r}"
                )
            for v in values:
                positive(name, v)
        for s in self.strides_t:
            # Kernel 2*stride, padding stride//2 maps T -> T/stride exactly only for even strides.
            if s % 2:
                raise ValueError(f"VQVAEConfig.strides_t must be even, got {self.strides_t!r}")

        n_res = len(self.stft_n_fft)
        if n_res == 0 or len(self.stft_hop) != n_res or len(self.stft_window) != n_res:
            raise ValueError(
                "VQVAEConfig.stft_n_fft, stft_hop and stft_window must be non-empty and of equal "
                f"length, got {self.stft_n_fft!r}, {self.stft_hop!r}, {self.stft_window!r}"
            )
        for name in ("stft_n_fft", "stft_hop", "stft_window"):
            for v in getattr(self, name):
                positive(name, v)

    def hop_length(self, level: int) -> int:
        """Audio samples per code at `level` (cumulative over the stages below and at it)."""
        if not 0 <= level < self.levels:
            raise ValueError(f"level must be in [0, {self.levels - 1}], got {level}")
        pairs = zip(self.strides_t[: level + 1], self.downs_t[: level + 1], strict=True)
        return math.prod(s**d for s, d in pairs)

    @property
    def hop_lengths(self) -> list[int]:
        return [self.hop_length(level) for level in range(self.levels)]

    def stft_resolutions(self) -> list[tuple[int, int, int]]:
        """(n_fft, hop, window) of the multi-resolution STFT loss at this config's sample rate."""
        return [
            scale_stft_resolution(n, h, w, self.sample_rate)
            for n, h, w in zip(self.stft_n_fft, self.stft_hop, self.stft_window, strict=True)
        ]
