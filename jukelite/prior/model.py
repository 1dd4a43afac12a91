"""A level prior: a sparse-attention Transformer over one level's VQ-VAE codes.

Reads top to bottom like Jukebox's `ConditionalAutoregressive2D` (reference section 3.1):

    h = shift_right(x_emb(tokens), start) + pos_emb + x_cond      # start: labels or learned
    h = blocks(h)             # pre-LN: h + a + mlp(ln_1(h + a)), a = attn(ln_0(h))
    h = h + x_cond            # only for tied-head priors (merged_decoder = False)
    logits = x_out(h)         # loss in bits per token

`x_cond` is the timing signal on the top prior and the upper-level codes, stretched by the
upsampler conditioner, on every lower level; with `labels_everywhere` (not in Jukebox) the
artist and genre embedding is added to it too. Lyrics enter either through a separate lyrics encoder
whose states the encoder-decoder layers attend to (`lyrics: encoder`, prior_5b_lyrics), or as a
prefix of the same sequence in a merged vocabulary (`lyrics: single`, prior_1b_lyrics). Module
names follow Jukebox's so that an importer maps released weights one to one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from jukelite.data.labels import TimingRange, label_vector
from jukelite.data.lyrics import lyric_window
from jukelite.prior.attention import AttnType, KVCache, SparseAttention, attention_schedule
from jukelite.prior.conditioning import LabelConditioner, UpsamplerConditioner
from jukelite.prior.masking import draw_training_mask
from jukelite.strict_config import StrictConfig

LYRICS_MODES = ("none", "encoder", "single")
DECODINGS = ("autoregressive", "parallel")


@dataclass
class PriorConfig(StrictConfig):
    """Sizes and conditioning of one level prior (Jukebox hyperparameter names where they exist)."""

    level: int = 0
    bins: int = 2048  # music vocabulary: the level's codebook size
    n_ctx: int = 8192  # music tokens per window
    width: int = 1920
    depth: int = 72
    heads: int = 1
    attn_order: int = 2
    blocks: int = 128
    m_attn: float = 0.25
    m_mlp: float = 1.0
    init_scale: float = 1.0
    merged_decoder: bool = False  # True: untied head and no conditioning re-added before it
    checkpoint_activations: bool = False
    # labels: artist + bag of genre words -> start token; 0 bins = sized from the training data
    labels: bool = True
    artist_bins: int = 0
    genre_bins: int = 0
    max_bow_genre_size: int = 5
    # also add the label embedding to every position, not only the start token (Jukebox: off):
    # a small prior trained briefly then hears its artist and genre at every step
    labels_everywhere: bool = False
    # timing signal (top prior)
    timing: bool = False
    t_bins: int = 128
    sample_rate: int = 22050
    min_duration: float = 1.0
    max_duration: float = 600.0
    # conditioning on the codes of the level above (upsamplers)
    upsampler: bool = False
    cond_down_t: int = 2
    cond_stride: int = 2
    cond_width: int = 1024
    cond_depth: int = 16
    cond_dilation_growth_rate: int = 3
    cond_dilation_cycle: int | None = 8
    cond_res_scale: float = 1.0
    cond_init_scale: float = 1.0
    # lyrics
    lyrics: str = "none"  # none | encoder | single
    n_tokens: int = 0  # lyric characters per window
    n_vocab: int = 80  # lyric vocabulary
    prime_loss_fraction: float = 0.0
    lyrics_width: int = 1280
    lyrics_depth: int = 18
    lyrics_heads: int = 4
    lyrics_attn_order: int = 2
    lyrics_blocks: int = 32
    lyrics_init_scale: float = 1.0
    # the encoder-decoder (or prime) layer and head whose attention aligns lyrics to music;
    # -1 = the last layer that attends to the lyrics (Jukebox 5b_lyrics: 68, 2; 1b_lyrics: 63, 0)
    alignment_layer: int = -1
    alignment_head: int = 0
    # classifier-free guidance: learned "no artist/genre" and "no lyrics" conditioning that
    # training swaps in at rate train.cond_dropout (set automatically when that is > 0)
    guidance: bool = False
    # autoregressive: Jukebox's next-token prediction; parallel (upsamplers only): every code of
    # a window predicted at once from bidirectional context, trained on masked codes and sampled
    # by revealing the most confident ones over a few steps (jukelite.prior.masking)
    decoding: str = "autoregressive"

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        if self.lyrics not in LYRICS_MODES:
            raise ValueError(
                f"PriorConfig.lyrics must be one of {LYRICS_MODES}, got {self.lyrics!r}"
            )
        if self.decoding not in DECODINGS:
            raise ValueError(
                f"PriorConfig.decoding must be one of {DECODINGS}, got {self.decoding!r}")
        if self.parallel and not self.upsampler:
            raise ValueError("PriorConfig.decoding=parallel is for upsamplers (upsampler=true): "
                             "the top prior writes a song from nothing and stays autoregressive")
        if self.parallel and self.lyrics == "single":
            raise ValueError("PriorConfig.decoding=parallel cannot read a lyric prefix "
                             "(lyrics=single); use lyrics=encoder or none")
        if self.labels_everywhere and not self.labels:
            raise ValueError("PriorConfig.labels_everywhere needs labels=true")
        if self.lyrics != "none" and self.n_tokens < 1:
            raise ValueError(f"PriorConfig.n_tokens must be >= 1 with lyrics={self.lyrics!r}")
        if self.n_state % self.heads:
            raise ValueError(
                f"PriorConfig: attention width {self.n_state} (m_attn * width) is not divisible "
                f"by heads={self.heads}"
            )
        if self.seq_len % self.blocks:
            raise ValueError(
                f"PriorConfig.blocks={self.blocks} must divide the sequence length {self.seq_len}"
            )
        lyrics_state = int(self.m_attn * self.lyrics_width)
        if self.lyrics == "encoder" and lyrics_state % self.lyrics_heads:
            raise ValueError(
                f"PriorConfig: lyrics attention width {lyrics_state} (m_attn * lyrics_width) is "
                f"not divisible by lyrics_heads={self.lyrics_heads}"
            )
        if self.lyrics == "encoder" and self.n_tokens % self.lyrics_blocks:
            raise ValueError(
                f"PriorConfig.lyrics_blocks={self.lyrics_blocks} must divide "
                f"n_tokens={self.n_tokens}"
            )

    @property
    def n_state(self) -> int:
        return int(self.m_attn * self.width)

    @property
    def seq_len(self) -> int:
        """Positions of the Transformer: music tokens, plus the lyric prefix in `single` mode."""
        return self.n_ctx + (self.n_tokens if self.lyrics == "single" else 0)

    @property
    def parallel(self) -> bool:
        return self.decoding == "parallel"

    @property
    def vocab(self) -> int:
        """Token vocabulary: music codes, shifted past the lyric characters in `single` mode;
        a parallel decoder adds one id, `mask_id`, for a hidden code."""
        extra = self.n_vocab if self.lyrics == "single" else int(self.parallel)
        return self.bins + extra

    @property
    def mask_id(self) -> int:
        """The id of a hidden code (parallel decoding)."""
        return self.bins

    @property
    def timing_range(self) -> TimingRange:
        return TimingRange(self.min_duration, self.max_duration, self.sample_rate)


def quick_gelu(x: Tensor) -> Tensor:
    return x * torch.sigmoid(1.702 * x)


class MLP(nn.Module):
    def __init__(self, width: int, hidden: int, init_scale: float, zero_out: bool) -> None:
        super().__init__()
        self.c_fc = nn.Linear(width, hidden)
        self.c_proj = nn.Linear(hidden, width)
        for layer in (self.c_fc, self.c_proj):
            nn.init.normal_(layer.weight, std=0.02 * init_scale)
            nn.init.zeros_(layer.bias)
        if zero_out:
            nn.init.zeros_(self.c_proj.weight)

    def forward(self, x: Tensor) -> Tensor:
        return self.c_proj(quick_gelu(self.c_fc(x)))


class Block(nn.Module):
    """Pre-LN residual block: h = x + a + mlp(ln_1(x + a)), a = attn(ln_0(x))."""

    def __init__(self, attn: SparseAttention, width: int, m_mlp: float, init_scale: float) -> None:
        super().__init__()
        zero_out = attn.attn_type == AttnType.ENC_DEC  # new cross-attention starts as identity
        self.ln_0 = nn.LayerNorm(width)
        self.attn = attn
        self.ln_1 = nn.LayerNorm(width)
        self.mlp = MLP(width, int(m_mlp * width), init_scale, zero_out)

    def forward(self, x: Tensor, encoder_kv: Tensor | None = None) -> Tensor:
        a = self.attn(self.ln_0(x), encoder_kv)
        return x + a + self.mlp(self.ln_1(x + a))

    def forward_cached(
        self, x: Tensor, start: int, cache: KVCache, encoder_kv: Tensor | None = None
    ) -> Tensor:
        a = self.attn.forward_cached(self.ln_0(x), start, cache, encoder_kv)
        return x + a + self.mlp(self.ln_1(x + a))

    def forward_step(
        self, x: Tensor, position: Tensor, cache: KVCache, encoder_kv: Tensor | None = None
    ) -> Tensor:
        a = self.attn.forward_step(self.ln_0(x), position, cache, encoder_kv)
        return x + a + self.mlp(self.ln_1(x + a))


class Transformer(nn.Module):
    """`depth` blocks whose attention types follow Jukebox's `attn_order` schedule."""

    def __init__(
        self,
        width: int,
        depth: int,
        heads: int,
        n_ctx: int,
        attn_order: int,
        blocks: int,
        m_attn: float = 0.25,
        m_mlp: float = 1.0,
        init_scale: float = 1.0,
        encoder_width: int | None = None,
        prime_len: int | None = None,
        checkpoint_activations: bool = False,
        causal: bool = True,
    ) -> None:
        super().__init__()
        self.checkpoint_activations = checkpoint_activations
        n_state = int(m_attn * width)
        self.schedule = attention_schedule(attn_order, depth)
        self.blocks = nn.ModuleList(
            Block(
                SparseAttention(
                    width,
                    n_state,
                    heads,
                    n_ctx,
                    kind,
                    blocks,
                    encoder_width,
                    prime_len,
                    zero_out=kind == AttnType.ENC_DEC,
                    init_scale=init_scale,
                    causal=causal,
                ),
                width,
                m_mlp,
                init_scale,
            )
            for kind in self.schedule
        )

    def forward(self, x: Tensor, encoder_kv: Tensor | None = None) -> Tensor:
        for block in self.blocks:
            if self.checkpoint_activations and self.training:
                x = checkpoint(block, x, encoder_kv, use_reentrant=False)
            else:
                x = block(x, encoder_kv)
        return x

    def init_caches(self, batch: int, device=None, dtype=None,
                    encoder_kv: Tensor | None = None) -> list[KVCache]:
        return [block.attn.init_cache(batch, device, dtype, encoder_kv) for block in self.blocks]

    def forward_cached(
        self, x: Tensor, start: int, caches: list[KVCache], encoder_kv: Tensor | None = None
    ) -> Tensor:
        for block, cache in zip(self.blocks, caches, strict=True):
            x = block.forward_cached(x, start, cache, encoder_kv)
        return x

    def forward_step(
        self, x: Tensor, position: Tensor, caches: list[KVCache], encoder_kv: Tensor | None = None
    ) -> Tensor:
        for block, cache in zip(self.blocks, caches, strict=True):
            x = block.forward_step(x, position, cache, encoder_kv)
        return x


class TokenEmbedding(nn.Module):
    """Shifted-right token embedding with a start token, plus learned absolute positions."""

    def __init__(self, vocab: int, seq_len: int, width: int, init_scale: float) -> None:
        super().__init__()
        self.x_emb = nn.Embedding(vocab, width)
        self.pos_emb = nn.Parameter(torch.randn(seq_len, width) * 0.01 * init_scale)
        nn.init.normal_(self.x_emb.weight, std=0.02 * init_scale)

    def forward(
        self, tokens: Tensor, start_token: Tensor, start: int = 0, length: int | None = None
    ):
        """Inputs of positions [start, start + length): embeddings of tokens [start-1, ...), with
        `start_token` [N, 1, W] at position 0. `tokens` holds at least start + length - 1 ids."""
        length = tokens.shape[1] - start if length is None else length
        previous = self.x_emb(tokens[:, max(start - 1, 0) : start + length - 1])
        if start == 0:
            first = start_token.to(previous.dtype).expand(tokens.shape[0], -1, -1)
            previous = torch.cat([first, previous], dim=1)
        return previous + self.pos_emb[start : start + length]


class LyricsEncoder(nn.Module):
    """Causal Transformer over the lyric window; its states become the keys/values of the
    music prior's encoder-decoder layers, and predict the next character (auxiliary loss)."""

    def __init__(self, config: PriorConfig) -> None:
        super().__init__()
        c = config
        self.embedding = TokenEmbedding(c.n_vocab, c.n_tokens, c.lyrics_width, c.lyrics_init_scale)
        self.start_token = nn.Parameter(
            torch.randn(1, 1, c.lyrics_width) * 0.01 * c.lyrics_init_scale
        )
        self.transformer = Transformer(
            c.lyrics_width,
            c.lyrics_depth,
            c.lyrics_heads,
            c.n_tokens,
            c.lyrics_attn_order,
            c.lyrics_blocks,
            c.m_attn,
            c.m_mlp,
            c.lyrics_init_scale,
            checkpoint_activations=c.checkpoint_activations,
        )
        self.proj = nn.Linear(c.lyrics_width, c.width)  # Jukebox: prime_state_proj
        nn.init.normal_(self.proj.weight, std=0.02 * c.lyrics_init_scale)
        nn.init.zeros_(self.proj.bias)
        self.ln = nn.LayerNorm(c.width)  # prime_state_ln
        self.x_out = nn.Linear(c.width, c.n_vocab, bias=False)  # prime_x_out
        nn.init.normal_(self.x_out.weight, std=0.02 * 0.1)

    def forward(self, tokens: Tensor) -> tuple[Tensor, Tensor]:
        """tokens [N, n_tokens] -> (encoder_kv [N, n_tokens, W], next-character logits)."""
        start = self.start_token.expand(tokens.shape[0], -1, -1)
        states = self.transformer(self.embedding(tokens, start))
        encoder_kv = self.ln(self.proj(states))
        return encoder_kv, self.x_out(encoder_kv)


class Conditioning(NamedTuple):
    """Everything a prior is conditioned on for one window, computed once per window."""

    start: Tensor  # [N, 1, W]
    x_cond: Tensor | None  # [N, seq_len, W] or None
    encoder_kv: Tensor | None  # lyrics encoder states [N, n_tokens, W]
    lyrics_logits: Tensor | None  # next-character logits of the lyrics encoder


@dataclass(frozen=True)
class SongConditions:
    """What a whole song is conditioned on, as the ids priors read; every level's window of the
    song takes its labels, timing and lyric window from here."""

    total_samples: int  # song length in audio samples
    artist_id: int = 0
    genre_ids: tuple[int, ...] = (0,)
    lyric_tokens: tuple[int, ...] = ()  # the whole song's lyric ids


class WindowInputs(NamedTuple):
    """A window's conditioning and the lyric window it was built from."""

    cond: Conditioning
    lyrics: Tensor | None  # the lyric window [N, n_tokens], or None without lyrics
    lyric_start: int  # song index of the lyric window's first character
    prefix: Tensor  # what precedes the music codes in the sequence: the lyric window in
    # `single` mode, else nothing ([N, 0])


class PriorOutput(NamedTuple):
    logits: Tensor  # [N, seq_len, vocab]
    loss: Tensor  # bits per token, weighted as Jukebox weights music and lyrics
    metrics: dict[str, Tensor]  # detached: music_bits_per_token, lyrics_bits_per_token, or
    # masked_bits_per_code (parallel decoding)


class LevelPrior(nn.Module):
    """p(codes of one level | labels, timing, lyrics, codes of the level above)."""

    def __init__(self, config: PriorConfig) -> None:
        super().__init__()
        c = self.config = config
        self.embedding = TokenEmbedding(c.vocab, c.seq_len, c.width, c.init_scale)
        if c.labels:
            if c.artist_bins < 1 or c.genre_bins < 1:
                raise ValueError(
                    "PriorConfig.artist_bins and genre_bins must be >= 1 for a labelled prior "
                    "(training sizes them from the manifest when they are 0)"
                )
            timing = c.timing_range if c.timing else None
            self.y_emb = LabelConditioner(
                c.width,
                c.n_ctx,
                c.artist_bins,
                c.genre_bins,
                c.max_bow_genre_size,
                timing,
                c.t_bins,
                c.init_scale,
            )
        else:
            self.start_token = nn.Parameter(torch.randn(1, 1, c.width) * 0.01 * c.init_scale)
            if c.timing:
                raise ValueError("PriorConfig.timing needs labels=true (the timing rides on y)")
        if c.upsampler:
            self.conditioner = UpsamplerConditioner(
                c.bins,
                c.width,
                c.cond_down_t,
                c.cond_stride,
                c.cond_width,
                c.cond_depth,
                dilation_growth_rate=c.cond_dilation_growth_rate,
                dilation_cycle=c.cond_dilation_cycle,
                res_scale=c.cond_res_scale,
                init_scale=c.cond_init_scale,
            )
        if c.lyrics == "encoder":
            self.lyrics_encoder = LyricsEncoder(c)
        self.transformer = Transformer(
            c.width,
            c.depth,
            c.heads,
            c.seq_len,
            c.attn_order,
            c.blocks,
            c.m_attn,
            c.m_mlp,
            c.init_scale,
            encoder_width=c.width,
            prime_len=c.n_tokens if c.lyrics == "single" else None,
            checkpoint_activations=c.checkpoint_activations,
            causal=not c.parallel,
        )
        if c.guidance:
            self.null_start = nn.Parameter(torch.randn(1, 1, c.width) * 0.01 * c.init_scale)
            if c.lyrics == "encoder":
                self.null_lyrics = nn.Parameter(
                    torch.randn(1, 1, c.width) * 0.01 * c.init_scale)
        self.x_out = nn.Linear(c.width, c.vocab, bias=False)
        if c.merged_decoder:
            nn.init.normal_(self.x_out.weight, std=0.02 * c.init_scale)
        else:
            self.x_out.weight = self.embedding.x_emb.weight  # tied head

    @property
    def upsample_ratio(self) -> int:
        """Tokens of this level per token of the level above (upsamplers only)."""
        return self.config.cond_stride**self.config.cond_down_t

    # ------------------------------------------------------------------ conditioning
    def condition(
        self, y: Tensor | None = None, upper: Tensor | None = None, lyrics: Tensor | None = None,
        drop: Tensor | None = None,
    ) -> Conditioning:
        """Labels y [N, 4 + G], upper-level codes [N, n_ctx / ratio], lyrics [N, n_tokens].
        `drop` (bool [N], guidance priors only) swaps in the learned null artist/genre and
        lyrics for those rows; timing and upper codes are kept."""
        c = self.config
        if drop is not None and not c.guidance:
            raise ValueError("this prior has no null conditioning (PriorConfig.guidance is "
                             "false): it was trained without train.cond_dropout")
        given = [t for t in (y, upper, lyrics) if t is not None]
        batch = given[0].shape[0] if given else 1  # an unconditioned start token broadcasts
        x_cond = None
        if c.labels:
            if y is None:
                raise ValueError("this prior is conditioned on labels: pass y")
            start, x_cond = self.y_emb(y)
        else:
            start = self.start_token.expand(batch, -1, -1)
        if drop is not None and c.labels:
            start = torch.where(drop[:, None, None], self.null_start.to(start.dtype), start)
        if c.upsampler:
            if upper is None or upper.shape[1] * self.upsample_ratio != c.n_ctx:
                got = None if upper is None else tuple(upper.shape)
                raise ValueError(
                    f"this upsampler needs upper-level codes [N, {c.n_ctx // self.upsample_ratio}]"
                    f", got {got}"
                )
            x_cond = self.conditioner(upper)
        if c.parallel or c.labels and c.labels_everywhere:  # parallel: no first position
            everywhere = start.expand(-1, c.n_ctx, -1)
            x_cond = everywhere if x_cond is None else x_cond + everywhere
        encoder_kv = lyrics_logits = None
        if c.lyrics != "none":
            if lyrics is None or lyrics.shape[1] != c.n_tokens:
                got = None if lyrics is None else tuple(lyrics.shape)
                raise ValueError(f"this prior needs a lyric window [N, {c.n_tokens}], got {got}")
            if c.lyrics == "encoder":
                encoder_kv, lyrics_logits = self.lyrics_encoder(lyrics)
                if drop is not None:
                    null = self.null_lyrics.to(encoder_kv.dtype).expand_as(encoder_kv)
                    encoder_kv = torch.where(drop[:, None, None], null, encoder_kv)
            elif x_cond is not None:  # single: no conditioning signal over the lyric prefix
                x_cond = torch.cat([x_cond.new_zeros(batch, c.n_tokens, c.width), x_cond], dim=1)
        return Conditioning(start, x_cond, encoder_kv, lyrics_logits)

    def window_inputs(
        self,
        song: SongConditions,
        hop_length: int,
        start: int,
        batch: int,
        upper: Tensor | None = None,
        null: bool = False,
    ) -> WindowInputs:
        """Conditioning of the window of this level that starts at code `start` of `song`, for
        `batch` samples: labels and timing for its offset, its lyric window, and for upsamplers
        the matching slice of `upper` (the level above's codes of the whole song, [batch, t];
        a song shorter than a window is padded). `hop_length` is this level's audio samples
        per code. Tensors are made on the prior's device."""
        c, device = self.config, self.embedding.x_emb.weight.device
        length, offset = c.n_ctx * hop_length, start * hop_length
        y = lyrics = upper_window = None
        lyric_start = 0
        if c.labels:
            y = label_vector(song.total_samples, offset, length, song.artist_id,
                             list(song.genre_ids))
            y = y[None].expand(batch, -1).to(device)
        if c.lyrics != "none":
            chars = lyric_window(list(song.lyric_tokens), song.total_samples, offset, length,
                                 c.n_tokens)
            lyrics = torch.tensor([chars.tokens] * batch, device=device)
            lyric_start = chars.start
        if c.upsampler:
            if upper is None:
                raise ValueError(f"prior level {c.level} is an upsampler: pass the upper codes")
            ratio = self.upsample_ratio
            piece = upper[:, start // ratio : (start + c.n_ctx) // ratio]
            missing = c.n_ctx // ratio - piece.shape[1]
            upper_window = F.pad(piece, (0, missing)).to(device)
        drop = torch.ones(batch, dtype=torch.bool, device=device) if null else None
        prefix = lyrics if c.lyrics == "single" else torch.zeros(
            batch, 0, dtype=torch.long, device=device)
        if null and c.lyrics == "single":
            prefix = torch.zeros_like(prefix)  # no lyrics: the prefix is all padding
        return WindowInputs(self.condition(y, upper_window, lyrics, drop), lyrics, lyric_start,
                            prefix)

    def sequence(self, codes: Tensor, lyrics: Tensor | None = None) -> Tensor:
        """The token sequence the Transformer models: music codes, after the lyric prefix (with
        codes shifted past the lyric vocabulary) in `single` mode."""
        if self.config.lyrics != "single":
            return codes
        return torch.cat([lyrics, codes + self.config.n_vocab], dim=1)

    # ------------------------------------------------------------------ full pass (training)
    def _head(self, h: Tensor, x_cond: Tensor | None) -> Tensor:
        if x_cond is not None and not self.config.merged_decoder:
            h = h + x_cond
        return self.x_out(h)

    def logits(self, tokens: Tensor, cond: Conditioning) -> Tensor:
        h = self.embedding(tokens, cond.start)
        if cond.x_cond is not None:
            h = h + cond.x_cond
        h = self.transformer(h, cond.encoder_kv)
        return self._head(h, cond.x_cond)

    def masked_logits(self, tokens: Tensor, cond: Conditioning) -> Tensor:
        """Parallel decoding: tokens [N, n_ctx] with `mask_id` where a code is hidden ->
        logits [N, n_ctx, bins] of every position at once, each seeing the whole window."""
        emb = self.embedding
        h = emb.x_emb(tokens) + emb.pos_emb[: tokens.shape[1]]
        if cond.x_cond is not None:
            h = h + cond.x_cond
        h = self.transformer(h, cond.encoder_kv)
        return self._head(h, cond.x_cond)[..., : self.config.bins]

    def _masked_forward(self, codes: Tensor, cond: Conditioning, mask: Tensor | None,
                        ) -> PriorOutput:
        """Loss in bits per hidden code: the known codes are given, not predicted."""
        if mask is None:
            mask = draw_training_mask(codes.shape[0], codes.shape[1])
        mask = mask.to(codes.device)
        if mask.shape != codes.shape or mask.dtype != torch.bool:
            raise ValueError(f"mask must be bool {tuple(codes.shape)}, got {mask.dtype} "
                             f"{tuple(mask.shape)}")
        logits = self.masked_logits(codes.masked_fill(mask, self.config.mask_id), cond)
        bits = F.cross_entropy(logits[mask].float(), codes[mask]) / math.log(2)
        return PriorOutput(logits, bits, {"masked_bits_per_code": bits.detach()})

    def forward(
        self,
        codes: Tensor,
        y: Tensor | None = None,
        upper: Tensor | None = None,
        lyrics: Tensor | None = None,
        drop: Tensor | None = None,
        mask: Tensor | None = None,
    ) -> PriorOutput:
        """codes [N, n_ctx] (+ conditioning) -> logits and the loss in bits per token. `drop`
        (bool [N]) trains those rows without artist/genre and lyrics (see `condition`).
        A parallel decoder predicts the codes hidden by `mask` (bool [N, n_ctx], True = hidden;
        default: drawn by `draw_training_mask` from the global random stream)."""
        c = self.config
        if codes.shape[1] != c.n_ctx:
            raise ValueError(f"expected {c.n_ctx} codes per window, got {codes.shape[1]}")
        if c.labels and y is not None:
            self.y_emb.check(y)  # song lengths, with a message that says what is valid
        cond = self.condition(y, upper, lyrics, drop)
        if c.parallel:
            return self._masked_forward(codes, cond, mask)
        seen = lyrics
        if drop is not None and c.lyrics == "single":
            seen = torch.where(drop[:, None], torch.zeros_like(lyrics), lyrics)
        tokens = self.sequence(codes, seen)
        logits = self.logits(tokens, cond)
        music_bits = F.cross_entropy(
            logits[:, -c.n_ctx :].float().flatten(0, 1), tokens[:, -c.n_ctx :].flatten()
        ) / math.log(2)
        metrics = {"music_bits_per_token": music_bits.detach()}
        loss = music_bits
        lyric_logits = None
        if c.lyrics == "encoder":
            lyric_logits = cond.lyrics_logits
        elif c.lyrics == "single":
            lyric_logits = logits[:, : c.n_tokens, : c.n_vocab]
            if drop is not None:  # rows without lyrics have none to predict
                lyric_logits, lyrics = lyric_logits[~drop], lyrics[~drop]
        if lyric_logits is not None and lyrics.numel():
            lyric_bits = F.cross_entropy(
                lyric_logits.float().flatten(0, 1), lyrics.flatten()
            ) / math.log(2)
            metrics["lyrics_bits_per_token"] = lyric_bits.detach()
            total = c.n_ctx + c.n_tokens
            loss = (c.prime_loss_fraction * lyric_bits * c.n_tokens + music_bits * c.n_ctx) / total
        return PriorOutput(logits, loss, metrics)

    # ------------------------------------------------------------------ cached pass (sampling)
    def init_caches(self, batch: int, device=None, dtype=None,
                    encoder_kv: Tensor | None = None) -> list[KVCache]:
        """Empty KV caches for one window of `batch` rows. Pass the window's `encoder_kv`
        (`Conditioning.encoder_kv`) to fill the encoder-decoder caches now: then the one-token
        step only reads them, and a compiled step compiles once."""
        return self.transformer.init_caches(batch, device, dtype, encoder_kv)

    @torch.no_grad()
    def logits_cached(
        self, tokens: Tensor, start: int, length: int, caches: list[KVCache], cond: Conditioning
    ) -> Tensor:
        """Logits of positions [start, start + length) given the caches of earlier positions.

        `tokens` holds the sequence so far (at least start + length - 1 ids). One-token steps
        (length 1) and chunked prefill (length > 1) give the full pass's logits.
        """
        h = self.embedding(tokens, cond.start, start, length)
        x_cond = None if cond.x_cond is None else cond.x_cond[:, start : start + length]
        if x_cond is not None:
            h = h + x_cond
        h = self.transformer.forward_cached(h, start, caches, cond.encoder_kv)
        return self._head(h, x_cond)

    @torch.no_grad()
    def logits_step(
        self, previous: Tensor, position: Tensor, caches: list[KVCache], cond: Conditioning
    ) -> Tensor:
        """Logits [N, vocab] of the token at `position` (0-dim long tensor) given the token
        before it (`previous` [N], ignored at position 0) and the caches: the static twin of
        `logits_cached(tokens, position, 1, ...)`, with no shape or branch depending on the
        position, so one step can be compiled or captured once and replayed for every token."""
        at = position.view(1)
        emb = self.embedding
        h = torch.where(position == 0, cond.start[:, 0].to(emb.x_emb.weight.dtype),
                        emb.x_emb(previous))
        h = (h + emb.pos_emb.index_select(0, at))[:, None]
        x_cond = None if cond.x_cond is None else cond.x_cond.index_select(1, at)
        if x_cond is not None:
            h = h + x_cond
        h = self.transformer.forward_step(h, position, caches, cond.encoder_kv)
        return self._head(h, x_cond)[:, 0]

