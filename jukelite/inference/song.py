"""What a sampling run leaves behind: the `Song`, and its output directory.

A run's output directory is its own checkpoint: `song.json` holds the request (every setting
that decides the codes) and the progress so far, `codes.safetensors` the codes of every level
after every window. `jukelite sample --resume OUTDIR` reads both and carries on.

    OUTDIR/song.json               request, status, per-level timings, versions, warnings
    OUTDIR/codes.safetensors       level_L [n_samples, tokens] for every level sampled so far
    OUTDIR/level_L/sample_i.wav    each finished level decoded by its own VQ-VAE (the top
    OUTDIR/level_L/sample_i.png    level first: a preview), with a spectrogram
    OUTDIR/alignment/              lyric timings when asked for: alignment.json, sample_i.lrc
                                   and sample_i.png (the attention map they come from)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from jukelite.audio import save_audio
from jukelite.fileio import write_json_atomic
from jukelite.inference.codes import load_codes, save_codes

if TYPE_CHECKING:
    from jukelite.inference.alignment import SongAlignment

SONG_FORMAT = "jukelite-song/1"


@dataclass
class Song:
    """Generated audio [n_samples, channels, samples] in [-1, 1], its codes and its record
    (and the lyric alignment when it was asked for)."""

    audio: Tensor
    sample_rate: int
    codes: dict[int, Tensor]
    record: dict[str, Any] = field(default_factory=dict)
    alignment: SongAlignment | None = None

    @property
    def level(self) -> int:
        """The level the audio was rendered from (the finest sampled)."""
        return min(self.codes)

    def save(self, directory: str | Path) -> Path:
        """WAVs and spectrograms (`level_L/sample_i.*`), codes and the JSON record."""
        directory = Path(directory)
        save_level_audio(directory, self.level, self.audio, self.sample_rate)
        save_progress(directory, self.codes, self.record, self.sample_rate)
        if self.alignment is not None:
            self.alignment.save(directory)
        return directory


def save_level_audio(directory: Path, level: int, audio: Tensor, sample_rate: int) -> list[Path]:
    """`level_L/sample_i.wav` and its spectrogram `level_L/sample_i.png` for every sample."""
    from jukelite.inference.plots import save_spectrogram_png

    paths = []
    for index, sample in enumerate(audio):
        path = directory / f"level_{level}" / f"sample_{index}.wav"
        save_audio(path, sample, sample_rate)
        save_spectrogram_png(path.with_suffix(".png"), sample, sample_rate,
                             title=f"level {level}, sample {index}")
        paths.append(path)
    return paths


def save_progress(
    directory: Path, codes: dict[int, Tensor], record: dict[str, Any], sample_rate: int
) -> None:
    """Codes first, then the record that describes them: a kill between the two leaves a record
    that is at most one window behind its codes, which resuming tolerates."""
    info = {"sample_rate": sample_rate, "audio_samples": record["request"]["total_samples"],
            "hop_lengths": record.get("hop_lengths", {})}
    save_codes(directory / "codes.safetensors", codes, info)
    write_json_atomic(directory / "song.json", record)


def read_progress(directory: str | Path) -> tuple[dict[str, Any], dict[int, Tensor]]:
    """The record and codes of a run directory (codes empty if it stopped before any)."""
    import json

    directory = Path(directory)
    path = directory / "song.json"
    if not path.is_file():
        raise FileNotFoundError(f"{directory} is not a sampling run: it has no song.json")
    try:
        record = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON ({exc})") from exc
    if record.get("format") != SONG_FORMAT:
        raise ValueError(f"{path}: format {record.get('format')!r}, expected {SONG_FORMAT!r}")
    codes_path = directory / "codes.safetensors"
    codes = load_codes(codes_path)[0] if codes_path.is_file() else {}
    return record, codes


# The files a run owns, by folder ("" = the run directory itself); `clear_run` removes these and
# nothing else, so user files kept in an output folder survive `--overwrite`. An atomic write's
# hidden temporary (".NAME.<random>.tmp<suffix>") left by a killed run belongs to the run too.
RUN_LAYOUT: dict[str, str] = {
    "": r"song\.json|codes\.safetensors",
    "level_*": r"sample_\d+\.(wav|png)",
    "alignment": r"alignment\.json|sample_\d+\.(lrc|png)",
}
_LEVEL_DIR = re.compile(r"level_\d+")


def _owned(name: str, pattern: str) -> bool:
    if re.fullmatch(pattern, name):
        return True
    temporary = re.fullmatch(r"\.(.+)\.[^.]+\.tmp(\.[^.]+)?", name)
    return temporary is not None and re.fullmatch(pattern, temporary.group(1)) is not None


def run_files(directory: str | Path) -> list[Path]:
    """The files of a run's layout present in `directory` (see the module docstring)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = []
    for folder, pattern in RUN_LAYOUT.items():
        if folder == "level_*":
            folders = [p for p in directory.glob("level_*")
                       if p.is_dir() and not p.is_symlink() and _LEVEL_DIR.fullmatch(p.name)]
        elif folder:
            candidate = directory / folder
            folders = [candidate] if candidate.is_dir() and not candidate.is_symlink() else []
        else:
            folders = [directory]
        for where in folders:
            found += sorted(p for p in where.iterdir()
                            if _owned(p.name, pattern) and (p.is_file() or p.is_symlink()))
    return found


def clear_run(directory: str | Path) -> list[Path]:
    """Remove every file of an earlier run in `directory` (and its folders once empty), so a
    replacing run leaves no stale level or alignment behind; other files are kept."""
    removed = run_files(directory)
    for path in removed:
        path.unlink(missing_ok=True)
    for folder in {path.parent for path in removed} - {Path(directory)}:
        if not any(folder.iterdir()):
            folder.rmdir()
    return removed


def empty_codes(n_samples: int) -> Tensor:
    return torch.zeros(n_samples, 0, dtype=torch.long)
