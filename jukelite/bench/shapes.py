"""Defaults and named shapes of the benchmarks (no torch import: the CLI's help reads them)."""

from __future__ import annotations

BENCHMARKS = ("vqvae", "attention", "prior", "sample")

ATTENTION_DEFAULTS = {"n_ctx": "1024,4096,16384", "width": 256, "heads": 2, "block_ctx": 64}

# Prior shapes: unconditioned (labels false), attn_order 2 (row/column/prev-row), the default
# m_attn 0.25 and m_mlp 1.0. `custom` starts from `tiny`; any size flag overrides any shape.
PRIOR_SHAPES: dict[str, dict[str, int]] = {
    "tiny": dict(width=64, depth=4, heads=2, n_ctx=256, blocks=8, bins=256, batch=4),
    "small": dict(width=512, depth=12, heads=4, n_ctx=2048, blocks=32, bins=2048, batch=1),
}
PRIOR_SHAPES["custom"] = dict(PRIOR_SHAPES["tiny"])
PRIOR_FLAGS = ("width", "depth", "heads", "n_ctx", "blocks", "bins", "batch")

SAMPLE_DEFAULTS: dict[str, object] = {
    "batch": "1,8",
    "tokens": 512,
    "naive_tokens": 4,
    "seconds": 10.0,
}
SAMPLE_SHAPES = ("tiny", "small", "custom")
