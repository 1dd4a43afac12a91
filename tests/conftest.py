"""Shared test helpers: a tiny two-level VQ-VAE and bundles built from it in milliseconds."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from jukelite.bundle import save_vqvae_level
from jukelite.vqvae.config import VQVAEConfig
from jukelite.vqvae.model import LevelVQVAE

TINY_RATE = 8000


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
def make_bundle():
    """`make_bundle(path, levels=(0, 1), config=None, seed=0) -> path`."""
    return _make_bundle
