"""Losses and metrics against hand-computed values, plus a tiny VQ-VAE overfit run."""

import math

import numpy as np
import pytest
import torch

from jukelite.vqvae import DataStatistics, LevelVQVAE, VQVAEConfig, reconstruction_metrics
from jukelite.vqvae.losses import (
    linf_topk,
    metric_stft,
    multiresolution_stft_distance,
    si_sdr,
    spectral_convergence,
    spectral_convergence_db,
    stft_magnitude,
)

SR = 8000
RESOLUTIONS = [(512, 44, 218), (256, 22, 109)]


# Tiny tensors: intra-op threads only add overhead (fixture in tests/conftest.py).
pytestmark = pytest.mark.usefixtures("single_thread")


def tone(freq: float, n: int = 2048, amplitude: float = 0.5) -> torch.Tensor:
    t = torch.arange(n, dtype=torch.float64) / SR
    return (amplitude * torch.sin(2 * math.pi * freq * t)).float()


def clips() -> torch.Tensor:
    """Two mono clips [2, 1, 2048]: a tone and a tone plus noise."""
    torch.manual_seed(0)
    a = tone(440.0)
    b = tone(250.0, amplitude=0.3) + 0.05 * torch.randn(2048)
    return torch.stack([a, b]).unsqueeze(1)


def manual_stft_magnitude(x: np.ndarray, n_fft: int, hop: int, window: int) -> np.ndarray:
    """Centred, reflect-padded, periodic-Hann STFT magnitude written out with numpy."""
    padded = np.pad(x, n_fft // 2, mode="reflect")
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(window) / window)
    win = np.zeros(n_fft)
    left = (n_fft - window) // 2
    win[left : left + window] = hann
    n_frames = 1 + (len(padded) - n_fft) // hop
    frames = np.stack([padded[i * hop : i * hop + n_fft] * win for i in range(n_frames)], axis=1)
    return np.abs(np.fft.rfft(frames, axis=0))


def test_identical_signals_give_zero_distances():
    x = clips()
    assert torch.equal(multiresolution_stft_distance(x, x, RESOLUTIONS), torch.zeros(2))
    assert torch.equal(spectral_convergence(x, x, *metric_stft(SR)), torch.zeros(2))
    assert torch.equal(spectral_convergence_db(x, x, *metric_stft(SR)), torch.full((2,), -160.0))
    assert float(linf_topk(x, x, 16)) == 0.0
    assert (si_sdr(x, x) > 80).all()
    m = reconstruction_metrics(x, x, SR)
    assert m["stft_distance"] == 0.0 and m["l2"] == 0.0
    assert m["spectral_convergence_db"] == -160.0 and m["si_sdr_db"] > 80


def test_stft_magnitude_shape_and_mono_mix():
    x = clips()
    s = stft_magnitude(x, 512, 44, 218)
    assert s.shape == (2, 257, 1 + 2048 // 44)
    stereo = torch.cat([x, torch.zeros_like(x)], dim=1)  # mean over channels = x / 2
    torch.testing.assert_close(stft_magnitude(stereo, 512, 44, 218), s / 2)
    assert stft_magnitude(x[:, 0], 512, 44, 218).shape == s.shape  # [N, T] accepted
    assert stft_magnitude(torch.ones(1, 1, 100), 512, 44, 218).shape == (1, 257, 3)  # short clip


def test_scaled_copy_spectral_convergence_is_half():
    x = clips()
    ratio = spectral_convergence(x, 0.5 * x, *metric_stft(SR))
    torch.testing.assert_close(ratio, torch.full((2,), 0.5))
    db = spectral_convergence_db(x, 0.5 * x, *metric_stft(SR))
    torch.testing.assert_close(db, torch.full((2,), 20 * math.log10(0.5)))  # -6.02 dB
    assert reconstruction_metrics(x, 0.5 * x, SR)["spectral_convergence_db"] == pytest.approx(
        -6.0206, abs=1e-3
    )


def test_spectral_convergence_masks_silent_references():
    silent = torch.zeros(1, 1, 2048)
    assert float(spectral_convergence(silent, clips()[:1], *metric_stft(SR))) == 0.0


def test_si_sdr_with_orthogonal_noise_of_known_power():
    x = tone(200.0, n=4000)  # whole periods: zero mean, orthogonal to other whole-period tones
    noise = tone(600.0, n=4000, amplitude=0.05)  # power ratio (0.5 / 0.05)^2 = 100 -> 20 dB
    value = si_sdr(x[None], (x + noise)[None])
    torch.testing.assert_close(value, torch.tensor([20.0]), atol=1e-3, rtol=0)
    # Scale invariance and channel flattening.
    torch.testing.assert_close(si_sdr(x[None, None], 3 * (x + noise)[None, None]), value)


def test_l2_and_linf_topk_hand_values():
    x = torch.tensor([[[0.0, 1, 2, 3, 4]], [[0.0, 2, 4, 6, 8]]])
    y = torch.zeros_like(x)
    # squared errors: [0 1 4 9 16] and [0 4 16 36 64]; top-2 means 12.5 and 50.
    assert float(linf_topk(x, y, 2)) == pytest.approx(31.25)
    assert float(linf_topk(x, y, 100)) == pytest.approx((30 + 120) / 10)  # k clamped to 5
    assert reconstruction_metrics(x, y, SR)["l2"] == pytest.approx(150 / 10)


def test_multiresolution_distance_matches_manual_stft():
    x, y = clips(), clips().flip(0)
    expected = []
    for n in range(2):
        per_res = [
            np.linalg.norm(
                manual_stft_magnitude(x[n, 0].double().numpy(), *r)
                - manual_stft_magnitude(y[n, 0].double().numpy(), *r)
            )
            for r in RESOLUTIONS
        ]
        expected.append(np.mean(per_res))
    got = multiresolution_stft_distance(x, y, RESOLUTIONS)
    torch.testing.assert_close(got, torch.tensor(expected, dtype=torch.float32), rtol=1e-4, atol=0)


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="same shape"):
        si_sdr(torch.zeros(1, 1, 10), torch.zeros(1, 1, 12))


def test_data_statistics():
    x = clips()
    stats = DataStatistics(SR)
    stats.update(x[:1])
    stats.update(x[1:])
    assert stats.l2 == pytest.approx(float(x.double().var(unbiased=False)), rel=1e-9)
    norms = stft_magnitude(x, *metric_stft(SR)).flatten(1).norm(dim=1)
    assert stats.spec == pytest.approx(float(norms.mean()), rel=1e-6)
    assert DataStatistics.from_clips([x], SR).as_dict() == pytest.approx(stats.as_dict())
    with pytest.raises(ValueError, match="no audio"):
        _ = DataStatistics(SR).l2


def test_tiny_level_vqvae_overfits_a_sine():
    torch.manual_seed(0)
    cfg = VQVAEConfig(
        sample_rate=SR,
        levels=1,
        downs_t=[2],
        strides_t=[2],
        width=[16],
        depth=[2],
        codebook_size=32,
        code_dim=16,
    )
    x = tone(220.0, n=1024).view(1, 1, -1)
    model = LevelVQVAE(cfg, 0)
    stats = DataStatistics.from_clips([x], SR)
    model.set_data_statistics(stats.l2, stats.spec)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(150):
        _, loss, _ = model(x)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert sum(losses[-10:]) / 10 < losses[0] / 8

    model.eval()
    recon = model.decode(model.encode(x))
    metrics = reconstruction_metrics(x, recon, SR)
    assert metrics["spectral_convergence_db"] < -10
