"""Lyric-to-music alignment read off the attention of a lyrics prior, as Jukebox does.

One attention head of a layer that looks at the lyrics (an encoder-decoder layer of a
`lyrics: encoder` prior, a prime layer of a `lyrics: single` prior) learns to follow the
character being sung. Its weights, gathered window by window over a sampled level, form a
[tokens, characters] matrix; a monotone path through it gives each character, word and line a
start time, written out as JSON, LRC and a PNG.

    OUTDIR/alignment/alignment.json     {**meta, seconds_per_token, samples: [...]}
    OUTDIR/alignment/sample_i.lrc       [mm:ss.xx]line per lyric line
    OUTDIR/alignment/sample_i.png       the attention matrix
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import ArrayLike
from torch import Tensor, nn

from jukelite.data.lyrics import PAD_ID, LyricsTokenizer
from jukelite.fileio import write_json_atomic, write_text_atomic
from jukelite.inference.plots import save_alignment_png
from jukelite.inference.schedule import HOP_FRACTION_TOP, WindowSchedule
from jukelite.prior.attention import AttnType, SparseAttention
from jukelite.prior.model import Conditioning, LevelPrior, PriorConfig, SongConditions

PathLike = str | os.PathLike[str]

#: The attention type through which each lyrics mode's music positions see the lyrics.
LYRIC_ATTENTION = {"encoder": AttnType.ENC_DEC, "single": AttnType.PRIME}


# ---------------------------------------------------------------------------------------------
# Which head.


def alignment_layer(config: PriorConfig, blocks: Sequence[nn.Module]) -> tuple[int, int]:
    """(layer, head) whose attention aligns lyrics: `config.alignment_layer`/`alignment_head`,
    layer -1 meaning the last layer that attends to the lyrics.

    Checked up front, so a wrong recipe fails before minutes of sampling, not after.
    """
    if config.lyrics not in LYRIC_ATTENTION:
        raise ValueError(f"this prior has no lyrics (lyrics={config.lyrics!r}): nothing to align")
    wanted = LYRIC_ATTENTION[config.lyrics]
    kinds = [AttnType(block.attn.attn_type) for block in blocks]
    usable = [index for index, kind in enumerate(kinds) if kind == wanted]
    if not usable:
        raise ValueError(f"no layer of this prior has {wanted.name} attention")
    layer = config.alignment_layer
    if layer == -1:
        layer = usable[-1]
    elif not 0 <= layer < len(kinds):
        raise ValueError(
            f"alignment_layer={layer} is outside the prior's {len(kinds)} layers; "
            f"{wanted.name} layers: {usable}"
        )
    elif kinds[layer] != wanted:
        present = sorted({kind.name for kind in kinds})
        raise ValueError(
            f"alignment_layer={layer} has {kinds[layer].name} attention, but lyrics="
            f"{config.lyrics!r} aligns through {wanted.name} layers: {usable} (this prior has "
            f"{', '.join(present)})"
        )
    heads = blocks[layer].attn.heads
    if not 0 <= config.alignment_head < heads:
        raise ValueError(f"alignment_head={config.alignment_head} is outside [0, {heads})")
    return layer, config.alignment_head


# ---------------------------------------------------------------------------------------------
# One window.


class _Captured(Exception):
    """Raised by the hook once the layer's inputs are in hand, so later layers are skipped."""


def _layer_inputs(
    prior: LevelPrior, tokens: Tensor, cond: Conditioning, layer: int
) -> tuple[Tensor, Tensor | None]:
    """The attention module's inputs (x after ln_0, encoder_kv) at `layer` in a full pass."""
    captured: dict[str, Tensor | None] = {}

    def hook(module: nn.Module, args: tuple, kwargs: dict) -> None:
        captured["x"] = args[0]
        captured["encoder_kv"] = args[1] if len(args) > 1 else kwargs.get("encoder_kv")
        raise _Captured

    attn = prior.transformer.blocks[layer].attn
    handle = attn.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        prior.logits(tokens, cond)
    except _Captured:
        pass
    finally:
        handle.remove()
    if "x" not in captured:
        raise RuntimeError(f"layer {layer} was not reached by the forward pass")
    return captured["x"], captured["encoder_kv"]


def _head_rows(linear: nn.Linear, x: Tensor, first: int, size: int) -> Tensor:
    """Output features [first, first + size) of `linear` (one head's slice), computed alone."""
    rows = slice(first, first + size)
    bias = None if linear.bias is None else linear.bias[rows]
    return F.linear(x, linear.weight[rows], bias).float()


@torch.no_grad()
def window_attention(
    prior: LevelPrior, tokens: Tensor, cond: Conditioning, layer: int, head: int
) -> Tensor:
    """Probabilities [N, n_ctx, n_tokens] with which each music position of one window attends
    to each lyric character, at `layer` and `head`.

    `tokens` [N, seq_len] is the window in the prior's sequence space (as `sample_window`
    returns it). The weights are recomputed from the layer's captured inputs exactly as
    `SparseAttention.forward` uses them; in `single` mode the prime keys past the lyric prefix
    (Jukebox rounds prime_keys up) stay in the softmax but are not returned, so rows may sum
    to less than 1.
    """
    config = prior.config
    if tokens.shape[1] != config.seq_len:
        raise ValueError(f"expected a full window of {config.seq_len} tokens, got {tokens.shape}")
    attn: SparseAttention = prior.transformer.blocks[layer].attn
    if attn.attn_type not in (AttnType.ENC_DEC, AttnType.PRIME):
        raise ValueError(f"layer {layer} has {attn.attn_type.name} attention, not lyrics")
    if not 0 <= head < attn.heads:
        raise ValueError(f"head {head} is outside [0, {attn.heads})")
    x, encoder_kv = _layer_inputs(prior, tokens, cond, layer)
    d = attn.head_dim
    if attn.attn_type == AttnType.ENC_DEC:
        if encoder_kv is None:
            raise ValueError("an ENC_DEC layer needs the lyrics encoder states in `cond`")
        q = _head_rows(attn.c_attn, x, head * d, d)  # c_attn gives queries only
        k = _head_rows(attn.c_enc_kv, encoder_kv, head * d, d)  # [k | v]: keys first
        return torch.softmax(q @ k.transpose(1, 2) / math.sqrt(d), dim=-1)
    # PRIME: every position attends to the first p positions, causally (top-left aligned).
    n_tokens, t = config.n_tokens, x.shape[1]
    p = min(t, attn.prime_keys)
    q = _head_rows(attn.c_attn, x[:, n_tokens:], head * d, d)  # music queries
    k = _head_rows(attn.c_attn, x[:, :p], attn.n_state + head * d, d)  # [q | k | v]
    scores = q @ k.transpose(1, 2) / math.sqrt(d)
    query_pos = torch.arange(n_tokens, t, device=x.device)[:, None]
    hidden = torch.arange(p, device=x.device)[None, :] > query_pos
    weights = torch.softmax(scores.masked_fill(hidden, float("-inf")), dim=-1)
    return weights[:, :, :n_tokens]


# ---------------------------------------------------------------------------------------------
# A whole level.


@torch.no_grad()
def align_level(
    prior: LevelPrior,
    codes: Tensor,
    song: SongConditions,
    hop_length: int,
    layer: int,
    head: int,
    hop_fraction: float = HOP_FRACTION_TOP,
) -> Tensor:
    """Attention [N, total, n_chars] of every music code [N, total] of a level over the song's
    lyrics (`song.lyric_tokens`, n_chars of them).

    Windows follow the sampling schedule, each conditioned as sampling conditions it
    (`LevelPrior.window_inputs`), and each code takes its row from the window that generated
    it (the first window covering it), so the matrix shows what the prior attended to while
    sampling that code. Padding characters (id 0, or outside the song) are left at 0. The
    matrix lives on the CPU in float32.
    """
    config = prior.config
    if config.lyrics not in LYRIC_ATTENTION:
        raise ValueError(f"this prior has no lyrics (lyrics={config.lyrics!r}): nothing to align")
    if codes.ndim != 2:
        raise ValueError(f"codes must be [N, total], got {tuple(codes.shape)}")
    batch, total = codes.shape
    n_chars = len(song.lyric_tokens)
    device = prior.embedding.x_emb.weight.device
    matrix = torch.zeros(batch, total, n_chars)
    done = 0  # codes [0, done) already have their row
    for window in WindowSchedule(total, config.n_ctx, hop_fraction):
        start, end = window.start, window.end
        inputs = prior.window_inputs(song, hop_length, start, batch)
        # Grid attention needs whole windows: pad at the end, where causality hides the padding.
        music = F.pad(codes[:, start:end], (0, config.n_ctx - (end - start))).to(device)
        tokens = prior.sequence(music, inputs.lyrics)
        weights = window_attention(prior, tokens, inputs.cond, layer, head)
        weights = weights[:, done - start : end - start].float().cpu()
        weights = weights * (inputs.lyrics.cpu() != PAD_ID)[:, None, :]
        chars = inputs.lyric_start + torch.arange(config.n_tokens)
        inside = (chars >= 0) & (chars < n_chars)
        matrix[:, done:end, chars[inside]] = weights[:, :, inside]
        done = end
    return matrix


# ---------------------------------------------------------------------------------------------
# Start times.


def _as_matrix(alignment: Tensor | ArrayLike) -> np.ndarray:
    if isinstance(alignment, Tensor):
        alignment = alignment.detach().float().cpu().numpy()
    matrix = np.asarray(alignment, dtype=np.float32)  # no copy for float32 input
    if matrix.ndim != 2:
        raise ValueError(f"alignment must be [tokens, chars], got shape {matrix.shape}")
    return matrix


def char_start_times(alignment: Tensor | ArrayLike, seconds_per_token: float) -> list[float]:
    """Start time (s) of every character of one sample's [tokens, chars] alignment.

    Each token is assigned one character, the assignment never moving backwards in the lyrics,
    so as to maximise the total log attention (a Viterbi/DTW path that may stay or skip ahead
    at every token); a character starts at its first token. Per-token argmaxes with a running
    maximum would be simpler, but one stray peak late in the lyrics would then push every
    character up to it to the same instant; the path instead weighs all the evidence. The
    back-pointers cost one bit per cell (is this character the best predecessor so far), so
    long songs fit in memory. Characters the path skips get times interpolated between their
    neighbours (clamped to the first/last assigned one at the ends).

    librosa.sequence.dtw finds the same path (a paying (1, 0) step, a free (0, 1) step, subseq)
    but holds ~20 bytes per cell, 8 GB for 200k tokens x 2k characters, and the row-stochastic
    transitions of librosa.sequence.viterbi would penalise skips, a different optimum.
    """
    matrix = _as_matrix(alignment)
    tokens, chars = matrix.shape
    if chars == 0:
        return []
    if tokens == 0:
        raise ValueError("an alignment with no tokens has no start times")

    def log_attention(t: int) -> np.ndarray:  # row by row: a long song's matrix is ~1 GB
        return np.log(np.fmax(matrix[t], 1e-12), dtype=np.float64)  # fmax also drops NaN

    score = log_attention(0)  # best total of a path ending at (token t, char c)
    leads = np.zeros((tokens, (chars + 7) // 8), dtype=np.uint8)
    previous_best = np.empty(chars)
    for t in range(1, tokens):
        best = np.maximum.accumulate(score)  # best predecessor among chars <= c
        previous_best[0] = -np.inf
        previous_best[1:] = best[:-1]
        leads[t] = np.packbits(score >= previous_best)  # ties: stay on the later char
        score = best + log_attention(t)
    path = np.empty(tokens, dtype=np.int64)
    path[-1] = int(np.argmax(score))
    for t in range(tokens - 1, 0, -1):
        lead = np.unpackbits(leads[t], count=chars)[: path[t] + 1]
        path[t - 1] = np.flatnonzero(lead)[-1]
    visited, first_token = np.unique(path, return_index=True)
    starts = np.interp(np.arange(chars), visited, first_token.astype(np.float64))
    return [float(s) * seconds_per_token for s in starts]


# ---------------------------------------------------------------------------------------------
# Characters, words, lines.


@dataclass
class LyricAlignment:
    """Start times (s) of one sample's lyrics: characters of the normalised text, words, and
    the lines of the text as written."""

    characters: list[tuple[str, float]] = field(default_factory=list)
    words: list[tuple[str, float]] = field(default_factory=list)
    lines: list[tuple[str, float]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "characters": [{"char": c, "start": round(s, 4)} for c, s in self.characters],
            "words": [{"word": w, "start": round(s, 4)} for w, s in self.words],
            "lines": [{"text": t, "start": round(s, 4)} for t, s in self.lines],
        }

    def to_lrc(self) -> str:
        """Standard LRC: one `[mm:ss.xx]text` line per lyric line, in order."""
        return "".join(f"[{lrc_timestamp(start)}]{text}\n" for text, start in self.lines)


def lrc_timestamp(seconds: float) -> str:
    """`mm:ss.xx` (minutes may exceed 59; hundredths rounded)."""
    hundredths = max(0, round(seconds * 100))
    minutes, rest = divmod(hundredths, 6000)
    return f"{minutes:02d}:{rest // 100:02d}.{rest % 100:02d}"


def _words(characters: list[tuple[str, float]]) -> list[tuple[str, float]]:
    """Maximal runs of non-whitespace characters, each starting when its first character does."""
    words: list[tuple[str, float]] = []
    current: list[str] = []
    start = 0.0
    for char, time in [*characters, (" ", 0.0)]:  # a final space closes the last word
        if char.isspace():
            if current:
                words.append(("".join(current), start))
            current = []
        else:
            if not current:
                start = time
            current.append(char)
    return words


def _lines(text: str, tokenizer: LyricsTokenizer) -> list[str]:
    """The text's lines, split where normalisation keeps a line break, so that each line's
    words are the normalised text's: jukelite's normalisation turns \\r\\n and \\r into \\n,
    Jukebox's deletes \\r (a lone \\r then joins its neighbours, as in the ids)."""
    if tokenizer.normalization == "jukebox":
        return text.split("\n")
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def build_alignment(
    lyrics_text: str,
    tokenizer: LyricsTokenizer,
    alignment: Tensor | ArrayLike,
    seconds_per_token: float,
) -> LyricAlignment:
    """Characters, words and lines of `lyrics_text` with start times from `alignment`.

    Column i of the alignment is character i of the normalised lyrics (the tokenizer encodes
    the normalised text one id per character). Lines are the original text's lines; each is
    normalised on its own to count its words, which then take their times in order, so a
    line keeps its original spelling. Lines with no words are skipped.
    """
    text = tokenizer.normalize(lyrics_text).text
    matrix = _as_matrix(alignment)
    if matrix.shape[1] != len(text):
        raise ValueError(
            f"the alignment has {matrix.shape[1]} characters but the normalised lyrics have "
            f"{len(text)}"
        )
    times = char_start_times(matrix, seconds_per_token)
    characters = list(zip(text, times, strict=True))
    words = _words(characters)
    lines: list[tuple[str, float]] = []
    next_word = 0
    for line in _lines(lyrics_text, tokenizer):
        count = len(tokenizer.normalize(line).text.split())
        if count:
            lines.append((line.strip(), words[next_word][1]))
            next_word += count
    return LyricAlignment(characters, words, lines)


def write_alignment(
    directory: PathLike,
    alignments: Sequence[LyricAlignment],
    matrices: Sequence[Tensor | ArrayLike],
    seconds_per_token: float,
    meta: dict[str, Any],
) -> None:
    """`alignment/alignment.json`, `alignment/sample_{i}.lrc` and `alignment/sample_{i}.png`
    under `directory`, each written atomically."""
    if len(alignments) != len(matrices):
        raise ValueError(f"{len(alignments)} alignments but {len(matrices)} matrices")
    folder = Path(directory) / "alignment"
    for index, (aligned, matrix) in enumerate(zip(alignments, matrices, strict=True)):
        write_text_atomic(folder / f"sample_{index}.lrc", aligned.to_lrc())
        save_alignment_png(folder / f"sample_{index}.png", matrix, seconds_per_token,
                           [char for char, _ in aligned.characters], title=f"sample {index}")
    record = {**meta, "seconds_per_token": seconds_per_token,
              "samples": [aligned.to_dict() for aligned in alignments]}
    write_json_atomic(folder / "alignment.json", record)


# ---------------------------------------------------------------------------------------------
# A sampled song.


@dataclass
class SongAlignment:
    """Lyric timings of each sample of a song and the attention matrices [tokens, characters]
    they were read from."""

    samples: list[LyricAlignment]
    matrices: list[np.ndarray]
    seconds_per_token: float
    meta: dict[str, Any]  # level, layer and head read

    def to_record(self) -> dict[str, Any]:
        """What `song.json` keeps of it."""
        return {**self.meta, "samples": [aligned.to_dict() for aligned in self.samples]}

    def save(self, directory: PathLike) -> None:
        """`alignment/alignment.json`, `alignment/sample_i.lrc`, `alignment/sample_i.png`."""
        write_alignment(directory, self.samples, self.matrices, self.seconds_per_token,
                        self.meta)


def align_song(
    prior: LevelPrior,
    song: SongConditions,
    codes: Tensor,
    hop_length: int,
    sample_rate: int,
    lyrics_text: str,
    tokenizer: LyricsTokenizer,
) -> SongAlignment:
    """Lyric timings of a top level's codes [N, t], read off the prior's alignment layer and
    head one sample at a time (each matrix is codes x characters, large for long songs)."""
    layer, head = alignment_layer(prior.config, prior.transformer.blocks)
    per_token = hop_length / sample_rate
    alignments, matrices = [], []
    for index in range(codes.shape[0]):
        matrix = align_level(prior, codes[index : index + 1], song, hop_length, layer, head)
        matrices.append(matrix[0].numpy())
        alignments.append(build_alignment(lyrics_text, tokenizer, matrices[-1], per_token))
    meta = {"level": prior.config.level, "layer": layer, "head": head}
    return SongAlignment(alignments, matrices, per_token, meta)
