"""What a prior is conditioned on, turned into vectors of the model width.

The upsampler conditioner lets level L's prior see the codes of level L+1: it embeds them,
runs a dilated residual stack and transposed convolutions that stretch them to level L's token
rate (x4 per level in Jukebox), and layer-normalises the result, which is added to level L's
input embedding (and, for tied-head priors, again before the output head).
"""

from __future__ import annotations

import torch
from torch import nn

from jukelite.vqvae.blocks import DecoderBlock


class UpsamplerConditioner(nn.Module):
    """Upper-level codes [N, t] -> conditioning [N, t * stride**down_t, out_width].

    Jukebox names: `x_emb`, `cond` (a VQ-VAE decoder block whose dilations are not reversed),
    `ln`; sizes for the released upsamplers: bins 2048, out_width 1920, down_t 2, stride 2,
    width 1024, depth 16, dilation growth 3, cycle 8 (156,180,096 parameters).
    """

    def __init__(
        self,
        bins: int,
        out_width: int,
        down_t: int,
        stride: int,
        width: int,
        depth: int,
        m_conv: float = 1.0,
        dilation_growth_rate: int = 3,
        dilation_cycle: int | None = None,
        res_scale: float = 1.0,
        init_scale: float = 1.0,
    ) -> None:
        super().__init__()
        self.upsample = stride**down_t
        self.x_emb = nn.Embedding(bins, out_width)
        nn.init.normal_(self.x_emb.weight, std=0.02 * init_scale)
        self.cond = DecoderBlock(
            out_width,
            out_width,
            down_t,
            stride,
            width,
            depth,
            m_conv,
            dilation_growth_rate,
            dilation_cycle,
            reverse_dilation=False,
            res_scale=res_scale,
        )
        self.ln = nn.LayerNorm(out_width)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        if codes.ndim != 2:
            raise ValueError(
                f"expected upper-level codes [batch, tokens], got {tuple(codes.shape)}"
            )
        x = self.x_emb(codes).transpose(1, 2)
        x = self.cond(x).transpose(1, 2)
        return self.ln(x)
