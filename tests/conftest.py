"""Shared test helpers: a tiny two-level VQ-VAE and bundles built from it in milliseconds."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from jukelite.bundle import save_prior_level, save_vqvae_level
from jukelite.data.labels import LabelVocabulary
from jukelite.data.lyrics import LyricsTokenizer
from jukelite.data.manifest import ManifestEntry
from jukelite.prior.model import LevelPrior, PriorConfig
from jukelite.vqvae.config import VQVAEConfig
from jukelite.vqvae.model import LevelVQVAE

TINY_RATE = 8000


@pytest.fixture(autouse=True, scope="session")
def _private_verification_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Bundle loading records verified weight files in a user cache; tests keep theirs apart
    (child processes inherit it through the environment)."""
    import os

    os.environ["JUKELITE_CACHE_DIR"] = str(tmp_path_factory.mktemp("jukelite-cache"))


def _tiny_config(**overrides) -> VQVAEConfig:
    """Two levels, hops 4 and 8, widths of 8 channels: forward passes take milliseconds."""
    base = dict(
        sample_rate=TINY_RATE,
        levels=2,
        downs_t=[2, 1],
        strides_t=[2, 2],
        width=[8, 8],
        depth=[1, 1],
        codebook_size=16,
        code_dim=8,
        linf_k=64,
    )
    base.update(overrides)
    return VQVAEConfig(**base)


@torch.no_grad()
def _tiny_level(level: int, config: VQVAEConfig | None = None, seed: int = 0) -> LevelVQVAE:
    """A randomly initialised level whose codebook is spread over real encoder latents.

    The default all-zero codebook maps every frame to code 0, which would make encode
    round-trip tests pass trivially; latents of random audio give varied codes.
    """
    config = config or _tiny_config()
    generator = torch.Generator().manual_seed(seed * 100 + level)
    with torch.random.fork_rng():
        torch.manual_seed(seed * 100 + level)
        model = LevelVQVAE(config, level).eval()
    hop, k = model.hop_length, config.codebook_size
    audio = torch.randn(1, config.channels, 4 * k * hop, generator=generator) * 0.3
    latents = model.encoder(audio)[0].T  # [frames, code_dim]
    pick = torch.randperm(latents.shape[0], generator=generator)[:k]
    model.quantizer.codebook.copy_(latents[pick])
    model.quantizer.initialized.fill_(True)
    return model


def _make_bundle(
    path: Path, levels: tuple[int, ...] = (0, 1), config: VQVAEConfig | None = None, seed: int = 0
) -> Path:
    """Write the given levels of a tiny VQ-VAE into a bundle directory at `path`."""
    config = config or _tiny_config()
    for level in levels:
        save_vqvae_level(path, _tiny_level(level, config, seed), provenance={"steps": 7})
    return path


def _make_complete_bundle(path: Path, lyrics: str = "none", seed: int = 0,
                          guidance: bool = False, parallel: bool = False) -> Path:
    """A bundle that can sample, in milliseconds: the tiny two-level VQ-VAE (8 kHz, hops 4
    and 8), a labelled top prior with timing on level 1 (with a lyrics encoder when
    `lyrics="encoder"`) and an upsampler on level 0 (x2 from level 1); artists Ada and Bo,
    genres rock and folk. `guidance` gives both priors (random) null conditioning; `parallel`
    makes the upsampler a parallel (masked) decoder."""
    _make_bundle(path, seed=seed)
    vocabulary = LabelVocabulary.from_entries(
        [ManifestEntry(path=Path("a.wav"), artist="Ada", genres=["rock"]),
         ManifestEntry(path=Path("b.wav"), artist="Bo", genres=["folk"])], max_bow_genre_size=2)
    shared = dict(bins=16, n_ctx=16, width=16, depth=2, heads=2, blocks=4, attn_order=2,
                  artist_bins=vocabulary.n_artists, genre_bins=vocabulary.n_genres,
                  max_bow_genre_size=2, sample_rate=TINY_RATE, guidance=guidance)
    lyric_settings = {}
    if lyrics == "encoder":  # row, column, previous-row, encoder-decoder
        lyric_settings = dict(attn_order=6, depth=4, lyrics="encoder", n_tokens=8,
                              lyrics_width=16, lyrics_depth=1, lyrics_heads=2, lyrics_blocks=2)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        top = LevelPrior(PriorConfig(level=1, timing=True, t_bins=8, min_duration=0.01,
                                     max_duration=10.0, **{**shared, **lyric_settings}))
        upsampler = LevelPrior(PriorConfig(level=0, upsampler=True, cond_down_t=1,
                                           cond_stride=2, cond_width=8, cond_depth=1,
                                           cond_dilation_cycle=1,
                                           decoding="parallel" if parallel else "autoregressive",
                                           **shared))
        for prior in (top, upsampler) if guidance else ():  # conditioning that matters:
            for parameter in prior.parameters():  # nothing zero-initialised, a distinct null
                parameter.data.add_(torch.randn_like(parameter) * 0.1)
            prior.null_start.data.normal_(std=1.0)
    tokenizer = LyricsTokenizer() if lyrics != "none" else None
    for prior in (top, upsampler):
        save_prior_level(path, prior.eval(), {
            "labels": vocabulary.to_dict(),
            "lyrics": tokenizer.to_dict() if tokenizer and prior is top else None})
    return path


@pytest.fixture
def single_thread():
    """Tiny tensors: intra-op threads only add overhead, and spin badly on a busy 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def tiny_bundle(tmp_path: Path) -> Path:
    """A fresh two-level bundle (8 kHz mono, hops 4 and 8) in the test's temporary folder."""
    return _make_bundle(tmp_path / "bundle")


# The helpers as fixtures, so test modules need not import conftest.
@pytest.fixture
def tiny_config():
    """`tiny_config(**overrides) -> VQVAEConfig`."""
    return _tiny_config


@pytest.fixture
def tiny_level():
    """`tiny_level(level, config=None, seed=0) -> LevelVQVAE` with a spread-out codebook."""
    return _tiny_level


@pytest.fixture
def make_complete_bundle():
    """`make_complete_bundle(path, lyrics="none" | "encoder", seed=0, guidance=False,
    parallel=False)`."""
    return _make_complete_bundle


@pytest.fixture
def make_bundle():
    """`make_bundle(path, levels=(0, 1), config=None, seed=0) -> path`."""
    return _make_bundle
