"""Jukebox's factorised (sparse) self-attention as fused kernels on reshaped views (reference §4).

A length-n sequence is a grid of `blocks` rows x `block_ctx` columns. Every sparse type is ONE
attention call on a reshaped view of q, k, v, so memory grows with n * block_ctx, never n^2:
row folds the rows into the batch, column transposes the grid first, previous-row pairs each
row's queries with the previous row's keys. No n x n mask is ever built.

Weight layout matches Jukebox one to one (§8.4): `c_attn` W -> 3*n_state ([q | k | v]; head h owns
columns [h*d, (h+1)*d) of each third), `c_proj` n_state -> W; encoder-decoder layers have a
queries-only `c_attn` W -> n_state and `c_enc_kv` encoder_width -> 2*n_state ([k | v]). Jukebox's
`Conv1D.w` is stored (in, out), so the importer loads `linear.weight = conv1d_w.T`, `bias = b`.

Sampling keeps a per-type KV cache (§4.4) written in place; `forward_cached` handles one-token
steps and chunked prefill at any offset, and matches `forward` exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class AttnType(IntEnum):
    """Jukebox's `attn_func` ids (§4.1)."""

    DENSE = 0  # all j <= p
    ROW = 1  # j in p's own row, j <= p
    COLUMN = 2  # j in p's column (j = p mod block_ctx), j <= p
    PREV_ROW = 3  # the whole previous row (row 0 sees zero keys/values: output 0)
    SUMMARY = 4  # unused by released models; not implemented
    SUMMARY_SPREAD = 5  # unused by released models; not implemented
    ENC_DEC = 6  # every lyric-encoder position, no mask
    PRIME = 7  # j < prime_keys and j <= p (lyric prefix of the single-stack lyrics prior)


_GRID_TYPES = (AttnType.ROW, AttnType.COLUMN, AttnType.PREV_ROW)
_R, _C, _P = AttnType.ROW, AttnType.COLUMN, AttnType.PREV_ROW

# attn_order -> the cycle of types indexed by d % len(cycle) (§4.2); 11 and 12 are special-cased.
_CYCLES: dict[int, list[int]] = {
    0: [0],
    1: [1, 2],
    2: [1, 2, 3],
    3: [1, 4],
    4: [1, 5],
    5: [1, 4, 1, 1],
    6: [1, 2, 3, 6],
    7: [1, 2, 3] * 5 + [6],
    8: [1, 2, 3, 1, 2, 3, 1, 2, 3, 6],
    9: [1, 2, 3, 0],
    10: [1, 2, 3] * 3 + ([1, 2, 3] * 3 + [6]) * 7,  # 79 entries: prior_5b_lyrics
}


def attention_schedule(attn_order: int, depth: int) -> list[AttnType]:
    """Per-layer attention types for `depth` layers, exactly as Jukebox's `attn_order` (§4.2).

    Orders 11/12 replace the factorised type at every layer d with d % 16 == 15 by
    [6, 6, 0] / [7, 7, 0][d % 3], which is why prior_1b_lyrics has a lone dense layer at 47.
    """
    if depth < 0:
        raise ValueError(f"depth must be >= 0, got {depth}")
    if attn_order in _CYCLES:
        cycle = _CYCLES[attn_order]
        return [AttnType(cycle[d % len(cycle)]) for d in range(depth)]
    if attn_order in (11, 12):
        special = [6, 6, 0] if attn_order == 11 else [7, 7, 0]
        return [
            AttnType(special[d % 3] if d % 16 == 15 else [1, 2, 3][d % 3]) for d in range(depth)
        ]
    raise ValueError(f"unknown attn_order {attn_order}; Jukebox defines 0..12")


def prime_keys(prime_len: int, blocks: int, n_ctx: int) -> int:
    """How many leading positions a PRIME layer attends to.

    Jukebox rounds `prime_len` up past the next multiple of `blocks` (the row count, not
    block_ctx): (384 // 64 + 1) * 64 = 448, so prior_1b_lyrics' prime layers also see 64 music
    tokens. Reproduced for checkpoint fidelity.
    """
    return min(n_ctx, (prime_len // blocks + 1) * blocks)


# ----------------------------------------------------------------------------------------------
# Backend: one fused call per layer.


_XFORMERS: bool | None = None  # whether `import xformers.ops` works; tried once per process


def _xformers_imports() -> bool:
    """Try `import xformers.ops` once and remember the answer: a failed import is slow (a
    search of sys.path) and would otherwise repeat on every attention call of every step."""
    global _XFORMERS
    if _XFORMERS is None:
        try:
            import xformers.ops  # noqa: F401
        except Exception:  # ImportError, or a broken build raising at import time
            _XFORMERS = False
        else:
            _XFORMERS = True
    return _XFORMERS


def attention_backend(device: torch.device) -> str:
    """ "xformers" on CUDA when it imports, else "sdpa"; decided on first use and cached, so a
    compiled step sees a constant (call it once before compiling). Tests monkeypatch this to
    force a backend."""
    if device.type != "cuda":
        return "sdpa"
    return "xformers" if _xformers_imports() else "sdpa"


def _attend(q: Tensor, k: Tensor, v: Tensor, causal: bool = False, mask: Tensor | None = None):
    """q [B, Lq, H, d], k/v [B, Lk, H, d] -> [B, Lq, H, d], softmax(q k^T / sqrt(d)) v.

    `causal` is top-left aligned (query i sees keys j <= i) in both backends; `mask` is boolean
    (True = visible), broadcastable to [B, H, Lq, Lk], and always small (see callers).
    """
    if mask is None and attention_backend(q.device) == "xformers":
        try:
            return attend_with("xformers", q, k, v, causal)
        except (NotImplementedError, ValueError):  # e.g. a head dim no kernel supports
            pass
    return attend_with("sdpa", q, k, v, causal, mask)


def attend_with(backend: str, q: Tensor, k: Tensor, v: Tensor, causal: bool = False,
                mask: Tensor | None = None) -> Tensor:
    """`_attend` through one named backend, without falling back to the other: what the GPU
    check (`jukelite bench gpu`) compares against a float64 reference."""
    if backend == "xformers":
        if mask is not None:
            raise ValueError("the xformers path takes no mask (masked calls go to sdpa)")
        import xformers.ops as xops

        bias = xops.LowerTriangularMask() if causal else None
        return xops.memory_efficient_attention(q, k, v, attn_bias=bias)
    if backend != "sdpa":
        raise ValueError(f"attention backend must be 'sdpa' or 'xformers', got {backend!r}")
    out = F.scaled_dot_product_attention(
        q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=mask, is_causal=causal
    )
    return out.transpose(1, 2)


def _attend_from(q: Tensor, k: Tensor, v: Tensor, q_start: int) -> Tensor:
    """Causal attention where queries sit at positions q_start.. and keys at 0.. (dim 1).

    Used by the cached paths; the mask is at most (chunk length x cached keys).
    """
    t, s = q.shape[1], k.shape[1]
    if q_start == 0:
        return _attend(q, k, v, causal=True)
    if q_start >= s - 1:  # every key is at or before the first query
        return _attend(q, k, v)
    pos_q = torch.arange(q_start, q_start + t, device=q.device)
    mask = torch.arange(s, device=q.device)[None, :] <= pos_q[:, None]
    return _attend(q, k, v, mask=mask)


# The training-path views; all take and return [N, T, H, d].


def _row(q: Tensor, k: Tensor, v: Tensor, block_ctx: int, causal: bool = True) -> Tensor:
    """Fold rows into the batch: attention inside each row (causal, or the whole row)."""
    n, t, h, d = q.shape

    def fold(x: Tensor) -> Tensor:
        return x.reshape(n * (t // block_ctx), block_ctx, h, d)

    return _attend(fold(q), fold(k), fold(v), causal=causal).reshape(n, t, h, d)


def _column(q: Tensor, k: Tensor, v: Tensor, block_ctx: int, causal: bool = True) -> Tensor:
    """Transpose the grid and fold columns into the batch: attention down each column (causal,
    or the whole column)."""
    n, t, h, d = q.shape
    rows = t // block_ctx

    def fold(x: Tensor) -> Tensor:
        x = x.reshape(n, rows, block_ctx, h, d).transpose(1, 2)
        return x.reshape(n * block_ctx, rows, h, d)

    out = _attend(fold(q), fold(k), fold(v), causal=causal)
    return out.reshape(n, block_ctx, rows, h, d).transpose(1, 2).reshape(n, t, h, d)


def _prev_row(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    block_ctx: int,
    k0: Tensor | None = None,
    v0: Tensor | None = None,
) -> Tensor:
    """Row r's queries over all of row r-1's keys, unmasked.

    Row 0's "previous row" is `k0`/`v0` [N, block_ctx, H, d] (zeros, as in Jukebox, unless a
    cached row is passed), so training row 0 averages zero values: output exactly 0.
    """
    n, t, h, d = q.shape
    rows = t // block_ctx

    def shift(x: Tensor, first: Tensor | None) -> Tensor:
        x = x.reshape(n, rows, block_ctx, h, d)
        first = x.new_zeros(n, 1, block_ctx, h, d) if first is None else first[:, None]
        return torch.cat([first, x[:, :-1]], dim=1).reshape(n * rows, block_ctx, h, d)

    out = _attend(q.reshape(n * rows, block_ctx, h, d), shift(k, k0), shift(v, v0))
    return out.reshape(n, t, h, d)


def _pad_time(x: Tensor, front: int, back: int) -> Tensor:
    """Zero-pad dim 1 of [N, T, H, d]."""
    return F.pad(x, (0, 0, 0, 0, front, back))


@dataclass
class KVCache:
    """One layer's sampling state: `key`/`value` [N, slots, H, d], written in place.

    Slots per type: dense n_ctx; row block_ctx (the current row); column n_ctx (a column needs
    every earlier row); previous-row 2*block_ctx (a ring of the previous and current row, slot
    = position % (2*block_ctx)); prime prime_keys; enc-dec the encoder's projected k/v, set when
    the cache is made with `encoder_kv`, else on first use (None until then: a compiled step
    should get it filled up front, or its first call sets it and the next one recompiles).
    """

    key: Tensor | None
    value: Tensor | None


class SparseAttention(nn.Module):
    """One Jukebox attention layer of a fixed type: x [N, T, W] -> [N, T, W]."""

    def __init__(
        self,
        width: int,
        n_state: int,
        heads: int,
        n_ctx: int,
        attn_type: AttnType | int,
        blocks: int | None = None,
        encoder_width: int | None = None,
        prime_len: int | None = None,
        zero_out: bool = False,
        init_scale: float = 1.0,
        causal: bool = True,
    ) -> None:
        super().__init__()
        attn_type = AttnType(attn_type)
        if not causal and attn_type == AttnType.PRIME:
            raise ValueError("PRIME attention (a lyric prefix) has no bidirectional form")
        # causal=False (parallel decoders): dense, row and column attention see the whole
        # sequence, row or column; previous-row attention is unmasked either way
        self.causal = causal
        if attn_type in (AttnType.SUMMARY, AttnType.SUMMARY_SPREAD):
            raise NotImplementedError(f"{attn_type.name} attention is unused by released models")
        if n_state % heads:
            raise ValueError(f"n_state {n_state} is not divisible by heads {heads}")
        self.attn_type, self.n_state, self.heads, self.n_ctx = attn_type, n_state, heads, n_ctx
        self.head_dim = n_state // heads
        self.blocks = blocks
        self.block_ctx: int | None = None
        if attn_type in (*_GRID_TYPES, AttnType.PRIME):
            if not blocks or n_ctx % blocks:
                raise ValueError(
                    f"{attn_type.name} needs blocks dividing n_ctx={n_ctx}, got {blocks}"
                )
            self.block_ctx = n_ctx // blocks
        self.prime_keys: int | None = None
        if attn_type == AttnType.PRIME:
            if prime_len is None:
                raise ValueError("PRIME attention needs prime_len")
            self.prime_keys = prime_keys(prime_len, blocks, n_ctx)

        std = 0.02 * init_scale
        if attn_type == AttnType.ENC_DEC:
            self.c_attn = nn.Linear(width, n_state)  # queries only
            self.c_enc_kv = nn.Linear(encoder_width or width, 2 * n_state)
        else:
            self.c_attn = nn.Linear(width, 3 * n_state)
        self.c_proj = nn.Linear(n_state, width)
        for layer in self.modules():
            if isinstance(layer, nn.Linear):
                nn.init.normal_(layer.weight, std=std)
                nn.init.zeros_(layer.bias)
        if zero_out:
            nn.init.zeros_(self.c_proj.weight)

    def _split_heads(self, x: Tensor) -> Tensor:
        return x.unflatten(-1, (self.heads, self.head_dim))

    def _qkv(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        q, k, v = self.c_attn(x).chunk(3, dim=-1)
        return self._split_heads(q), self._split_heads(k), self._split_heads(v)

    def _encoder_kv(self, encoder_kv: Tensor | None) -> tuple[Tensor, Tensor]:
        if encoder_kv is None:
            raise ValueError("ENC_DEC attention needs encoder_kv")
        k, v = self.c_enc_kv(encoder_kv).chunk(2, dim=-1)
        return self._split_heads(k), self._split_heads(v)

    def forward(self, x: Tensor, encoder_kv: Tensor | None = None) -> Tensor:
        """Full-sequence (training) pass. Grid types need T a multiple of block_ctx, <= n_ctx;
        when causal, a prefix gives the same outputs as the full sequence."""
        n, t, _ = x.shape
        kind = self.attn_type
        if kind == AttnType.ENC_DEC:
            k, v = self._encoder_kv(encoder_kv)
            out = _attend(self._split_heads(self.c_attn(x)), k, v)
            return self.c_proj(out.reshape(n, t, self.n_state))
        if kind in _GRID_TYPES and (t % self.block_ctx or t > self.n_ctx):
            raise ValueError(
                f"{kind.name} attention needs T a multiple of block_ctx={self.block_ctx} "
                f"and <= n_ctx={self.n_ctx}, got T={t}"
            )
        q, k, v = self._qkv(x)
        if kind == AttnType.DENSE:
            out = _attend(q, k, v, causal=self.causal)
        elif kind == AttnType.ROW:
            out = _row(q, k, v, self.block_ctx, self.causal)
        elif kind == AttnType.COLUMN:
            out = _column(q, k, v, self.block_ctx, self.causal)
        elif kind == AttnType.PREV_ROW:
            out = _prev_row(q, k, v, self.block_ctx)
        else:  # PRIME: keys truncated to the lyric prefix, top-left causal
            p = min(t, self.prime_keys)
            out = _attend(q, k[:, :p], v[:, :p], causal=True)
        return self.c_proj(out.reshape(n, t, self.n_state))

    # ------------------------------------------------------------------------------------------
    # Sampling.

    def init_cache(
        self, batch: int, device: torch.device | str | None = None,
        dtype: torch.dtype | None = None, encoder_kv: Tensor | None = None,
    ) -> KVCache:
        """Preallocate this layer's KV cache (sizes in `KVCache`); one cache per sampling window.
        An encoder-decoder layer given `encoder_kv` projects it now, so no step has to."""
        if not self.causal:
            raise ValueError("a bidirectional attention layer has no KV cache: a parallel "
                             "decoder predicts every position of a window at once")
        device = self.c_attn.weight.device if device is None else device
        dtype = self.c_attn.weight.dtype if dtype is None else dtype
        slots = {
            AttnType.DENSE: self.n_ctx,
            AttnType.ROW: self.block_ctx,
            AttnType.COLUMN: self.n_ctx,
            AttnType.PREV_ROW: 2 * (self.block_ctx or 0),
            AttnType.PRIME: self.prime_keys,
        }.get(self.attn_type)
        if slots is None:  # ENC_DEC: the projected encoder states, now or on first use
            return KVCache(None, None) if encoder_kv is None else KVCache(
                *self._encoder_kv(encoder_kv))
        shape = (batch, slots, self.heads, self.head_dim)
        return KVCache(
            torch.zeros(shape, device=device, dtype=dtype),
            torch.zeros(shape, device=device, dtype=dtype),
        )

    @torch.no_grad()
    def forward_cached(
        self, x: Tensor, start: int, cache: KVCache, encoder_kv: Tensor | None = None
    ) -> Tensor:
        """Positions [start, start+t), given the cache of earlier ones: x [N, t, W] -> [N, t, W].

        One-token steps (t = 1) read cache views with no copies; chunks (t > 1, any start, may
        cross rows) run one fused call on a row-aligned view. Writes this chunk's keys/values.
        """
        n, t, _ = x.shape
        end = start + t
        kind = self.attn_type
        if kind == AttnType.ENC_DEC:
            if cache.key is None:
                cache.key, cache.value = self._encoder_kv(encoder_kv)
            out = _attend(self._split_heads(self.c_attn(x)), cache.key, cache.value)
            return self.c_proj(out.reshape(n, t, self.n_state))
        if start < 0 or end > self.n_ctx:
            raise ValueError(f"positions [{start}, {end}) fall outside n_ctx={self.n_ctx}")
        q, k, v = self._qkv(x)
        step = {
            AttnType.DENSE: self._cached_dense,
            AttnType.ROW: self._cached_row,
            AttnType.COLUMN: self._cached_column,
            AttnType.PREV_ROW: self._cached_prev_row,
            AttnType.PRIME: self._cached_prime,
        }[kind]
        out = step(q, k, v, start, cache)
        return self.c_proj(out.reshape(n, t, self.n_state))

    def _cached_dense(self, q: Tensor, k: Tensor, v: Tensor, start: int, cache: KVCache) -> Tensor:
        end = start + q.shape[1]
        cache.key[:, start:end], cache.value[:, start:end] = k, v
        return _attend_from(q, cache.key[:, :end], cache.value[:, :end], start)

    def _cached_prime(self, q: Tensor, k: Tensor, v: Tensor, start: int, cache: KVCache) -> Tensor:
        end = start + q.shape[1]
        stop = min(end, self.prime_keys)  # keys past the prefix are never attended to
        if stop > start:
            cache.key[:, start:stop] = k[:, : stop - start]
            cache.value[:, start:stop] = v[:, : stop - start]
        return _attend_from(q, cache.key[:, :stop], cache.value[:, :stop], start)

    def _cached_row(self, q: Tensor, k: Tensor, v: Tensor, start: int, cache: KVCache) -> Tensor:
        bc, t = self.block_ctx, q.shape[1]
        end, off = start + t, start % bc
        if t == 1:
            cache.key[:, off], cache.value[:, off] = k[:, 0], v[:, 0]
            return _attend(q, cache.key[:, : off + 1], cache.value[:, : off + 1])
        # The current row's cached prefix + the chunk is a row-aligned timeline; pad to whole rows.
        pad = -(off + t) % bc
        kt = _pad_time(torch.cat([cache.key[:, :off], k], dim=1), 0, pad)
        vt = _pad_time(torch.cat([cache.value[:, :off], v], dim=1), 0, pad)
        out = _row(_pad_time(q, off, pad), kt, vt, bc)[:, off : off + t]
        lo = max(end - end % bc, start)  # keep the (partial) row that `end` falls in
        cache.key[:, lo % bc : lo % bc + end - lo] = k[:, lo - start :]
        cache.value[:, lo % bc : lo % bc + end - lo] = v[:, lo - start :]
        return out

    def _cached_column(self, q: Tensor, k: Tensor, v: Tensor, start: int, cache: KVCache) -> Tensor:
        bc, (n, t, h, d) = self.block_ctx, q.shape
        end = start + t
        cache.key[:, start:end], cache.value[:, start:end] = k, v
        if t == 1:
            col = slice(start % bc, end, bc)  # strided view: this column, rows 0..current
            return _attend(q, cache.key[:, col], cache.value[:, col])
        # Queries of rows r0..rows-1 (padded to whole rows) over keys of rows 0..rows-1; slots
        # past `end` are later positions, hidden by the causal mask (at most rows x rows).
        r0, rows = start // bc, -(-end // bc)
        qt = _pad_time(q, start - r0 * bc, rows * bc - end)

        def fold(x: Tensor, n_rows: int) -> Tensor:
            x = x.reshape(n, n_rows, bc, h, d).transpose(1, 2)
            return x.reshape(n * bc, n_rows, h, d)

        out = _attend_from(
            fold(qt, rows - r0),
            fold(cache.key[:, : rows * bc], rows),
            fold(cache.value[:, : rows * bc], rows),
            r0,
        )
        out = out.reshape(n, bc, rows - r0, h, d).transpose(1, 2).reshape(n, -1, h, d)
        return out[:, start - r0 * bc : start - r0 * bc + t]

    def _ring(self, row: int) -> slice:
        """Slots of `row` in the previous-row cache's two-row ring."""
        return slice((row % 2) * self.block_ctx, (row % 2 + 1) * self.block_ctx)

    def _cached_prev_row(
        self, q: Tensor, k: Tensor, v: Tensor, start: int, cache: KVCache
    ) -> Tensor:
        bc, t = self.block_ctx, q.shape[1]
        end, r0 = start + t, start // bc
        if t == 1:
            # Row 0's previous row is zero keys/values in Jukebox: the output is exactly 0.
            if r0 == 0:
                out = torch.zeros_like(q)
            else:
                prev = self._ring(r0 - 1)
                out = _attend(q, cache.key[:, prev], cache.value[:, prev])
        else:
            base, rows = r0 * bc, -(-end // bc)
            pad = rows * bc - end
            ring = self._ring(r0)
            kt = _pad_time(torch.cat([cache.key[:, ring][:, : start - base], k], dim=1), 0, pad)
            vt = _pad_time(torch.cat([cache.value[:, ring][:, : start - base], v], dim=1), 0, pad)
            k0 = cache.key[:, self._ring(r0 - 1)] if r0 else None
            v0 = cache.value[:, self._ring(r0 - 1)] if r0 else None
            out = _prev_row(_pad_time(q, start - base, pad), kt, vt, bc, k0, v0)
            out = out[:, start - base : start - base + t]
        # Keep the last two rows touched: the next query's previous row and its own row.
        for row in range(max(r0, (end - 1) // bc - 1), (end - 1) // bc + 1):
            lo, hi = max(start, row * bc), min(end, (row + 1) * bc)
            slots = slice((row % 2) * bc + lo - row * bc, (row % 2) * bc + hi - row * bc)
            cache.key[:, slots] = k[:, lo - start : hi - start]
            cache.value[:, slots] = v[:, lo - start : hi - start]
        return out

    # ------------------------------------------------------------------------------------------
    # Static one-token step: the same maths with the position as a tensor, fixed shapes and no
    # Python branching on it, so torch.compile builds one graph for every position.

    @torch.no_grad()
    def forward_step(
        self, x: Tensor, position: Tensor, cache: KVCache, encoder_kv: Tensor | None = None
    ) -> Tensor:
        """One token at `position` (a 0-dim long tensor): x [N, 1, W] -> [N, 1, W].

        Every type attends over its whole preallocated cache with a visibility mask instead of
        a slice, and writes its key/value with index_copy_, so shapes never depend on the
        position. Equal to `forward_cached(x, int(position), cache)` (tested).
        """
        n = x.shape[0]
        kind = self.attn_type
        if kind == AttnType.ENC_DEC:
            if cache.key is None:
                cache.key, cache.value = self._encoder_kv(encoder_kv)
            out = _attend(self._split_heads(self.c_attn(x)), cache.key, cache.value)
            return self.c_proj(out.reshape(n, 1, self.n_state))
        q, k, v = self._qkv(x)
        slots = cache.key.shape[1]
        index = torch.arange(slots, device=x.device)
        keep = None  # 0/1 factor on the output (previous-row attention in row 0)
        if kind == AttnType.ROW:
            write, visible = position % self.block_ctx, index <= position % self.block_ctx
        elif kind == AttnType.PREV_ROW:
            row = position // self.block_ctx
            write = position % slots
            visible = index // self.block_ctx == (row - 1) % 2
            keep = (row > 0).to(q.dtype)
        elif kind == AttnType.PRIME:  # keys past the lyric prefix are never written or read
            write = position.clamp(max=slots - 1)
            written = position < slots
            k = torch.where(written, k, cache.key.index_select(1, write.view(1)))
            v = torch.where(written, v, cache.value.index_select(1, write.view(1)))
            visible = index <= position
        else:  # DENSE and COLUMN: every position has its own slot
            write, visible = position, index <= position
        cache.key.index_copy_(1, write.view(1), k)
        cache.value.index_copy_(1, write.view(1), v)
        keys, values = cache.key, cache.value
        if kind == AttnType.COLUMN:  # this column's slot in every row
            rows = torch.arange(self.blocks, device=x.device)
            column = position % self.block_ctx + rows * self.block_ctx
            keys, values = keys.index_select(1, column), values.index_select(1, column)
            visible = rows <= position // self.block_ctx
        # A row with nothing visible (previous-row in row 0) would give NaN: show it one key
        # and zero its output afterwards, as Jukebox's zero previous row does.
        if keep is not None:
            visible = visible | (index == 0) & (keep == 0)
        out = _attend(q, keys, values, mask=visible[None, None, None, :])
        if keep is not None:
            out = out * keep
        return self.c_proj(out.reshape(n, 1, self.n_state))

