"""Defaults, named shapes and list flags of the benchmarks (no torch import: the CLI's help
reads them)."""

from __future__ import annotations

BENCHMARKS = ("vqvae", "attention", "prior", "sample", "jukebox-import", "gpu")

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


def positive_ints(text: str, flag: str) -> list[int]:
    """A comma list flag (`--n-ctx 1024,4096`, `--batch 1,8`) as positive integers."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{flag} takes comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise ValueError(f"{flag} takes positive integers, got {text!r}")
    return values
