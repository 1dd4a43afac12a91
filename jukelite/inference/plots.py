"""PNG figures of generated audio and of lyric alignments.

Figures are drawn with matplotlib's object-oriented API on an Agg canvas, never through pyplot:
pyplot keeps global figure state (leaking memory in long runs, unsafe across threads) and may
pick an interactive backend on a desktop. Every PNG is written through `atomic_path`, so a
viewer polling the output folder never sees half a file.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torchaudio.functional as taf
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from numpy.typing import ArrayLike

from jukelite.fileio import atomic_path

PathLike = str | os.PathLike[str]

FIGSIZE = (10.0, 4.0)  # inches, at DPI: 1000 x 400 pixels
DPI = 100
TOP_DB = 80.0  # dynamic range shown by the spectrogram colour map
MAX_PIXELS = 2048  # longer axes are max-pooled first: a 10-minute song has ~200k top tokens
MAX_LABELS = 40  # lyric tick labels on the alignment plot's y axis
_POWER_FLOOR = 1e-10  # -100 dB: silence stays finite, with no log10(0) warnings
_HZ_TICKS = (100, 250, 500, 1000, 2000, 4000, 8000, 16000)


def _to_numpy(array: torch.Tensor | ArrayLike) -> np.ndarray:
    if isinstance(array, torch.Tensor):
        array = array.detach().float().cpu().numpy()
    return np.asarray(array, dtype=np.float32)


def _mono(audio: torch.Tensor | ArrayLike) -> np.ndarray:
    """[channels, samples] or [samples] -> [samples]: the plain average of the channels."""
    data = _to_numpy(audio)
    if data.ndim == 2:
        data = data.mean(axis=0)
    elif data.ndim != 1:
        raise ValueError(f"audio must be [channels, samples] or [samples], got {data.shape}")
    return np.nan_to_num(data, nan=0.0, posinf=0.0, neginf=0.0)


def _fft_size(sample_rate: int) -> int:
    """A power of two near 50 ms (2048 at 44.1 kHz, 512 at 8 kHz), within [256, 4096]."""
    return int(min(4096, max(256, 2 ** round(math.log2(sample_rate * 0.05)))))


def _hz_to_mel(hz: ArrayLike) -> np.ndarray:
    """Slaney's mel scale (linear to 1 kHz, logarithmic above), the scale of the filter bank.
    Written out because importing librosa for it costs seconds on every `jukelite sample`."""
    hz = np.asarray(hz, dtype=np.float64)
    linear = hz / (200.0 / 3)
    log_part = 15.0 + np.log(np.maximum(hz, 1e-10) / 1000.0) / (math.log(6.4) / 27.0)
    return np.where(hz >= 1000.0, log_part, linear)


def _mel_bands(sample_rate: int, n_fft: int) -> int:
    """Up to 128 bands, fewer when the STFT bins are too coarse to give every band a bin.

    The n + 2 mel points are evenly spaced in mel from 0 Hz, so the narrowest gap is the lowest;
    keeping it at least one bin wide avoids all-zero filters (and torchaudio's warning about
    them), which 128 bands would give from ~390 kHz.
    """
    fit = int(_hz_to_mel(sample_rate / 2) / _hz_to_mel(sample_rate / n_fft)) - 1
    return max(1, min(128, fit))


def _mel_db(mono: np.ndarray, sample_rate: int) -> tuple[np.ndarray, int, int]:
    """Power mel spectrogram in dB [bands, frames], clipped to TOP_DB below its peak."""
    n_fft = _fft_size(sample_rate)
    hop = n_fft // 4
    signal = torch.from_numpy(mono)
    if signal.numel() < n_fft:  # shorter than one window: pad with silence
        signal = torch.nn.functional.pad(signal, (0, n_fft - signal.numel()))
    spec = torch.stft(signal, n_fft, hop, window=torch.hann_window(n_fft), center=True,
                      return_complex=True).abs().square()  # [n_fft // 2 + 1, frames]
    n_mels = _mel_bands(sample_rate, n_fft)
    bank = taf.melscale_fbanks(n_fft // 2 + 1, 0.0, sample_rate / 2, n_mels, sample_rate,
                               norm="slaney", mel_scale="slaney")  # [freqs, mels]
    db = taf.amplitude_to_DB(bank.T @ spec, multiplier=10.0, amin=_POWER_FLOOR, db_multiplier=0.0,
                             top_db=TOP_DB)
    return db.numpy(), hop, n_mels


def _save(figure: Figure, path: PathLike) -> Path:
    FigureCanvasAgg(figure)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=DPI)  # the temp name's suffix is ".tmp.png"
    return Path(path)


def _hz_label(hz: int) -> str:
    return f"{hz // 1000}k" if hz >= 1000 else str(hz)


def _spectrogram_figure(mono: np.ndarray, sample_rate: int, title: str) -> Figure:
    """The y axis is in mels, so the bands (evenly spaced in mel) are equal rows of one image;
    librosa's specshow would draw a mesh (~50 ms more per PNG) on a symlog stand-in for the scale.
    """
    db, hop, n_mels = _mel_db(mono, sample_rate)
    frame_s = hop / sample_rate
    step = float(_hz_to_mel(sample_rate / 2)) / (n_mels + 1)  # band m is centred at (m + 1) step
    figure = Figure(figsize=FIGSIZE, layout="constrained")
    axes = figure.add_subplot()
    extent = (-0.5 * frame_s, (db.shape[1] - 0.5) * frame_s, 0.5 * step, (n_mels + 0.5) * step)
    image = axes.imshow(db, origin="lower", aspect="auto", extent=extent, cmap="magma",
                        interpolation="nearest")
    ticks = [hz for hz in _HZ_TICKS if step <= _hz_to_mel(hz) <= n_mels * step]
    axes.set_yticks(_hz_to_mel(ticks), [_hz_label(hz) for hz in ticks])
    axes.set_xlabel("Time (s)")
    axes.set_ylabel("Frequency (Hz)")
    if title:
        axes.set_title(title)
    figure.colorbar(image, ax=axes, label="dB")
    return figure


def save_spectrogram_png(
    path: PathLike, audio: torch.Tensor | ArrayLike, sample_rate: int, title: str = ""
) -> Path:
    """A log-power (dB) mel spectrogram of the mono mix of `audio` as a PNG; returns `path`.

    Bands are drawn evenly (mel spacing) with ticks labelled in Hz. Audio shorter than one FFT
    window is padded with silence; silence shows as a flat -100 dB.
    """
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be > 0, got {sample_rate}")
    return _save(_spectrogram_figure(_mono(audio), sample_rate, title), path)


def _max_pool(matrix: np.ndarray, axis: int, limit: int) -> np.ndarray:
    """Shrink `axis` to at most `limit` entries by taking the max of consecutive groups, so a
    short peak of attention stays visible instead of being averaged away."""
    size = matrix.shape[axis]
    if size <= limit:
        return matrix
    group = math.ceil(size / limit)
    return np.maximum.reduceat(matrix, np.arange(0, size, group), axis=axis)


def _word_ticks(characters: Sequence[str]) -> tuple[list[int], list[str]]:
    """Positions and text of the words (runs of non-space characters), thinned to MAX_LABELS."""
    positions, words, current = [], [], ""
    for index, char in enumerate(characters):
        if char.isspace():
            current = ""
            continue
        if not current:
            positions.append(index)
            words.append("")
        current += char
        words[-1] = current
    step = max(1, math.ceil(len(words) / MAX_LABELS))
    labels = [w if len(w) <= 12 else w[:11] + "…" for w in words[::step]]
    return positions[::step], labels


def save_alignment_png(
    path: PathLike,
    alignment: torch.Tensor | ArrayLike,
    seconds_per_token: float,
    characters: Sequence[str],
    title: str = "",
) -> Path:
    """Attention weights [tokens, chars] as an image (time in s across, lyric character index
    up, labelled with every few words); returns `path`."""
    matrix = _to_numpy(alignment)
    if matrix.ndim != 2:
        raise ValueError(f"alignment must be [tokens, chars], got {matrix.shape}")
    tokens, chars = matrix.shape
    if len(characters) != chars:
        raise ValueError(f"{len(characters)} characters for an alignment of {chars} columns")
    if seconds_per_token <= 0:
        raise ValueError(f"seconds_per_token must be > 0, got {seconds_per_token}")
    figure = Figure(figsize=(FIGSIZE[0], 6.0), layout="constrained")
    axes = figure.add_subplot()
    if tokens and chars:
        pooled = _max_pool(_max_pool(np.nan_to_num(matrix), 0, MAX_PIXELS), 1, MAX_PIXELS)
        extent = (0.0, tokens * seconds_per_token, -0.5, chars - 0.5)
        image = axes.imshow(pooled.T, origin="lower", aspect="auto", extent=extent,
                            cmap="viridis", interpolation="nearest")
        figure.colorbar(image, ax=axes, label="attention")
        positions, labels = _word_ticks(characters)
        axes.set_yticks(positions)
        axes.set_yticklabels(labels, fontsize=7)
    else:
        axes.text(0.5, 0.5, "empty alignment", ha="center", va="center",
                  transform=axes.transAxes)
    axes.set_xlabel("Time (s)")
    axes.set_ylabel("Lyrics (character index)")
    if title:
        axes.set_title(title)
    return _save(figure, path)
