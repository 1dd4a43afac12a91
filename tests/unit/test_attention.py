"""Sparse attention vs a slow dense-mask reference built from each type's definition (ref. §4)."""

from __future__ import annotations

import sys
import types

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from jukelite.prior import attention as attn_mod
from jukelite.prior.attention import AttnType, SparseAttention, attention_schedule, prime_keys

pytestmark = pytest.mark.usefixtures("single_thread")

T = AttnType
SELF_TYPES = [T.DENSE, T.ROW, T.COLUMN, T.PREV_ROW, T.PRIME]


# ----------------------------------------------------------------------------------------------
# The slow reference: an explicit n x n mask from the definitions of §4.1, plain softmax.


def allowed(kind: AttnType, n: int, block_ctx: int = 1, n_prime: int = 0,
            causal_layer: bool = True) -> torch.Tensor:
    """[n, n] bool: may query p (row) read key j (column)? A bidirectional layer
    (`causal_layer` False, parallel decoders) drops the j <= p condition."""
    p = torch.arange(n)[:, None]
    j = torch.arange(n)[None, :]
    causal = j <= p if causal_layer else torch.ones(n, n, dtype=torch.bool)
    if kind == T.DENSE:
        return causal
    if kind == T.ROW:
        return causal & (j // block_ctx == p // block_ctx)
    if kind == T.COLUMN:
        return causal & (j % block_ctx == p % block_ctx)
    if kind == T.PREV_ROW:  # the whole previous row, nothing of the own row
        return j // block_ctx == p // block_ctx - 1
    if kind == T.PRIME:
        return causal & (j < n_prime)
    raise AssertionError(kind)


def reference(layer: SparseAttention, x: torch.Tensor, enc: torch.Tensor | None = None):
    """Plain attention with an explicit mask; a query with no visible key outputs 0 (Jukebox
    attends to zero keys/values there)."""
    n, t, _ = x.shape
    h, d = layer.heads, layer.head_dim
    wa, ba = layer.c_attn.weight, layer.c_attn.bias
    if layer.attn_type == T.ENC_DEC:
        q = x @ wa.T + ba
        k, v = (enc @ layer.c_enc_kv.weight.T + layer.c_enc_kv.bias).split(layer.n_state, -1)
        mask = torch.ones(t, enc.shape[1], dtype=torch.bool)
    else:
        q, k, v = (x @ wa.T + ba).split(layer.n_state, -1)
        mask = allowed(layer.attn_type, t, layer.block_ctx or 1, layer.prime_keys or 0,
                       layer.causal)

    def heads(z: torch.Tensor) -> torch.Tensor:
        return z.reshape(n, -1, h, d).permute(0, 2, 1, 3)

    logits = heads(q) @ heads(k).transpose(-1, -2) / d**0.5
    any_key = mask.any(-1, keepdim=True)
    w = torch.softmax(logits.masked_fill(~(mask | ~any_key), float("-inf")), -1) * any_key
    out = (w @ heads(v)).permute(0, 2, 1, 3).reshape(n, t, layer.n_state)
    return out @ layer.c_proj.weight.T + layer.c_proj.bias


def make(kind, n_ctx, blocks, heads=2, n_state=10, width=16, prime_len=None, enc_width=None,
         causal=True):
    torch.manual_seed(int(kind) * 1000 + n_ctx * 10 + blocks)
    return SparseAttention(
        width,
        n_state,
        heads,
        n_ctx,
        kind,
        blocks=blocks,
        encoder_width=enc_width,
        prime_len=prime_len,
        init_scale=10.0,
        causal=causal,
    )


# (n_ctx, blocks, heads, n_state, prime_len): odd head dims 5, 7, 3; blocks 1 and n_ctx as edges.
CONFIGS = [
    (12, 3, 2, 10, 2),
    (16, 4, 2, 14, 3),
    (24, 6, 3, 9, 7),
    (8, 1, 3, 15, 4),
    (8, 8, 2, 6, 5),
]


def _check_close(fast: torch.Tensor, slow: torch.Tensor, params: list, inputs: list) -> None:
    torch.testing.assert_close(fast, slow, atol=1e-5, rtol=1e-5)
    g = torch.randn_like(fast)
    grads_fast = torch.autograd.grad(fast, inputs + params, g)
    grads_slow = torch.autograd.grad(slow, inputs + params, g)
    for a, b in zip(grads_fast, grads_slow, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", SELF_TYPES, ids=lambda k: k.name)
@pytest.mark.parametrize("config", CONFIGS, ids=str)
def test_matches_reference_forward_and_grads(kind, config):
    n_ctx, blocks, heads, n_state, prime_len = config
    layer = make(kind, n_ctx, blocks, heads, n_state, prime_len=prime_len)
    x = torch.randn(2, n_ctx, 16, requires_grad=True)
    _check_close(layer(x), reference(layer, x), list(layer.parameters()), [x])


@pytest.mark.parametrize("kind", [T.DENSE, T.ROW, T.COLUMN, T.PREV_ROW], ids=lambda k: k.name)
@pytest.mark.parametrize("config", CONFIGS, ids=str)
def test_bidirectional_matches_reference_forward_and_grads(kind, config):
    n_ctx, blocks, heads, n_state, _ = config
    layer = make(kind, n_ctx, blocks, heads, n_state, causal=False)
    x = torch.randn(2, n_ctx, 16, requires_grad=True)
    _check_close(layer(x), reference(layer, x), list(layer.parameters()), [x])
    block_ctx = n_ctx // blocks  # the last key position 0 may now read, in its row or column
    later = {T.DENSE: n_ctx - 1, T.ROW: block_ctx - 1, T.COLUMN: n_ctx - block_ctx}.get(kind, 0)
    if later:
        changed = x.detach().clone()
        changed[:, later] += 1.0
        assert not torch.allclose(layer(changed)[:, 0], layer(x)[:, 0])


def test_bidirectional_layers_have_no_cache_and_no_prime_form():
    with pytest.raises(ValueError, match="bidirectional attention layer has no KV cache"):
        make(T.ROW, 8, 2, causal=False).init_cache(1)
    with pytest.raises(ValueError, match="PRIME attention .* has no bidirectional form"):
        make(T.PRIME, 8, 2, prime_len=3, causal=False)


def test_enc_dec_matches_reference_any_length():
    layer = make(T.ENC_DEC, 24, 1, heads=3, n_state=9, enc_width=10)
    x = torch.randn(2, 7, 16, requires_grad=True)
    enc = torch.randn(2, 5, 10, requires_grad=True)
    _check_close(layer(x, enc), reference(layer, x, enc), list(layer.parameters()), [x, enc])


def test_prime_keys_quirk():
    assert prime_keys(384, 64, 6528) == 448  # prior_1b_lyrics: lyrics + 64 music tokens
    assert prime_keys(3, 4, 16) == 4
    assert prime_keys(30, 4, 16) == 16  # never more keys than the context
    assert make(T.PRIME, 24, 6, prime_len=7).prime_keys == 12


# ----------------------------------------------------------------------------------------------
# Which input positions reach each output (autograd), against §4.1's diagram.

# Reference §4.1, 16 tokens, blocks=4, prime_len 3 -> 4; rows q00, q03, q04, q07, q13.
DIAGRAM = {
    T.ROW: ["x...............", "xxxx............", "....x...........", "....xxxx........",
            "............xx.."],
    T.COLUMN: ["x...............", "...x............", "x...x...........", "...x...x........",
               ".x...x...x...x.."],
    T.PREV_ROW: ["................", "................", "xxxxx...........", "xxxx...x........",
                 "........xxxx.x.."],
    T.PRIME: ["x...............", "xxxx............", "xxxxx...........", "xxxx...x........",
              "xxxx.........x.."],
}  # fmt: skip


def dependency_map(layer: SparseAttention, n: int) -> torch.Tensor:
    """[n, n] bool: does output position p (row) depend on input position j (column)?"""
    x = torch.randn(1, n, 16, requires_grad=True)
    out = layer(x)
    rows = [torch.autograd.grad(out[0, p].sum(), x, retain_graph=True)[0][0] for p in range(n)]
    return torch.stack(rows).abs().sum(-1) > 0


@pytest.mark.parametrize("kind", list(DIAGRAM), ids=lambda k: k.name)
def test_dependency_map_matches_reference_diagram(kind):
    deps = dependency_map(make(kind, 16, 4, prime_len=3), 16)
    for p, row in zip([0, 3, 4, 7, 13], DIAGRAM[kind], strict=True):
        assert "".join("x" if b else "." for b in deps[p].tolist()) == row, p


@pytest.mark.parametrize("kind", SELF_TYPES, ids=lambda k: k.name)
def test_dependency_map_is_allowed_keys_plus_own_query(kind):
    n, blocks = 24, 4
    layer = make(kind, n, blocks, prime_len=5)
    mask = allowed(kind, n, n // blocks, layer.prime_keys or 0)
    expected = mask | (torch.eye(n, dtype=torch.bool) & mask.any(-1, keepdim=True))
    assert torch.equal(dependency_map(layer, n), expected)


# ----------------------------------------------------------------------------------------------
# KV cache: one-token steps and chunked prefill reproduce the full forward pass.


def random_chunks(n: int, max_chunk: int, seed: int) -> list[int]:
    gen = torch.Generator().manual_seed(seed)
    sizes, total = [], 0
    while total < n:
        size = min(int(torch.randint(1, max_chunk + 1, (1,), generator=gen)), n - total)
        sizes.append(size)
        total += size
    return sizes


def run_cached(module, x: torch.Tensor, sizes: list[int], enc=None) -> torch.Tensor:
    cache = module.init_cache(x.shape[0])
    outs, start = [], 0
    for size in sizes:
        outs.append(module.forward_cached(x[:, start : start + size], start, cache, enc))
        start += size
    return torch.cat(outs, 1)


CACHE_CASES = [(T.DENSE, 24, 4), (T.ROW, 24, 4), (T.ROW, 12, 1), (T.COLUMN, 24, 4),
               (T.COLUMN, 30, 5), (T.PREV_ROW, 24, 4), (T.PREV_ROW, 30, 6), (T.PRIME, 24, 4),
               (T.PRIME, 30, 5), (T.ENC_DEC, 24, 1)]  # fmt: skip


@pytest.mark.parametrize("case", CACHE_CASES, ids=lambda c: f"{c[0].name}-{c[1]}-{c[2]}")
def test_cached_decoding_and_chunked_prefill_match_forward(case):
    kind, n_ctx, blocks = case
    layer = make(kind, n_ctx, blocks, heads=3, n_state=15, prime_len=5, enc_width=16)
    x = torch.randn(2, n_ctx, 16)
    enc = torch.randn(2, 5, 16)
    with torch.no_grad():
        full = layer(x, enc)
    bc = n_ctx // blocks
    plans = [[1] * n_ctx, [n_ctx], [bc - 1, 2 * bc + 2, 1, n_ctx]]
    plans += [random_chunks(n_ctx, 2 * bc + 1, seed) for seed in range(3)]
    for sizes in plans:
        sizes = _clip(sizes, n_ctx)
        torch.testing.assert_close(run_cached(layer, x, sizes, enc), full, atol=1e-5, rtol=1e-5)


def _clip(sizes: list[int], n: int) -> list[int]:
    out, total = [], 0
    for s in sizes:
        s = min(s, n - total)
        if s > 0:
            out.append(s)
            total += s
    return out


def test_cache_sizes_per_type():
    n_ctx, blocks = 24, 4
    expected = {T.DENSE: 24, T.ROW: 6, T.COLUMN: 24, T.PREV_ROW: 12, T.PRIME: 8}
    for kind, slots in expected.items():
        cache = make(kind, n_ctx, blocks, prime_len=5).init_cache(3)
        assert cache.key.shape == cache.value.shape == (3, slots, 2, 5)
    enc_cache = make(T.ENC_DEC, n_ctx, 1).init_cache(3)
    assert enc_cache.key is None  # filled from encoder_kv on first use


class TinyStack(nn.Module):
    """Pre-LN residual attention layers following an attn_order schedule."""

    def __init__(self, attn_order: int, depth: int, n_ctx: int = 24, blocks: int = 4):
        super().__init__()
        torch.manual_seed(attn_order)
        kinds = attention_schedule(attn_order, depth)
        self.lns = nn.ModuleList(nn.LayerNorm(16) for _ in kinds)
        self.layers = nn.ModuleList(
            SparseAttention(16, 10, 2, n_ctx, k, blocks=blocks, prime_len=5, init_scale=10.0)
            for k in kinds
        )

    def forward(self, x, enc):
        for ln, layer in zip(self.lns, self.layers, strict=True):
            x = x + layer(ln(x), enc)
        return x

    def init_cache(self, batch):
        return [layer.init_cache(batch) for layer in self.layers]

    def forward_cached(self, x, start, caches, enc):
        for ln, layer, cache in zip(self.lns, self.layers, caches, strict=True):
            x = x + layer.forward_cached(ln(x), start, cache, enc)
        return x


# depth per order: enough layers to contain every type the order uses (3, 4, 5: summary types).
STACK_DEPTHS = {0: 2, 1: 2, 2: 3, 6: 4, 7: 16, 8: 10, 9: 4, 10: 19, 11: 48, 12: 48}


@pytest.mark.parametrize("attn_order", list(STACK_DEPTHS))
def test_stack_cached_matches_forward(attn_order):
    stack = TinyStack(attn_order, STACK_DEPTHS[attn_order])
    x, enc = torch.randn(2, 24, 16), torch.randn(2, 5, 16)
    with torch.no_grad():
        full = stack(x, enc)
    for sizes in ([1] * 24, random_chunks(24, 13, attn_order)):
        torch.testing.assert_close(run_cached(stack, x, sizes, enc), full, atol=1e-5, rtol=1e-5)


# ----------------------------------------------------------------------------------------------
# Schedules (§4.2).

R, C, P = T.ROW, T.COLUMN, T.PREV_ROW


def test_schedule_prior_5b_and_upsamplers():
    expected = [R, C, P] * 24
    assert attention_schedule(2, 72) == expected
    assert attention_schedule(2, 18) == [R, C, P] * 6  # 5b_lyrics lyric encoder


def test_schedule_prior_5b_lyrics():
    expected = [R, C, P] * 6 + [T.ENC_DEC] + ([R, C, P] * 3 + [T.ENC_DEC]) * 6
    sched = attention_schedule(10, 79)
    assert sched == expected
    assert [d for d, k in enumerate(sched) if k == T.ENC_DEC] == [18, 28, 38, 48, 58, 68, 78]
    assert sched[17] == P and sched[19] == R and sched[77] == P


def test_schedule_prior_1b_lyrics():
    sched = attention_schedule(12, 72)
    expected = [[R, C, P][d % 3] for d in range(72)]
    for d, kind in {15: T.PRIME, 31: T.PRIME, 47: T.DENSE, 63: T.PRIME}.items():
        expected[d] = kind
    assert sched == expected
    assert sched[14:17] == [P, T.PRIME, C] and sched[30:33] == [R, T.PRIME, P]
    assert sched[46:49] == [C, T.DENSE, R]
    small = attention_schedule(12, 48)  # small_single_enc_dec_prior
    assert [d for d, k in enumerate(small) if k in (T.PRIME, T.DENSE)] == [15, 31, 47]


def test_schedule_other_orders():
    assert attention_schedule(0, 3) == [T.DENSE] * 3
    assert attention_schedule(1, 4) == [R, C, R, C]
    assert attention_schedule(3, 3) == [R, T.SUMMARY, R]
    assert attention_schedule(4, 2) == [R, T.SUMMARY_SPREAD]
    assert attention_schedule(5, 5) == [R, T.SUMMARY, R, R, R]
    assert attention_schedule(6, 5) == [R, C, P, T.ENC_DEC, R]
    assert attention_schedule(7, 17) == [R, C, P] * 5 + [T.ENC_DEC, R]
    sep = attention_schedule(8, 50)  # small_sep_enc_dec_prior
    assert [d for d, k in enumerate(sep) if k == T.ENC_DEC] == [9, 19, 29, 39, 49]
    assert attention_schedule(9, 5) == [R, C, P, T.DENSE, R]
    eleven = attention_schedule(11, 48)
    assert [(d, eleven[d]) for d in (15, 31, 47)] == [
        (15, T.ENC_DEC),
        (31, T.ENC_DEC),
        (47, T.DENSE),
    ]
    with pytest.raises(ValueError, match="attn_order"):
        attention_schedule(13, 4)


# ----------------------------------------------------------------------------------------------
# Errors, backend dispatch, memory.


def test_errors():
    with pytest.raises(NotImplementedError):
        SparseAttention(16, 10, 2, 24, T.SUMMARY, blocks=4)
    with pytest.raises(ValueError, match="blocks"):
        SparseAttention(16, 10, 2, 24, T.ROW, blocks=5)
    with pytest.raises(ValueError, match="prime_len"):
        SparseAttention(16, 10, 2, 24, T.PRIME, blocks=4)
    with pytest.raises(ValueError, match="divisible"):
        SparseAttention(16, 10, 3, 24, T.DENSE)
    row = SparseAttention(16, 10, 2, 24, T.ROW, blocks=4)
    with pytest.raises(ValueError, match="multiple of block_ctx"):
        row(torch.randn(1, 10, 16))
    with pytest.raises(ValueError, match="n_ctx"):
        row.forward_cached(torch.randn(1, 3, 16), 22, row.init_cache(1))
    enc_dec = SparseAttention(16, 10, 2, 24, T.ENC_DEC)
    with pytest.raises(ValueError, match="encoder_kv"):
        enc_dec(torch.randn(1, 4, 16))


def test_zero_out_and_init():
    layer = SparseAttention(16, 10, 2, 24, T.ENC_DEC, zero_out=True, init_scale=0.5)
    assert layer.c_attn.weight.shape == (10, 16) and layer.c_enc_kv.weight.shape == (20, 16)
    assert torch.all(layer.c_proj.weight == 0) and torch.all(layer.c_attn.bias == 0)
    assert abs(layer.c_attn.weight.std().item() - 0.01) < 0.004
    out = layer(torch.randn(1, 3, 16), torch.randn(1, 4, 16))
    assert torch.all(out == 0)


def test_xformers_backend_uses_same_views(monkeypatch):
    """A stand-in `xformers.ops` ([B, L, H, d] layout, top-left causal bias) gives equal results."""
    calls = []

    class LowerTriangularMask:
        pass

    def memory_efficient_attention(q, k, v, attn_bias=None):
        calls.append(q.shape)
        causal = isinstance(attn_bias, LowerTriangularMask)
        out = F.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=causal
        )
        return out.transpose(1, 2)

    ops = types.SimpleNamespace(
        LowerTriangularMask=LowerTriangularMask,
        memory_efficient_attention=memory_efficient_attention,
    )
    monkeypatch.setitem(sys.modules, "xformers", types.SimpleNamespace(ops=ops))
    monkeypatch.setitem(sys.modules, "xformers.ops", ops)
    monkeypatch.setattr(attn_mod, "attention_backend", lambda device: "xformers")
    for kind in SELF_TYPES:
        layer = make(kind, 16, 4, prime_len=3)
        x = torch.randn(2, 16, 16)
        torch.testing.assert_close(layer(x), reference(layer, x), atol=1e-5, rtol=1e-5)
    assert len(calls) == len(SELF_TYPES)


def test_backend_is_sdpa_on_cpu():
    assert attn_mod.attention_backend(torch.device("cpu")) == "sdpa"


@pytest.mark.parametrize("kind", [T.ROW, T.COLUMN, T.PREV_ROW], ids=lambda k: k.name)
def test_no_n_by_n_tensor_at_long_context(kind):
    n, blocks = 8192, 128
    layer = SparseAttention(16, 16, 1, n, kind, blocks=blocks)
    x = torch.randn(1, n, 16, requires_grad=True)
    acts = torch.profiler.ProfilerActivity.CPU
    with torch.profiler.profile(activities=[acts], record_shapes=True) as prof:
        layer(x).sum().backward()
    numels = [
        torch.Size(shape).numel()
        for event in prof.events()
        for shape in event.input_shapes
        if shape and all(isinstance(s, int) for s in shape)
    ]
    assert numels, "profiler recorded no shapes"
    # The largest legitimate tensor is a per-row/column score block, n * max(block_ctx, blocks).
    assert max(numels) <= n * max(n // blocks, blocks) < n * n
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_bench_attention_reports_every_type_and_length():
    from jukelite.bench.attention import bench_attention

    report = bench_attention(n_ctx_list=(32, 64), width=16, heads=2, block_ctx=8, repeats=1)
    rows = report["results"]
    assert [(r["type"], r["n_ctx"]) for r in rows] == [
        (k, n) for n in (32, 64) for k in ("DENSE", "ROW", "COLUMN", "PREV_ROW")
    ]
    assert all(r["time_s"] > 0 and r["peak_bytes"] > 0 for r in rows)
    assert rows[4]["blocks"] == 8 and report["memory"].startswith("bytes of storages")
    with pytest.raises(ValueError, match="multiple"):
        bench_attention(n_ctx_list=(30,), block_ctx=8)
