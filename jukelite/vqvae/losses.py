"""Waveform and spectral losses and reconstruction metrics (reference §2.5).

Everything works on audio [N, C, T] (or [N, T]) and returns one value per example unless noted, so
the training loss, validation and `jukelite reconstruct` share one implementation. Spectra are
linear STFT magnitudes of the mono mix (mean over channels), Hann window, centred frames, float32.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
import torch.distributed as dist

from jukelite.vqvae.config import VQVAEConfig, scale_stft_resolution

# Jukebox STFT for the loss normaliser and the spectral-convergence metric (at 44.1 kHz).
METRIC_STFT = (2048, 256, 1536)
SC_FLOOR = 2e-3  # references with a smaller spectral norm count as silent (ratio masked to 0)
SC_DB_FLOOR = -160.0  # spectral_convergence_db of a perfect (or silent-reference) reconstruction
SILENCE_DBFS = -100.0  # references quieter than this (RMS) are silent for reporting
SILENT_SC_NOTE = "reference is silent: spectral convergence undefined"
SILENT_SI_SDR_NOTE = "reference is silent: SI-SDR undefined"

Resolution = tuple[int, int, int]  # (n_fft, hop, window)


def metric_stft(sample_rate: int) -> Resolution:
    """The 2048/256/1536 metric STFT scaled to `sample_rate` (same rule as the loss STFTs)."""
    return scale_stft_resolution(*METRIC_STFT, sample_rate)


def _mono(x: torch.Tensor) -> torch.Tensor:
    if x.ndim == 3:
        return x.float().mean(dim=1)
    if x.ndim == 2:
        return x.float()
    raise ValueError(
        f"expected audio [batch, channels, samples] or [batch, samples], got {tuple(x.shape)}"
    )


def _check_pair(reference: torch.Tensor, estimate: torch.Tensor) -> None:
    if reference.shape != estimate.shape:
        raise ValueError(
            f"reference and estimate must have the same shape, got {tuple(reference.shape)} "
            f"and {tuple(estimate.shape)} (trim the decoded audio to the input length)"
        )


def stft_magnitude(x: torch.Tensor, n_fft: int, hop: int, window: int) -> torch.Tensor:
    """|STFT| of the mono mix: [N, C, T] or [N, T] -> [N, n_fft // 2 + 1, frames].

    Frames are centred with reflect padding, or zero padding when the clip is too short to reflect.
    """
    mono = _mono(x)
    pad_mode = "reflect" if mono.shape[-1] > n_fft // 2 else "constant"
    spec = torch.stft(
        mono,
        n_fft=n_fft,
        hop_length=hop,
        win_length=window,
        window=torch.hann_window(window, device=mono.device, dtype=mono.dtype),
        center=True,
        pad_mode=pad_mode,
        return_complex=True,
    )
    return spec.abs()


def _frobenius(s: torch.Tensor) -> torch.Tensor:
    """Per-example Frobenius norm of [N, F, frames]."""
    return s.flatten(1).norm(dim=1)


def multiresolution_stft_distance(
    x: torch.Tensor, y: torch.Tensor, resolutions: Sequence[Resolution]
) -> torch.Tensor:
    """Mean over resolutions of ||(|S(x)| - |S(y)|)||_F per example -> [N] (linear, not squared)."""
    _check_pair(x, y)
    distances = [_frobenius(stft_magnitude(x, *r) - stft_magnitude(y, *r)) for r in resolutions]
    return torch.stack(distances).mean(dim=0)


def spectral_convergence(
    reference: torch.Tensor, estimate: torch.Tensor, n_fft: int, hop: int, window: int
) -> torch.Tensor:
    """||S(ref)| - |S(est)||_F / max(||S(ref)||_F, 2e-3) per example -> [N].

    References whose spectral norm is at most 2e-3 (silence) get 0, as in Jukebox.
    """
    _check_pair(reference, estimate)
    ref = stft_magnitude(reference, n_fft, hop, window)
    est = stft_magnitude(estimate, n_fft, hop, window)
    ref_norm = _frobenius(ref)
    ratio = _frobenius(ref - est) / ref_norm.clamp(min=SC_FLOOR)
    return torch.where(ref_norm > SC_FLOOR, ratio, torch.zeros_like(ratio))


def spectral_convergence_db(
    reference: torch.Tensor, estimate: torch.Tensor, n_fft: int, hop: int, window: int
) -> torch.Tensor:
    """Spectral convergence as an amplitude ratio in dB, 20*log10(ratio) -> [N] (lower is better).

    The ratio compares magnitudes (not powers), hence 20*log10: an estimate at half the reference's
    level gives ratio 0.5 = -6.02 dB. Perfect reconstructions and silent references, whose ratio is
    0, are reported at the floor of -160 dB instead of -inf so batch means stay finite.
    """
    ratio = spectral_convergence(reference, estimate, n_fft, hop, window)
    floor = 10 ** (SC_DB_FLOOR / 20)
    return 20 * torch.log10(ratio.clamp(min=floor))


def si_sdr(reference: torch.Tensor, estimate: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Scale-invariant SDR in dB per example -> [N] (channels and time flattened, zero-mean).

    The estimate is split into alpha*reference + residual with alpha chosen by projection, so a
    louder or quieter but otherwise perfect estimate still scores high.
    """
    _check_pair(reference, estimate)
    ref = reference.float().flatten(1)
    est = estimate.float().flatten(1)
    ref = ref - ref.mean(dim=1, keepdim=True)
    est = est - est.mean(dim=1, keepdim=True)
    alpha = (est * ref).sum(dim=1, keepdim=True) / (ref.pow(2).sum(dim=1, keepdim=True) + eps)
    target = alpha * ref
    residual = est - target
    return 10 * torch.log10((target.pow(2).sum(dim=1) + eps) / (residual.pow(2).sum(dim=1) + eps))


def linf_topk(x: torch.Tensor, y: torch.Tensor, k: int) -> torch.Tensor:
    """Mean of each example's k largest squared errors (a soft L-infinity) -> scalar."""
    _check_pair(x, y)
    err = (x.float() - y.float()).pow(2).flatten(1)
    return err.topk(min(k, err.shape[1]), dim=1).values.mean()


@torch.no_grad()
def reconstruction_metrics(
    reference: torch.Tensor,
    estimate: torch.Tensor,
    sample_rate: int,
    resolutions: Sequence[Resolution] | None = None,
) -> dict[str, float]:
    """Batch-mean metrics of a reconstruction (what `jukelite reconstruct` prints).

    spectral_convergence_db uses the 2048/256/1536 STFT scaled to `sample_rate`; stft_distance uses
    `resolutions` (default: the VQ-VAE loss STFTs scaled to `sample_rate`); l2 is the raw MSE.
    Silent references count at the -160 dB floor here (training sums these floats); reports
    for people use `reconstruction_report`, which leaves them out.
    """
    _check_pair(reference, estimate)
    if resolutions is None:
        resolutions = VQVAEConfig(sample_rate=sample_rate).stft_resolutions()
    sc_db = spectral_convergence_db(reference, estimate, *metric_stft(sample_rate))
    return {
        "spectral_convergence_db": sc_db.mean().item(),
        "stft_distance": multiresolution_stft_distance(reference, estimate, resolutions)
        .mean()
        .item(),
        "si_sdr_db": si_sdr(reference, estimate).mean().item(),
        "l2": (reference.float() - estimate.float()).pow(2).mean().item(),
    }


def silent_references(reference: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """Which references [N, C, T] (or [N, T]) are silent -> bool [N]: RMS below -100 dBFS, or
    a metric-STFT norm at most SC_FLOOR (where `spectral_convergence` masks the ratio to 0)."""
    x = reference.float().flatten(1)
    rms = x.pow(2).mean(dim=1).sqrt()
    quiet = rms < 10 ** (SILENCE_DBFS / 20)
    norm = _frobenius(stft_magnitude(reference, *metric_stft(sample_rate)))
    return quiet | (norm <= SC_FLOOR)


@torch.no_grad()
def reconstruction_report(
    reference: torch.Tensor,
    estimate: torch.Tensor,
    sample_rate: int,
    resolutions: Sequence[Resolution] | None = None,
) -> dict[str, Any]:
    """`reconstruction_metrics` for people to read (`jukelite reconstruct`): a silent reference
    makes spectral convergence and SI-SDR meaningless (a ratio to nothing), so instead of the
    -160 dB floor, which reads as a perfect reconstruction, they are averaged over the other
    references only, or None when every reference is silent; "notes" then says why."""
    metrics: dict[str, Any] = reconstruction_metrics(reference, estimate, sample_rate,
                                                     resolutions)
    silent = silent_references(reference, sample_rate)
    n_silent = int(silent.sum())
    if n_silent == 0:
        return metrics
    if n_silent == silent.numel():
        metrics["spectral_convergence_db"] = None
        metrics["si_sdr_db"] = None
        metrics["notes"] = [SILENT_SC_NOTE, SILENT_SI_SDR_NOTE]
        return metrics
    heard = ~silent
    sc_db = spectral_convergence_db(reference[heard], estimate[heard], *metric_stft(sample_rate))
    metrics["spectral_convergence_db"] = sc_db.mean().item()
    metrics["si_sdr_db"] = si_sdr(reference[heard], estimate[heard]).mean().item()
    metrics["notes"] = [f"{n_silent} of {silent.numel()} references are silent: spectral "
                        "convergence and SI-SDR are averaged over the others"]
    return metrics


class DataStatistics:
    """Loss normalisers from training audio: l2 = Var(x), spec = mean over clips of ||S(x)||_F.

    Feed it clips of the training `sample_length` (the spectral norm grows with clip length, so the
    normaliser only matches the loss scale on clips of the same length). Sums are kept in float64;
    call `all_reduce()` under torch.distributed before reading the values so every rank agrees.
    """

    def __init__(self, sample_rate: int) -> None:
        self.resolution = metric_stft(sample_rate)
        self.sums = torch.zeros(5, dtype=torch.float64)  # samples, sum x, sum x^2, clips, sum ||S||

    @torch.no_grad()
    def update(self, audio: torch.Tensor) -> None:
        """Add a batch of clips [N, C, T] (or [N, T])."""
        x = audio.double()
        spec_norms = _frobenius(stft_magnitude(audio, *self.resolution)).double()
        batch = torch.stack(
            [
                torch.tensor(float(x.numel()), dtype=torch.float64, device=x.device),
                x.sum(),
                x.pow(2).sum(),
                torch.tensor(float(spec_norms.numel()), dtype=torch.float64, device=x.device),
                spec_norms.sum(),
            ]
        )
        self.sums += batch.cpu()

    def all_reduce(self, device: torch.device | str = "cpu") -> None:
        """Sum the statistics over ranks (pass the process group's device, e.g. cuda for NCCL)."""
        if dist.is_available() and dist.is_initialized():
            sums = self.sums.to(device)
            dist.all_reduce(sums)
            self.sums = sums.cpu()

    @classmethod
    def from_clips(cls, clips: Iterable[torch.Tensor], sample_rate: int) -> DataStatistics:
        stats = cls(sample_rate)
        for clip in clips:
            stats.update(clip)
        return stats

    @property
    def l2(self) -> float:
        n, s, s2 = self.sums[:3].tolist()
        if n == 0:
            raise ValueError("DataStatistics has seen no audio")
        return max(s2 / n - (s / n) ** 2, 0.0)

    @property
    def spec(self) -> float:
        clips, total = self.sums[3:].tolist()
        if clips == 0:
            raise ValueError("DataStatistics has seen no audio")
        return total / clips

    def as_dict(self) -> dict[str, float]:
        return {"l2": self.l2, "spec": self.spec}
