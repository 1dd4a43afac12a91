"""Convolutional stacks of the VQ-VAE (Jukebox topology, reference §2.2).

Module and attribute names follow the Jukebox state-dict layout (`level_blocks`, `model`, `out`), so
an importer only has to rename the prefixes: `encoders.{L}.*` -> `levels.{L}.encoder.*`,
`decoders.{L}.*` -> `levels.{L}.decoder.*`. No normalisation layers anywhere; ReLU activations;
the decoder output is unbounded (clamp only when writing audio).
"""

from __future__ import annotations

import torch
from torch import nn


class ResBlock(nn.Module):
    """x + s * conv1x1(relu(conv3_dilated(relu(x)))): pre-activation keeps the skip path linear.

    `res_scale` s < 1 tames deep stacks (Jukebox's level-1 upsampler conditioner uses 1/sqrt(16)).
    """

    def __init__(self, width: int, hidden: int, dilation: int, res_scale: float = 1.0) -> None:
        super().__init__()
        self.res_scale = res_scale
        self.model = nn.Sequential(
            nn.ReLU(),
            nn.Conv1d(width, hidden, kernel_size=3, padding=dilation, dilation=dilation),
            nn.ReLU(),
            nn.Conv1d(hidden, width, kernel_size=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.res_scale * self.model(x)


def dilations(depth: int, growth: int, cycle: int | None, reverse: bool) -> list[int]:
    """growth**i for block i (i mod cycle when cycling): receptive field grows geometrically."""
    ds = [growth ** (i if cycle is None else i % cycle) for i in range(depth)]
    return ds[::-1] if reverse else ds


class ResStack(nn.Module):
    """`depth` residual blocks with growing (or, in the decoder, shrinking) dilation."""

    def __init__(
        self,
        width: int,
        depth: int,
        m_conv: float = 1.0,
        growth: int = 3,
        cycle: int | None = None,
        reverse: bool = False,
        res_scale: float = 1.0,
    ) -> None:
        super().__init__()
        hidden = int(m_conv * width)
        blocks = dilations(depth, growth, cycle, reverse)
        self.model = nn.Sequential(*[ResBlock(width, hidden, d, res_scale) for d in blocks])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class EncoderBlock(nn.Module):
    """`down_t` x (strided conv, res stack), then a k3 conv to `out_channels`.

    Each stage divides the length by `stride` exactly (kernel 2*stride, padding stride//2).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        down_t: int,
        stride: int,
        width: int,
        depth: int,
        m_conv: float,
        growth: int,
        cycle: int | None,
    ) -> None:
        super().__init__()
        stages: list[nn.Module] = []
        for k in range(down_t):
            conv = nn.Conv1d(
                in_channels if k == 0 else width,
                width,
                kernel_size=2 * stride,
                stride=stride,
                padding=stride // 2,
            )
            stages.append(nn.Sequential(conv, ResStack(width, depth, m_conv, growth, cycle)))
        stages.append(nn.Conv1d(width, out_channels, kernel_size=3, padding=1))
        self.model = nn.Sequential(*stages)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class DecoderBlock(nn.Module):
    """Mirror of EncoderBlock: k3 conv in, then `down_t` x (res stack, transposed conv).

    Each stage multiplies the length by `stride` exactly; only the last one outputs `out_channels`.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        down_t: int,
        stride: int,
        width: int,
        depth: int,
        m_conv: float,
        growth: int,
        cycle: int | None,
        reverse_dilation: bool,
        res_scale: float = 1.0,
    ) -> None:
        super().__init__()
        stages: list[nn.Module] = [nn.Conv1d(in_channels, width, kernel_size=3, padding=1)]
        for k in range(down_t):
            up = nn.ConvTranspose1d(
                width,
                out_channels if k == down_t - 1 else width,
                kernel_size=2 * stride,
                stride=stride,
                padding=stride // 2,
            )
            res = ResStack(width, depth, m_conv, growth, cycle, reverse_dilation, res_scale)
            stages.append(nn.Sequential(res, up))
        self.model = nn.Sequential(*stages)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class Encoder(nn.Module):
    """Audio [N, C, T] -> latents [N, code_dim, T / hop]; one EncoderBlock per down stage group."""

    def __init__(
        self,
        in_channels: int,
        code_dim: int,
        downs_t: list[int],
        strides_t: list[int],
        width: int,
        depth: int,
        m_conv: float = 1.0,
        growth: int = 3,
        cycle: int | None = None,
    ) -> None:
        super().__init__()
        self.level_blocks = nn.ModuleList(
            EncoderBlock(
                in_channels if j == 0 else code_dim,
                code_dim,
                down_t,
                stride,
                width,
                depth,
                m_conv,
                growth,
                cycle,
            )
            for j, (down_t, stride) in enumerate(zip(downs_t, strides_t, strict=True))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.level_blocks:
            x = block(x)
        return x


class Decoder(nn.Module):
    """Latents [N, code_dim, t] -> audio [N, C, t * hop]; blocks run top (coarsest) first."""

    def __init__(
        self,
        out_channels: int,
        code_dim: int,
        downs_t: list[int],
        strides_t: list[int],
        width: int,
        depth: int,
        m_conv: float = 1.0,
        growth: int = 3,
        cycle: int | None = None,
        reverse_dilation: bool = True,
    ) -> None:
        super().__init__()
        self.level_blocks = nn.ModuleList(
            DecoderBlock(
                code_dim,
                code_dim,
                down_t,
                stride,
                width,
                depth,
                m_conv,
                growth,
                cycle,
                reverse_dilation,
            )
            for down_t, stride in zip(downs_t, strides_t, strict=True)
        )
        self.out = nn.Conv1d(code_dim, out_channels, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in reversed(self.level_blocks):
            x = block(x)
        return self.out(x)
