"""jukelite's imported models against Jukebox's reference outputs: the numbers of the parity
table, shared by the tests and by `python -m tests.parity.report`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from tests.parity.cases import (
    ARTIST,
    GENRE,
    LYRICS,
    MODEL_SETS,
    OFFSET,
    PRIOR_CASES,
    TOTAL_LENGTH,
    VQVAE_HPS,
    PriorReference,
    References,
)

VQVAE_TOLERANCE = 1e-5  # decoded audio, max abs
PRIOR_TOLERANCE = 1e-4  # log-probabilities and logits, max abs, float32


@dataclass(frozen=True)
class Row:
    """One line of the parity table."""

    case: str
    quantity: str
    diff: float  # max abs difference (a count of mismatches for codes)
    tolerance: float

    @property
    def ok(self) -> bool:
        return self.diff <= self.tolerance

    def __str__(self) -> str:
        return (f"{self.case:<44} {self.quantity:<34} {self.diff:>10.3g} "
                f"{self.tolerance:>8.0e}  {'ok' if self.ok else 'FAIL'}")


HEADER = f"{'case':<44} {'quantity':<34} {'max |diff|':>10} {'tol':>8}"


def format_table(rows: list[Row]) -> str:
    return "\n".join([HEADER, "-" * len(HEADER), *map(str, rows)])


def max_abs(a: Tensor, b: Tensor) -> float:
    if a.shape != b.shape:
        raise AssertionError(f"shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    return float((a.float() - b.float()).abs().max())


# ---------------------------------------------------------------------- import
def import_hps(refs: References, presets: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """The overrides (Jukebox hparam names) that describe the reduced models to the importer."""
    hps: dict[str, dict[str, Any]] = {"vqvae": dict(VQVAE_HPS)}
    for preset in presets:
        case = PRIOR_CASES[preset]
        hps[f"prior_level_{case.level}"] = dict(case.hps)
    return hps


def import_bundle(refs: References, model_set: str, output: Path) -> Path:
    """jukelite's import of the reduced VQ-VAE and the priors of `model_set` (5b, ...)."""
    from jukelite.convert.jukebox import import_jukebox

    presets = MODEL_SETS[model_set]
    priors = {PRIOR_CASES[p].level: refs.priors[p].checkpoint for p in presets}
    return import_jukebox(output=output, vqvae=refs.vqvae.checkpoint, priors=priors,
                          preset=model_set, hps=import_hps(refs, presets), ids=refs.ids,
                          dtype="float32")


def load(bundle: Path) -> Any:
    import jukelite

    return jukelite.load(bundle)


# ---------------------------------------------------------------------- VQ-VAE
@torch.no_grad()
def vqvae_rows(refs: References, bundle: Path) -> list[Row]:
    """Codes of every level (mismatching codes, must be 0) and decoded audio per level, through
    the API (clamped to [-1, 1], as jukelite decodes) and through the level's model."""
    jb, ref = load(bundle), refs.vqvae
    codes = jb.encode(ref.audio)
    rows = []
    for level, expected in enumerate(ref.codes):
        got = codes[level]
        mismatches = float((got != expected).sum()) if got.shape == expected.shape else 1e9
        rows.append(Row("vqvae", f"level {level} codes (mismatches)", mismatches, 0))
    for level, expected in enumerate(ref.decoded):
        model = jb._bundle.vqvae(level)
        rows.append(Row("vqvae", f"level {level} decoder (model)",
                        max_abs(model.decode(ref.codes[level]), expected), VQVAE_TOLERANCE))
        rows.append(Row("vqvae", f"level {level} decode (api, clamped)",
                        max_abs(jb.decode(ref.codes[level], level), expected.clamp(-1, 1)),
                        VQVAE_TOLERANCE))
    return rows


# ---------------------------------------------------------------------- priors
def model_inputs(prior: Any, r: PriorReference) -> tuple[Any, Tensor, Tensor | None]:
    """jukelite's conditioning and token sequence built from Jukebox's own label vector `y`
    (so the model mapping is tested apart from label and lyric processing)."""
    y, lyrics = r.y[:, : r.n_label], r.y[:, r.n_label:]
    lyrics = lyrics if lyrics.shape[1] else None
    cond = prior.condition(y, r.upper, lyrics)
    return cond, prior.sequence(r.codes, lyrics), lyrics


@torch.no_grad()
def prior_rows(refs: References, preset: str, bundle: Path, model_set: str) -> list[Row]:
    """Per-token log-probs through `Jukebox.score` (names, raw lyrics, timing in samples), and
    the full logits (as log-softmax) of the model fed Jukebox's own y."""
    r = refs.priors[preset]
    jb, level, name = load(bundle), r.case.level, f"{model_set}: {r.case.label}"
    rows = []
    lyrics = LYRICS if r.model.n_tokens else ""  # a prior without lyrics warns about them
    score = jb.score(r.codes, level, artist=ARTIST, genre=GENRE, lyrics=lyrics,
                     total_length=TOTAL_LENGTH, offset=OFFSET, upper_codes=r.upper)
    rows.append(Row(name, "log p(codes) via Jukebox.score", max_abs(score, r.log_probs),
                    PRIOR_TOLERANCE))
    prior = jb._bundle.prior(level)
    cond, tokens, _ = model_inputs(prior, r)
    logits = prior.logits(tokens, cond).float()
    rows.append(Row(name, "log-softmax, model with Jukebox's y",
                    max_abs(logits.log_softmax(-1), r.logits.log_softmax(-1)), PRIOR_TOLERANCE))
    return rows


def cached_positions(prior: Any) -> tuple[int, int]:
    """(prefill, steps): a chunked prefill, then one-token steps that cross a row boundary and,
    for a single-stack lyric prior, the lyric/music boundary and the prime-key limit."""
    c = prior.config
    block_ctx = c.seq_len // c.blocks
    if c.lyrics == "single":
        prime = (c.n_tokens // c.blocks + 1) * c.blocks
        start = c.n_tokens - 4
        return start, prime + 3 - start
    return 2 * block_ctx - 3, 6


@torch.no_grad()
def cached_rows(refs: References, preset: str, bundle: Path, model_set: str) -> list[Row]:
    """The imported prior's KV-cached passes against its own teacher-forced logits: a chunked
    prefill (`logits_cached`), then one-token `logits_step`s, and one-token `logits_cached`."""
    r = refs.priors[preset]
    prior = load(bundle)._bundle.prior(r.case.level)
    cond, tokens, _ = model_inputs(prior, r)
    full = prior.logits(tokens, cond).float()
    prefill, steps = cached_positions(prior)
    rows = []
    for kind in ("logits_step", "logits_cached"):
        caches = prior.init_caches(tokens.shape[0])
        first = prior.logits_cached(tokens, 0, prefill, caches, cond).float()
        outs = []
        for position in range(prefill, prefill + steps):
            if kind == "logits_step":
                previous = tokens[:, position - 1]
                out = prior.logits_step(previous, torch.tensor(position), caches, cond)
            else:
                out = prior.logits_cached(tokens, position, 1, caches, cond)[:, 0]
            outs.append(out.float())
        diff = max(max_abs(first, full[:, :prefill]),
                   max_abs(torch.stack(outs, 1), full[:, prefill: prefill + steps]))
        rows.append(Row(f"{model_set}: {r.case.label}", f"{kind} vs full ({prefill}+{steps})",
                        diff, PRIOR_TOLERANCE))
    return rows
