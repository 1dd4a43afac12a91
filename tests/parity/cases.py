"""The parity cases: reduced Jukebox models with the released structure, their checkpoints in
the released format, and Jukebox's own reference outputs for them (CPU, float32).

Sizes shrink (widths, codebook, contexts) but every structural switch of the released models is
kept: three VQ-VAE levels with hops 8/32/128 and the (2, 1, 1) multipliers; prior_5b's labels,
timing, untied head and float16 Conv1D weights; prior_5b_lyrics' 79 layers with seven
encoder-decoder layers and a separate lyric encoder (v2 vocabulary); prior_1b_lyrics' 72-layer
single stack over [lyrics | music] with the prime layers 15/31/63, the dense layer 47 and the
prime-length quirk (48 lyric tokens, 16 blocks -> 64); both upsamplers with their conditioner
(`.blocks.` names from cond_c_res=1, res_scale only at level 1). Real artist/genre ids (v2 and
v3 id files) and real lyrics feed Jukebox's Labeller.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from tests.parity import jukebox_reference as ref

SR = 44100
# A 171.4 s song (inside every prior's timing range) whose top-level window [18.47 s, +0.56 or
# +0.74 s) straddles 18.75 s: a bin edge of the absolute (600 s / 64 or 128 bins) and of the
# relative (total / 64 or 128) timing embeddings, so the timing signal changes inside it. The
# window starts on a whole code of every level (a multiple of 128 samples).
TOTAL_LENGTH = 7_560_000
OFFSET = 6364 * 128
ARTIST = "Guns N' Roses"  # v2 guns_n_roses, v3 "guns n' roses"
GENRE = "Blues Rock"  # v2 bag of words [blues, rock]; v3 "blues rock"
# "Amazing Grace" (John Newton, 1779; public domain); the typographic apostrophe goes through
# unidecode, and the text is longer than every lyric window, so the linear window is used.
LYRICS = (
    "Amazing grace! How sweet the sound\nThat saved a wretch like me!\n"
    "I once was lost, but now am found;\nWas blind, but now I see.\n\n"
    "\u2019Twas grace that taught my heart to fear,\nAnd grace my fears relieved;\n"
    "How precious did that grace appear\nThe hour I first believed.\n\n"
    "Through many dangers, toils and snares,\nI have already come;\n"
    "\u2019Tis grace hath brought me safe thus far,\nAnd grace will lead me home.\n"
)

VQVAE_HPS: dict[str, Any] = dict(sr=SR, width=8, depth=2, l_bins=128, emb_width=16,
                                 sample_length=256 * 128)
AUDIO_SAMPLES = 64 * 128  # the VQ-VAE clip: 64 top-level codes
_TOP = dict(n_ctx=256, prior_width=64, blocks=16)
_UPSAMPLER = dict(n_ctx=256, prior_width=64, prior_depth=6, heads=1, blocks=16, cond_width=16,
                  cond_depth=6, cond_dilation_cycle=4)


@dataclass(frozen=True)
class PriorCase:
    """One reduced prior: the Jukebox preset it keeps the structure of, and what shrinks."""

    preset: str
    hps: dict[str, Any]
    seed: int
    label: str

    @property
    def level(self) -> int:
        return {"upsampler_level_0": 0, "upsampler_level_1": 1}.get(self.preset, 2)


PRIOR_CASES: dict[str, PriorCase] = {
    case.preset: case
    for case in (
        PriorCase("prior_5b", dict(_TOP, prior_depth=6, heads=8), 11,
                  "prior_5b (fp16 Conv1D)"),
        PriorCase("prior_5b_lyrics",
                  dict(_TOP, prior_depth=79, heads=8, n_tokens=64, prime_width=32,
                       prime_depth=3, prime_heads=4, prime_blocks=8),
                  12, "prior_5b_lyrics (79 layers)"),
        PriorCase("prior_1b_lyrics",
                  dict(_TOP, n_ctx=192, prior_depth=72, heads=2, n_tokens=48),
                  13, "prior_1b_lyrics (single stack)"),
        PriorCase("upsampler_level_0", dict(_UPSAMPLER), 14, "upsampler_level_0"),
        PriorCase("upsampler_level_1", dict(_UPSAMPLER), 15, "upsampler_level_1"),
    )
}
# The released model sets (make_models.MODELS): top prior -> the bundle's priors.
MODEL_SETS = {
    "5b": ("upsampler_level_0", "upsampler_level_1", "prior_5b"),
    "5b_lyrics": ("upsampler_level_0", "upsampler_level_1", "prior_5b_lyrics"),
    "1b_lyrics": ("upsampler_level_0", "upsampler_level_1", "prior_1b_lyrics"),
}


@dataclass
class PriorReference:
    """A prior case's checkpoint, inputs and Jukebox's outputs."""

    case: PriorCase
    hps: Any
    checkpoint: Path
    model: nn.Module  # Jukebox's SimplePrior, restored from `checkpoint` by Jukebox
    codes: Tensor  # [1, n_ctx]
    upper: Tensor | None  # [1, n_ctx / 4] codes of the level above (upsamplers)
    y: Tensor  # Jukebox's label vector [1, 4 + G + n_tokens]
    logits: Tensor  # [1, seq, vocab] teacher-forced
    log_probs: Tensor  # [1, n_ctx] of `codes`

    @property
    def n_label(self) -> int:
        """Entries of y before the lyric tokens."""
        return 4 + int(self.hps.max_bow_genre_size)


@dataclass
class VQVAEReference:
    hps: Any
    checkpoint: Path
    model: nn.Module
    audio: Tensor  # [1, 1, T]
    codes: list[Tensor]  # per level [1, T / hop]
    decoded: list[Tensor]  # per level [1, 1, T]


@dataclass
class References:
    root: Path
    vqvae: VQVAEReference
    priors: dict[str, PriorReference] = field(default_factory=dict)

    @property
    def ids(self) -> Path:
        src = ref.jukebox_src()
        assert src is not None
        return src / "jukebox" / "data" / "ids"


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def build_vqvae_reference(root: Path, seed: int = 1) -> VQVAEReference:
    """Randomise a reduced VQ-VAE, save it, restore it with Jukebox's loader and run it."""
    hps = ref.make_hps("vqvae", **VQVAE_HPS)
    audio = 0.3 * torch.randn(1, 1, AUDIO_SAMPLES, generator=_generator(seed))
    model = ref.randomise_(ref.build_vqvae(hps), seed)
    ref.spread_codebooks_(model, audio.transpose(1, 2), seed + 1)
    path = ref.save_checkpoint(model, hps, root / "vqvae.pth.tar")
    model = ref.build_vqvae(hps, path)
    codes, decoded = ref.vqvae_reference(model, audio.transpose(1, 2))
    return VQVAEReference(hps, path, model, audio, codes,
                          [d.transpose(1, 2).contiguous() for d in decoded])


def build_prior_reference(root: Path, case: PriorCase, vqvae: nn.Module) -> PriorReference:
    """Randomise a reduced prior, save it, restore it with Jukebox's loader, score codes."""
    hps = ref.make_hps(case.preset, sr=SR, **case.hps)  # a prior's sr: its VQ-VAE's
    model = ref.randomise_(ref.build_prior(hps, vqvae), case.seed)
    path = ref.save_checkpoint(model, hps, root / f"{case.preset}.pth.tar")
    model = ref.build_prior(hps, vqvae, path)
    generator = _generator(case.seed + 100)
    bins = int(vqvae.l_bins)
    codes = torch.randint(0, bins, (1, int(hps.n_ctx)), generator=generator)
    upper = None
    if case.level < 2:
        upper = torch.randint(0, bins, (1, int(hps.n_ctx) // 4), generator=generator)
    y = ref.label_vector(model, ARTIST, GENRE, LYRICS, TOTAL_LENGTH, OFFSET)
    logits = ref.prior_logits(model, codes, y, upper)
    log_probs = ref.prior_log_probs(model, codes, y, upper)
    return PriorReference(case, hps, path, model, codes, upper, y, logits, log_probs)


def build_references(root: Path, presets: tuple[str, ...] | None = None) -> References:
    """Every case (or the chosen presets) under `root`."""
    root.mkdir(parents=True, exist_ok=True)
    refs = References(root, build_vqvae_reference(root))
    for preset in presets or tuple(PRIOR_CASES):
        refs.priors[preset] = build_prior_reference(root, PRIOR_CASES[preset], refs.vqvae.model)
    return refs
