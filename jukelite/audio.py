"""Audio reading, writing, resampling and channel conversion.

All audio inside jukelite is a float32 ``torch.Tensor`` shaped ``[channels, samples]`` in
[-1, 1]. Reading uses soundfile (libsndfile), which decodes every format in
:data:`AUDIO_EXTENSIONS` here, and reads only the requested span so long songs can be windowed
cheaply. Every problem with a file raises :class:`AudioError` naming that file, because a bad
file deep inside a dataset is otherwise impossible to find.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as taf

from jukelite.fileio import atomic_path

#: Suffixes (lowercase) that libsndfile 1.2 decodes here; checked by writing and reading each.
#: ``.aif`` is read by content (libsndfile only refuses to *write* by that suffix).
AUDIO_EXTENSIONS: tuple[str, ...] = (".wav", ".flac", ".ogg", ".opus", ".mp3", ".aiff", ".aif")

# Formats save_audio writes; lossy formats are left out because their subtypes differ.
_WRITE_FORMATS: dict[str, str] = {
    "": "WAV",
    ".wav": "WAV",
    ".flac": "FLAC",
    ".aiff": "AIFF",
    ".aif": "AIFF",
}

PathLike = str | os.PathLike[str]


class AudioError(ValueError):
    """A problem with one audio file; the message always starts with the file's path."""

    def __init__(self, path: PathLike, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


@dataclass(frozen=True)
class AudioInfo:
    """Header facts about an audio file (no samples decoded)."""

    path: Path
    sample_rate: int
    channels: int
    frames: int

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.frames / self.sample_rate


def _open_error(path: Path, err: Exception) -> AudioError:
    reason = str(err)
    # libsndfile repeats the path in its message; keep only the reason after it.
    prefix = f"Error opening {str(path)!r}: "
    if reason.startswith(prefix):
        reason = reason[len(prefix) :]
    return AudioError(path, f"cannot read audio ({reason})")


def audio_info(path: PathLike) -> AudioInfo:
    """Read the header of ``path``; raise AudioError if it is missing, unreadable or empty."""
    p = Path(path)
    if not p.is_file():
        raise AudioError(p, "file not found" if not p.exists() else "not a regular file")
    if p.stat().st_size == 0:
        raise AudioError(p, "file is empty (0 bytes)")
    try:
        info = sf.info(str(p))
    except (RuntimeError, OSError) as err:  # soundfile raises LibsndfileError (a RuntimeError)
        raise _open_error(p, err) from err
    if info.frames <= 0:
        raise AudioError(p, "audio is empty (0 samples)")
    if info.samplerate <= 0 or info.channels <= 0:
        raise AudioError(p, f"bad header (sample rate {info.samplerate}, {info.channels} channels)")
    return AudioInfo(
        path=p,
        sample_rate=int(info.samplerate),
        channels=int(info.channels),
        frames=int(info.frames),
    )


def resample(audio: torch.Tensor, orig_sr: int, new_sr: int) -> torch.Tensor:
    """Band-limited resampling along the last axis (torchaudio's windowed sinc)."""
    if orig_sr <= 0 or new_sr <= 0:
        raise ValueError(f"sample rates must be positive, got {orig_sr} -> {new_sr}")
    if orig_sr == new_sr:
        return audio
    return taf.resample(audio, int(orig_sr), int(new_sr))


def convert_channels(audio: torch.Tensor, channels: int, mix: float = 0.5) -> torch.Tensor:
    """Convert ``[C, T]`` audio to ``channels`` channels.

    Stereo -> mono is ``mix * L + (1 - mix) * R`` (Jukebox's downmix; the dataset draws ``mix``
    at random in [0, 1) as an augmentation). Mono -> stereo duplicates the channel. Other
    conversions are refused rather than guessed.
    """
    if audio.dim() != 2:
        raise ValueError(f"expected audio shaped [channels, samples], got {tuple(audio.shape)}")
    if not 0.0 <= mix <= 1.0:
        raise ValueError(f"mix must be in [0, 1], got {mix}")
    have = audio.shape[0]
    if have == channels:
        return audio
    if have == 2 and channels == 1:
        return mix * audio[0:1] + (1.0 - mix) * audio[1:2]
    if have == 1 and channels == 2:
        return audio.expand(2, -1).clone()
    raise ValueError(f"cannot convert {have}-channel audio to {channels} channels")


def _to_channels(p: Path, audio: torch.Tensor, channels: int | None) -> torch.Tensor:
    have = audio.shape[0]
    if channels is None or channels == have:
        return audio
    if channels == 1:
        return audio.mean(dim=0, keepdim=True)
    if channels == 2 and have == 1:
        return audio.expand(2, -1).clone()
    raise AudioError(p, f"has {have} channels; cannot convert to {channels} "
                        "(supported: downmix to 1, or mono to 2)")


def load_audio(
    path: PathLike,
    sample_rate: int | None = None,
    channels: int | None = None,
    offset: float = 0.0,
    duration: float | None = None,
    min_duration: float = 0.0,
) -> torch.Tensor:
    """Load ``path`` as float32 ``[channels, samples]``.

    Only the span ``[offset, offset + duration)`` seconds (at the file's rate) is decoded; a span
    running past the end is cut at the end. ``sample_rate=None`` keeps the file's rate and
    ``channels=None`` its channel count; ``channels=1`` averages all channels and ``channels=2``
    duplicates mono. ``min_duration`` is checked against the span actually read, in seconds.
    """
    p = Path(path)
    if offset < 0:
        raise ValueError(f"{p}: offset must be >= 0 seconds, got {offset}")
    if duration is not None and duration <= 0:
        raise ValueError(f"{p}: duration must be > 0 seconds, got {duration}")
    if channels is not None and channels < 1:
        raise ValueError(f"{p}: channels must be >= 1, got {channels}")
    info = audio_info(p)
    sr = info.sample_rate
    start = int(round(offset * sr))
    if start >= info.frames:
        raise AudioError(p, f"offset {offset:.3f} s is at or past the end of the audio "
                            f"({info.duration:.3f} s)")
    frames = -1 if duration is None else max(1, int(round(duration * sr)))
    try:
        data, _ = sf.read(str(p), start=start, frames=frames, dtype="float32", always_2d=True)
    except (RuntimeError, OSError) as err:
        raise _open_error(p, err) from err
    if data.shape[0] == 0:
        raise AudioError(p, "audio is empty (0 samples)")
    got = data.shape[0] / sr
    if got < min_duration:
        raise AudioError(p, f"too short: {got:.3f} s of audio, need at least {min_duration:.3f} s")
    bad = int(data.size - np.isfinite(data).sum())
    if bad:
        raise AudioError(p, f"contains {bad} NaN or infinite sample values")
    audio = torch.from_numpy(np.ascontiguousarray(data.T))
    audio = _to_channels(p, audio, channels)
    if sample_rate is not None:
        audio = resample(audio, sr, sample_rate)
    return audio.contiguous()


def save_audio(
    path: PathLike,
    audio: torch.Tensor | np.ndarray,
    sample_rate: int,
    subtype: str = "PCM_16",
) -> None:
    """Write ``audio`` (``[C, T]`` or ``[T]``) atomically; the format follows the suffix.

    Supported suffixes: .wav (also used when there is none), .flac, .aiff/.aif. Values are
    clamped to [-1, 1]; NaN or inf samples are refused because they would be written as
    silence or full-scale clicks without anyone noticing.
    """
    p = Path(path)
    fmt = _WRITE_FORMATS.get(p.suffix.lower())
    if fmt is None:
        raise AudioError(p, f"cannot write suffix {p.suffix!r}; use one of "
                            f"{', '.join(s for s in _WRITE_FORMATS if s)}")
    if not sf.check_format(fmt, subtype):
        raise AudioError(p, f"subtype {subtype!r} is not valid for {fmt}")
    if not isinstance(sample_rate, int | np.integer) or sample_rate <= 0:
        raise AudioError(p, f"sample_rate must be a positive integer, got {sample_rate!r}")
    if isinstance(audio, torch.Tensor):
        arr = audio.detach().to("cpu", torch.float32).numpy()
    else:
        arr = np.asarray(audio, dtype=np.float32)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise AudioError(p, f"expected audio shaped [channels, samples] or [samples], "
                            f"got {arr.shape}")
    bad = int(arr.size - np.isfinite(arr).sum())
    if bad:
        raise AudioError(p, f"refusing to write {bad} NaN or infinite sample values")
    arr = np.clip(arr, -1.0, 1.0).T
    with atomic_path(p) as tmp:
        sf.write(str(tmp), arr, int(sample_rate), subtype=subtype, format=fmt)

