"""Level priors: sparse-attention Transformers over VQ-VAE codes, and their conditioning."""
