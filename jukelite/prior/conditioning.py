"""What a prior is conditioned on, turned into vectors of the model width.

Labels (artist, bag of genre words) become the start token; timing (song length, window position)
becomes a signal added to every position of the top prior.

The upsampler conditioner lets level L's prior see the codes of level L+1: it embeds them,
runs a dilated residual stack and transposed convolutions that stretch them to level L's token
rate (x4 per level in Jukebox), and layer-normalises the result, which is added to level L's
input embedding (and, for tied-head priors, again before the output head).
"""

from __future__ import annotations

import torch
from torch import nn

from jukelite.data.labels import (
    ARTIST,
    GENRES,
    OFFSET,
    SAMPLE_LENGTH,
    TOTAL_LENGTH,
    TimingRange,
    range_bins,
)
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


class RangeEmbedding(nn.Module):
    """Embeds a span [start, end) of a scalar range as `n_time` binned positions (Jukebox).

    Positions are spread linearly over the span and binned into `t_bins` equal bins of [lo, hi);
    the bin arithmetic lives in `jukelite.data.labels.range_bins` so data checks share it.
    """

    def __init__(
        self,
        n_time: int,
        t_bins: int,
        lo: float,
        hi: float,
        width: int,
        init_scale: float = 1.0,
        clamp: bool = False,
    ) -> None:
        super().__init__()
        self.n_time, self.t_bins, self.lo, self.hi, self.clamp = n_time, t_bins, lo, hi, clamp
        self.emb = nn.Embedding(t_bins, width)
        nn.init.normal_(self.emb.weight, std=0.01 * init_scale)

    def forward(self, start: torch.Tensor, end: torch.Tensor | None = None) -> torch.Tensor:
        bins = range_bins(start, end, self.n_time, self.t_bins, self.lo, self.hi, self.clamp)
        return self.emb(bins.to(self.emb.weight.device))


class LabelConditioner(nn.Module):
    """Label vector `y` -> the start token (artist + bag of genre words) and the timing signal.

    The start token [N, 1, W] replaces position 0 of the shifted input. The timing signal
    [N, n_ctx, W] (top prior only) sums embeddings of the song's total length, the window's
    absolute position and its position relative to the song, and is added to every position.
    """

    def __init__(
        self,
        width: int,
        n_ctx: int,
        artist_bins: int,
        genre_bins: int,
        max_bow_genre_size: int,
        timing: TimingRange | None = None,
        t_bins: int = 128,
        init_scale: float = 1.0,
    ) -> None:
        super().__init__()
        self.max_bow_genre_size = max_bow_genre_size
        self.timing = timing
        self.artist_emb = nn.Embedding(artist_bins, width)
        self.bow_genre_emb = nn.Embedding(genre_bins, width)
        for emb in (self.artist_emb, self.bow_genre_emb):
            nn.init.normal_(emb.weight, std=0.01 * init_scale)
        if timing is not None:
            lo, hi = timing.min_samples, timing.max_samples
            self.total_length_emb = RangeEmbedding(1, t_bins, lo, hi, width, init_scale)
            self.absolute_pos_emb = RangeEmbedding(n_ctx, t_bins, 0.0, hi, width, init_scale)
            self.relative_pos_emb = RangeEmbedding(
                n_ctx, t_bins, 0.0, 1.0, width, init_scale, clamp=True
            )

    def check(self, y: torch.Tensor) -> None:
        """Raise if a song length in y [N, >= 4 + G] is outside the timing range, saying what
        is valid. It reads the lengths back to the host, so it is not part of `forward`: the
        caller runs it once per request or batch (`LevelPrior.forward`; sampling checks the
        request's length), never per window or step."""
        if self.timing is None:
            return
        for value in y[:, TOTAL_LENGTH].float().tolist():
            self.timing.check_total(value)

    def forward(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """y [N, >= 4 + G] (layout of `jukelite.data.labels.label_vector`) -> (start, timing).
        Lengths are not checked here (see `check`)."""
        genres = y[:, GENRES : GENRES + self.max_bow_genre_size]
        mask = (genres >= 0).unsqueeze(-1).to(self.bow_genre_emb.weight.dtype)
        start = self.artist_emb(y[:, ARTIST]) + (
            self.bow_genre_emb(genres.clamp(min=0)) * mask
        ).sum(1)
        if self.timing is None:
            return start.unsqueeze(1), None
        total = y[:, TOTAL_LENGTH].float()
        offset = y[:, OFFSET].float()
        end = offset + y[:, SAMPLE_LENGTH].float()
        signal = (
            self.total_length_emb(total)
            + self.absolute_pos_emb(offset, end)
            + self.relative_pos_emb(offset / total, end / total)
        )
        return start.unsqueeze(1), signal
