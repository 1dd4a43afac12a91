"""Hierarchical VQ-VAE: per-level audio autoencoders with EMA codebooks (Jukebox §2)."""

from jukelite.vqvae.config import VQVAEConfig
from jukelite.vqvae.losses import DataStatistics, reconstruction_metrics
from jukelite.vqvae.model import VQVAE, LevelVQVAE, count_parameters
from jukelite.vqvae.quantizer import QuantizerOutput, VectorQuantizer

__all__ = [
    "VQVAE",
    "DataStatistics",
    "LevelVQVAE",
    "QuantizerOutput",
    "VQVAEConfig",
    "VectorQuantizer",
    "count_parameters",
    "reconstruction_metrics",
]
