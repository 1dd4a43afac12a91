"""A small lyrics recognizer (CTC over characters) and the character error rate.

The model reads log-mel frames (100 per second) through a stack of residual dilated 1-D
convolutions and emits, per frame, a distribution over the units plus the CTC blank; greedy
decoding collapses repeats and drops blanks. It is trained on short sung spans of demo songs cut
with their exact word timings (a few words and their text each) and then transcribes whole clips.

Units are ``"characters"`` (letters, apostrophe, space) or ``"vowels"`` (only each word's vowel
letters, and spaces) for audio where consonants are out of reach; reports say which was used.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn
from torchaudio.functional import edit_distance

from jukelite.evaluation.features import AudioLike, log_mel

UNITS: dict[str, str] = {
    "characters": " abcdefghijklmnopqrstuvwxyz'",
    "vowels": " aeiouy",
}
BLANK = 0


# ---------------------------------------------------------------------------- text and CER
def to_units(text: str, units: str = "characters") -> str:
    """Lower-case ``text`` reduced to the unit alphabet: words separated by single spaces.

    Anything outside the alphabet (punctuation, line breaks, digits) separates words, so
    ``"Oh, my\\nlove"`` becomes ``"oh my love"``; for ``"vowels"`` each word keeps only its vowels
    and words left empty disappear.
    """
    if units not in UNITS:
        raise ValueError(f"units must be one of {sorted(UNITS)}, got {units!r}")
    alphabet = set(UNITS["characters"]) - {" "}
    words = "".join(c if c in alphabet else " " for c in text.lower()).split()
    if units == "vowels":
        keep = set(UNITS["vowels"])
        words = [w for w in ("".join(c for c in word if c in keep) for word in words) if w]
    return " ".join(words)


def character_error_rate(
    references: Sequence[str], hypotheses: Sequence[str], units: str = "characters"
) -> float:
    """Corpus CER: total edit distance over total reference length, after :func:`to_units`.

    Totals (not a mean of per-clip rates) so short clips do not dominate. It can exceed 1
    when the hypotheses insert a lot. References with no units at all give 0 for empty
    hypotheses and count every hypothesis unit as an error otherwise.
    """
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(hypotheses)} hypotheses for {len(references)} references")
    edits = total = 0
    for ref, hyp in zip(references, hypotheses, strict=True):
        ref_units, hyp_units = to_units(ref, units), to_units(hyp, units)
        edits += edit_distance(ref_units, hyp_units)
        total += len(ref_units)
    return edits / max(total, 1)


# ---------------------------------------------------------------------------- training data
def lyric_segments(
    audio: np.ndarray,
    sample_rate: int,
    timing: Sequence[tuple[float, float, str]],
    max_seconds: float = 1.5,
    margin: float = 0.05,
) -> list[tuple[np.ndarray, str]]:
    """Short sung spans of a song with their text, cut with exact word timings.

    One span starts at every word and takes as many following words as fit in
    ``max_seconds`` (at least one), so spans overlap and each word is heard in several
    contexts. A span reaches ``margin`` seconds beyond its words, but never into a neighbour.
    """
    audio = np.asarray(audio)
    n = audio.shape[-1]
    words = [(float(s), float(e), str(w)) for s, e, w in timing if e > s]
    spans = []
    for i, (start, _, _) in enumerate(words):
        j = i
        while j + 1 < len(words) and words[j + 1][1] - start <= max_seconds:
            j += 1
        left = max(start - margin, words[i - 1][1] if i > 0 else 0.0)
        right = words[j][1] + margin
        if j + 1 < len(words):
            right = min(right, words[j + 1][0])
        a, b = int(left * sample_rate), min(int(math.ceil(right * sample_rate)), n)
        if b > a:
            spans.append((audio[..., a:b], " ".join(w for _, _, w in words[i : j + 1])))
    return spans


# ---------------------------------------------------------------------------- the model
class _Block(nn.Module):
    """A residual dilated convolution: wide context without a recurrent (slow on CPU) layer."""

    def __init__(self, width: int, dilation: int, kernel: int = 5, dropout: float = 0.1):
        super().__init__()
        self.conv = nn.Conv1d(width, width, kernel, padding=dilation * (kernel - 1) // 2,
                              dilation=dilation)
        self.norm = nn.LayerNorm(width)  # per frame, so padding never changes other frames' stats
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        h = self.norm(self.conv(x).transpose(1, 2)).transpose(1, 2)
        return x + self.dropout(nn.functional.gelu(h))


class CTCNet(nn.Module):
    """Log-mel frames ``[B, T, F]`` -> per-frame log-probabilities ``[B, T, units + 1]``.

    A stack of residual dilated convolutions (dilations 1, 2, 4, 8, 1, 2: about 0.6 s of
    context at 100 frames per second, i.e. a syllable and its neighbours) instead of a GRU,
    whose step-by-step backward pass dominated CPU training time.
    """

    DILATIONS = (1, 2, 4, 8, 1, 2)

    def __init__(self, n_inputs: int, n_outputs: int, width: int = 64):
        super().__init__()
        self.inp = nn.Conv1d(n_inputs, width, 3, padding=1)
        self.blocks = nn.Sequential(*(_Block(width, d) for d in self.DILATIONS))
        self.out = nn.Conv1d(width, n_outputs, 1)

    def forward(self, frames: Tensor) -> Tensor:
        h = self.blocks(self.inp(frames.transpose(1, 2)))
        return self.out(h).transpose(1, 2).log_softmax(dim=-1)


def _pad(frames: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
    lengths = torch.tensor([f.shape[0] for f in frames])
    batch = torch.zeros(len(frames), int(lengths.max()), frames[0].shape[1])
    for i, f in enumerate(frames):
        batch[i, : f.shape[0]] = f
    return batch, lengths


def greedy_decode(log_probs: Tensor, lengths: Tensor, alphabet: str) -> list[str]:
    """Best unit per frame, repeats collapsed, blanks dropped, spaces tidied."""
    best = log_probs.argmax(dim=-1)
    texts = []
    for row, length in zip(best.tolist(), lengths.tolist(), strict=True):
        out, last = [], BLANK
        for k in row[:length]:
            if k != last and k != BLANK:
                out.append(alphabet[k - 1])
            last = k
        texts.append(re.sub(" +", " ", "".join(out)).strip())
    return texts


@dataclass
class LyricsRecognizer:
    """A trained :class:`CTCNet` with its input statistics, units and sample rate."""

    network: CTCNet
    sample_rate: int
    units: str
    mean: Tensor
    std: Tensor

    @property
    def alphabet(self) -> str:
        return UNITS[self.units]

    def _frames(self, audio: AudioLike) -> Tensor:
        return (log_mel(audio, self.sample_rate) - self.mean) / self.std

    def transcribe(self, audios: Sequence[AudioLike]) -> list[str]:
        """The recognised text (in units) of each clip, ``[S]`` or ``[C, S]`` at the rate.

        One clip at a time: no padding, so a clip's transcript never depends on its neighbours.
        """
        self.network.eval()
        texts: list[str] = []
        with torch.no_grad():
            for audio in audios:
                frames = self._frames(audio)[None]
                lengths = torch.tensor([frames.shape[1]])
                texts += greedy_decode(self.network(frames), lengths, self.alphabet)
        return texts

    def error_rate(self, audios: Sequence[AudioLike], texts: Sequence[str]) -> float:
        """CER (in this recognizer's units) of its transcripts of ``audios`` against ``texts``."""
        return character_error_rate(texts, self.transcribe(audios), self.units)


def _epoch(lengths: Sequence[int], batch_size: int, generator: torch.Generator) -> list[list[int]]:
    """One pass over the examples in random batches of similar length (less padding): shuffle,
    sort within pools of 8 batches, cut into batches, shuffle the batches."""
    order = torch.randperm(len(lengths), generator=generator).tolist()
    pool = 8 * batch_size
    batches = []
    for i in range(0, len(order), pool):
        chunk = sorted(order[i : i + pool], key=lambda k: lengths[k])
        batches += [chunk[j : j + batch_size] for j in range(0, len(chunk), batch_size)]
    return [batches[k] for k in torch.randperm(len(batches), generator=generator).tolist()]


def _encode(text: str, alphabet: str) -> list[int]:
    return [alphabet.index(c) + 1 for c in text]


def train_recognizer(
    examples: Sequence[tuple[AudioLike, str]],
    sample_rate: int,
    seed: int = 0,
    steps: int = 400,
    batch_size: int = 16,
    units: str = "characters",
    lr: float = 3e-3,
    width: int = 64,
) -> LyricsRecognizer:
    """Train a recognizer with CTC on ``(clip, text)`` pairs; the same seed gives the same model.

    Examples whose text has no units are skipped. The learning rate warms up over the first
    5% of the steps and then decays along a cosine to a tenth.
    """
    if units not in UNITS:
        raise ValueError(f"units must be one of {sorted(UNITS)}, got {units!r}")
    alphabet = UNITS[units]
    frames, targets = [], []
    for audio, text in examples:
        reduced = to_units(text, units)
        if reduced:
            frames.append(log_mel(audio, sample_rate))
            targets.append(torch.tensor(_encode(reduced, alphabet)))
    if not frames:
        raise ValueError("no training examples with lyrics")
    stacked = torch.cat(frames)
    mean, std = stacked.mean(dim=0), stacked.std(dim=0).clamp_min(1e-3)
    frames = [(f - mean) / std for f in frames]
    ctc = nn.CTCLoss(blank=BLANK, zero_infinity=True)
    warmup = max(1, steps // 20)

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, steps - warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        network = CTCNet(frames[0].shape[1], len(alphabet) + 1, width)
        generator = torch.Generator().manual_seed(seed)
        optimizer = torch.optim.Adam(network.parameters(), lr=lr)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        network.train()
        lengths_of = [f.shape[0] for f in frames]
        queue: list[list[int]] = []
        for _ in range(steps):
            if not queue:
                queue = _epoch(lengths_of, batch_size, generator)
            picked = queue.pop()
            batch, lengths = _pad([frames[i] for i in picked])
            log_probs = network(batch).transpose(0, 1)  # [T, B, V] for CTCLoss
            target_lengths = torch.tensor([targets[i].numel() for i in picked])
            loss = ctc(log_probs, torch.cat([targets[i] for i in picked]), lengths,
                       target_lengths)
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(network.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
    network.eval()
    return LyricsRecognizer(network, int(sample_rate), units, mean, std)
