"""Lyric alignment: layer choice, attention read-out vs a manual pass, level assembly, times,
words/lines, and the files written."""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import replace

import librosa
import matplotlib.image
import numpy as np
import pytest
import torch

from jukelite.data.lyrics import LyricsTokenizer
from jukelite.inference.alignment import (
    LyricAlignment,
    align_level,
    align_song,
    alignment_layer,
    build_alignment,
    char_start_times,
    lrc_timestamp,
    window_attention,
    write_alignment,
)
from jukelite.inference.schedule import WindowSchedule
from jukelite.prior.attention import AttnType
from jukelite.prior.model import LevelPrior, SongConditions

from .test_prior_model import build, tiny

pytestmark = pytest.mark.usefixtures("single_thread")


# ---------------------------------------------------------------------------------------------
# Layer choice.


def blocks_of(kind: str, **overrides):
    config, _ = tiny(kind)
    config = replace(config, **overrides)
    return config, LevelPrior(config).transformer.blocks


def test_default_layer_is_the_last_lyrics_layer():
    config, blocks = blocks_of("encoder", depth=20)  # ENC_DEC at layers 9 and 19
    assert alignment_layer(config, blocks) == (19, 0)
    config, blocks = blocks_of("single", depth=32)  # PRIME at layers 15 and 31
    assert [b.attn.attn_type for b in blocks].count(AttnType.PRIME) == 2
    assert alignment_layer(config, blocks) == (31, 0)


def test_explicit_layer_and_head():
    config, blocks = blocks_of("encoder", depth=20, alignment_layer=9, alignment_head=1)
    assert alignment_layer(config, blocks) == (9, 1)


@pytest.mark.parametrize(("kind", "overrides", "message"), [
    ("top", {}, "no lyrics"),
    ("encoder", dict(depth=20, alignment_layer=3), r"layer=3 has ROW .* ENC_DEC layers: \[9, 19\]"),
    ("encoder", dict(depth=20, alignment_layer=20), "outside the prior's 20 layers"),
    ("encoder", dict(depth=20, alignment_layer=-2), "outside"),
    ("encoder", dict(depth=20, alignment_head=2), r"alignment_head=2 is outside \[0, 2\)"),
    ("encoder", dict(depth=8), "no layer of this prior has ENC_DEC"),
])
def test_unusable_layers_are_refused(kind, overrides, message):
    config, blocks = blocks_of(kind, **overrides)
    with pytest.raises(ValueError, match=message):
        alignment_layer(config, blocks)


# ---------------------------------------------------------------------------------------------
# One window, against a manual pass.


def manual_attention(prior, tokens, cond, layer):
    """Run the blocks by hand up to `layer`; return its input x and, for every head, the
    probabilities over all keys [N, T, keys] built from an explicit mask, and the values."""
    h = prior.embedding(tokens, cond.start)
    if cond.x_cond is not None:
        h = h + cond.x_cond
    for block in prior.transformer.blocks[:layer]:
        h = block(h, cond.encoder_kv)
    attn = prior.transformer.blocks[layer].attn
    x = prior.transformer.blocks[layer].ln_0(h)
    if attn.attn_type == AttnType.ENC_DEC:
        q = attn.c_attn(x)
        k, v = attn.c_enc_kv(cond.encoder_kv).chunk(2, dim=-1)
        visible = torch.ones(x.shape[1], k.shape[1], dtype=torch.bool)
    else:
        q, k, v = attn.c_attn(x).chunk(3, dim=-1)
        t = x.shape[1]
        rows, cols = torch.meshgrid(torch.arange(t), torch.arange(t), indexing="ij")
        visible = (cols <= rows) & (cols < attn.prime_keys)
    probs, values = [], []
    for head in range(attn.heads):
        cols = slice(head * attn.head_dim, (head + 1) * attn.head_dim)
        scores = torch.einsum("nqd,nkd->nqk", q[..., cols], k[..., cols]) / attn.head_dim**0.5
        probs.append(scores.masked_fill(~visible, float("-inf")).softmax(-1))
        values.append(v[..., cols])
    return x, probs, values


@pytest.mark.parametrize("kind", ["encoder", "single"])
@torch.no_grad()
def test_window_attention_equals_a_manual_pass(kind):
    prior, codes, inputs = build(kind)
    config = prior.config
    cond = prior.condition(**inputs)
    tokens = prior.sequence(codes, inputs.get("lyrics"))
    layer, _ = alignment_layer(config, prior.transformer.blocks)
    attn = prior.transformer.blocks[layer].attn
    x, probs, values = manual_attention(prior, tokens, cond, layer)
    # The manual probabilities are the layer's: they reproduce its output.
    mixed = torch.cat([p @ v for p, v in zip(probs, values, strict=True)], dim=-1)
    torch.testing.assert_close(attn.c_proj(mixed), attn(x, cond.encoder_kv), atol=1e-5, rtol=0)
    music = slice(config.seq_len - config.n_ctx, config.seq_len)
    for head in range(config.heads):
        got = window_attention(prior, tokens, cond, layer, head)
        assert got.shape == (2, config.n_ctx, config.n_tokens)
        expected = probs[head][:, music, : config.n_tokens]
        torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(probs[head].sum(-1), torch.ones(2, config.seq_len))
        sums = got.sum(-1)
        if kind == "encoder":
            torch.testing.assert_close(sums, torch.ones_like(sums))
        else:  # every music query also sees prime keys past the lyrics (prime_keys = 12 > 8)
            assert attn.prime_keys == 12
            assert (sums < 1).all() and (sums > 0).all()
    assert not attn._forward_pre_hooks  # the hook is gone
    torch.testing.assert_close(prior.logits(tokens, cond), prior(codes, **inputs).logits)


@torch.no_grad()
def test_a_dominant_key_is_picked():
    prior, codes, inputs = build("encoder")
    lyrics = torch.arange(1, 9).expand(2, 8)  # the same lyrics for both samples
    cond = prior.condition(inputs["y"], lyrics=lyrics)
    attn = prior.transformer.blocks[9].attn
    head, d, target = 1, attn.head_dim, 5
    rows = slice(head * d, (head + 1) * d)
    direction = cond.encoder_kv[0, target] / cond.encoder_kv[0, target].norm()
    attn.c_attn.weight[rows] = 0  # every query is the same vector u
    attn.c_attn.bias[rows] = 1
    attn.c_enc_kv.weight[rows] = 40 * torch.ones(d, 1) / d**0.5 * direction  # k_j ~ u (e_j . e*)
    attn.c_enc_kv.bias[rows] = 0
    weights = window_attention(prior, prior.sequence(codes), cond, 9, head)
    assert (weights.argmax(-1) == target).all()
    assert (weights[..., target] > 0.99).all()


def test_window_attention_refuses_other_layers_and_heads():
    prior, codes, inputs = build("encoder")
    cond = prior.condition(**inputs)
    with pytest.raises(ValueError, match="ROW attention"):
        window_attention(prior, codes, cond, 0, 0)
    with pytest.raises(ValueError, match="head 2"):
        window_attention(prior, codes, cond, 9, 2)
    with pytest.raises(ValueError, match="full window of 16"):
        window_attention(prior, codes[:, :8], cond, 9, 0)


# ---------------------------------------------------------------------------------------------
# A whole level.


HOP = 25  # audio samples per code (the tiny priors' timing range is 2-20 s at 100 Hz)
LYRIC_IDS = tuple(torch.randint(1, 9, (18,), generator=torch.Generator().manual_seed(4)).tolist())


def song_of(codes: torch.Tensor, lyrics: tuple[int, ...] = LYRIC_IDS) -> SongConditions:
    return SongConditions(max(codes.shape[1], 8) * HOP, 1, (2, 3), lyrics)


def window_weights(prior, codes, song, start, layer, head):
    """What the window at `start` attended to, computed by hand: (weights of its music
    positions over its lyric window, song index of lyric position 0, its lyric ids)."""
    config = prior.config
    inputs = prior.window_inputs(song, HOP, start, codes.shape[0])
    music = codes[:, start : start + config.n_ctx]
    music = torch.nn.functional.pad(music, (0, config.n_ctx - music.shape[1]))
    tokens = prior.sequence(music, inputs.lyrics)
    weights = window_attention(prior, tokens, inputs.cond, layer, head)
    return weights, inputs.lyric_start, inputs.lyrics


@pytest.mark.parametrize("kind", ["encoder", "single"])
@torch.no_grad()
def test_align_level_takes_each_row_from_the_window_that_sampled_it(kind):
    prior, _, _ = build(kind)
    config = prior.config
    codes = torch.randint(0, config.bins, (2, 40), generator=torch.Generator().manual_seed(5))
    song = song_of(codes)
    layer, head = alignment_layer(config, prior.transformer.blocks)
    got = align_level(prior, codes, song, HOP, layer, head, hop_fraction=0.5)
    assert got.shape == (2, 40, 18) and got.dtype == torch.float32

    expected, done, starts = torch.zeros(2, 40, 18), 0, []
    for window in WindowSchedule(40, config.n_ctx, 0.5):  # starts 0, 8, 16, 24
        weights, lyric_start, _ = window_weights(prior, codes, song, window.start, layer, head)
        starts.append(lyric_start)
        for i in range(config.n_tokens):
            if 0 <= lyric_start + i < 18:
                expected[:, done : window.end, lyric_start + i] = \
                    weights[:, done - window.start : window.end - window.start, i]
        done = window.end
    # The lyric window slides along the song and stays inside it.
    assert starts[0] == 0 and starts[-1] == 18 - config.n_tokens and len(set(starts)) > 2
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-5)
    assert (got.sum(-1) <= 1 + 1e-5).all()
    assert (got[:, :16, starts[0] + config.n_tokens :] == 0).all()  # outside the lyric window


@torch.no_grad()
def test_padding_ids_are_skipped_even_inside_the_song():
    prior, _, _ = build("single")
    codes = torch.randint(0, 11, (2, 16), generator=torch.Generator().manual_seed(6))
    lyrics = (3, 4, 0, 0, 5, 6, 7, 8)
    got = align_level(prior, codes, song_of(codes, lyrics), HOP, 15, 0, hop_fraction=0.5)
    weights, lyric_start, ids = window_weights(prior, codes, song_of(codes, lyrics), 0, 15, 0)
    assert lyric_start == 0 and ids[0].tolist() == list(lyrics)
    assert (got[..., 2:4] == 0).all()
    assert (got[..., [0, 1, 4, 5, 6, 7]] > 0).all()


@pytest.mark.parametrize("kind", ["encoder", "single"])
@torch.no_grad()
def test_a_song_shorter_than_a_window_is_padded_after_the_music(kind):
    prior, _, _ = build(kind)
    config = prior.config
    codes = torch.randint(0, config.bins, (2, 10), generator=torch.Generator().manual_seed(7))
    song = song_of(codes, LYRIC_IDS[:8])
    layer, head = alignment_layer(config, prior.transformer.blocks)
    got = align_level(prior, codes, song, HOP, layer, head)
    assert got.shape == (2, 10, 8)
    inputs = prior.window_inputs(song, HOP, 0, 2)
    for pad in (0, 3):  # what fills the rest of the window cannot reach the real positions
        padded = torch.cat([codes, torch.full((2, 6), pad)], dim=1)
        weights = window_attention(prior, prior.sequence(padded, inputs.lyrics), inputs.cond,
                                   layer, head)
        columns = inputs.lyric_start + torch.arange(8)
        inside = (columns >= 0) & (columns < 8)
        torch.testing.assert_close(got[:, :, columns[inside]], weights[:, :10, inside],
                                   atol=1e-6, rtol=1e-5)


def test_a_prior_without_lyrics_is_refused():
    prior, codes, _ = build("top")
    with pytest.raises(ValueError, match="no lyrics"):
        align_level(prior, codes, song_of(codes), HOP, 0, 0)


@torch.no_grad()
def test_align_song_reads_every_sample_alone():
    torch.manual_seed(0)
    prior = LevelPrior(replace(tiny("encoder")[0], n_vocab=80)).eval()  # the v2 characters
    codes = torch.randint(0, 11, (2, 24), generator=torch.Generator().manual_seed(8))
    tokenizer = LyricsTokenizer("v2")
    text = "la da\nmy song"
    song = SongConditions(24 * HOP, 1, (2, 3), tuple(tokenizer.encode(text)))
    aligned = align_song(prior, song, codes, HOP, 100, text, tokenizer)
    layer, head = alignment_layer(prior.config, prior.transformer.blocks)
    assert aligned.meta == {"level": prior.config.level, "layer": layer, "head": head}
    assert aligned.seconds_per_token == HOP / 100 and len(aligned.samples) == 2
    for index in range(2):
        alone = align_level(prior, codes[index : index + 1], song, HOP, layer, head)[0]
        np.testing.assert_array_equal(aligned.matrices[index], alone.numpy())
        assert [w for w, _ in aligned.samples[index].words] == ["la", "da", "my", "song"]
    record = aligned.to_record()
    assert record["layer"] == layer and len(record["samples"]) == 2


# ---------------------------------------------------------------------------------------------
# Start times.


def diagonal(tokens_per_char: int, chars: int, seed: int = 0) -> np.ndarray:
    """Noisy attention where token t sings character t // tokens_per_char."""
    rng = np.random.default_rng(seed)
    matrix = rng.random((tokens_per_char * chars, chars)) * 0.1
    for t in range(tokens_per_char * chars):
        matrix[t, t // tokens_per_char] += 0.8
    return matrix / matrix.sum(1, keepdims=True)


def test_char_start_times_follow_a_diagonal():
    matrix = diagonal(5, 12)
    matrix[10, 11] = 5.0  # a stray late peak must not drag characters 3..11 back to token 10
    times = char_start_times(torch.from_numpy(matrix), seconds_per_token=0.01)
    assert len(times) == 12
    np.testing.assert_allclose(times, np.arange(12) * 5 * 0.01, atol=0.01)
    assert times == sorted(times)


def test_skipped_characters_are_interpolated():
    matrix = np.full((20, 4), 0.01)
    matrix[:10, 0] = matrix[10:, 3] = 1.0
    times = char_start_times(matrix, seconds_per_token=0.5)
    np.testing.assert_allclose(times, [0.0, 10 / 3 * 0.5, 20 / 3 * 0.5, 5.0])


def test_start_times_are_monotone_on_noise():
    matrix = np.random.default_rng(1).random((200, 30))
    times = char_start_times(matrix, 0.1)
    assert len(times) == 30 and times == sorted(times) and 0 <= times[0] and times[-1] < 20
    assert char_start_times(np.zeros((5, 0)), 0.1) == []
    with pytest.raises(ValueError, match="no tokens"):
        char_start_times(np.zeros((0, 3)), 0.1)


@pytest.mark.parametrize("seed", range(5))
def test_start_times_come_from_the_best_monotone_path(seed):
    """Against brute force: of all non-decreasing token -> character assignments, the one with
    the largest total log attention; characters start at their first token."""
    matrix = np.random.default_rng(seed).random((7, 4)) ** 3
    best = max(itertools.combinations_with_replacement(range(4), 7),
               key=lambda path: sum(np.log(matrix[t, c]) for t, c in enumerate(path)))
    visited = sorted(set(best))
    firsts = [best.index(c) for c in visited]
    expected = np.interp(np.arange(4), visited, firsts) * 0.25
    np.testing.assert_allclose(char_start_times(matrix, 0.25), expected)


def librosa_dtw_starts(matrix: np.ndarray) -> np.ndarray:
    """Start tokens from librosa's DTW posed as the same search: a (1, 0) step pays for the
    character a token enters its row at, a (0, 1) step moves on to a later one for free, and a
    zero-cost first row lets the path start at any character."""
    cost = np.vstack([np.zeros((1, matrix.shape[1])), -np.log(np.fmax(matrix, 1e-12))])
    _, wp = librosa.sequence.dtw(C=cost, step_sizes_sigma=np.array([[1, 0], [0, 1]]),
                                 weights_mul=np.array([1.0, 0.0]), subseq=True)
    if wp[0, 0] != len(cost) - 1:  # librosa gives tall matrices' subseq paths as (col, row)
        wp = wp[:, ::-1]
    path = np.full(len(matrix), matrix.shape[1])
    for row, col in wp[wp[:, 0] > 0]:
        path[row - 1] = min(path[row - 1], col)
    visited, first = np.unique(path, return_index=True)
    return np.interp(np.arange(matrix.shape[1]), visited, first)


@pytest.mark.parametrize("ties", [False, True])
def test_start_times_match_librosa_dtw(ties):
    """The path librosa.sequence.dtw finds where its ~20 bytes per cell fit, ties included
    (levels 0, 1/2, 1 tie often; both keep the later character)."""
    rng = np.random.default_rng(7)
    for _ in range(100):
        shape = (int(rng.integers(1, 30)), int(rng.integers(1, 12)))
        matrix = rng.integers(0, 3, shape) / 2 if ties else rng.random(shape) ** 3
        np.testing.assert_array_equal(char_start_times(matrix, 1.0), librosa_dtw_starts(matrix))


# ---------------------------------------------------------------------------------------------
# Characters, words, lines, files.

LYRICS = "Hello wörld —\n\n  second line here\r\nthird½ line\n"


def aligned(tokenizer: LyricsTokenizer, seconds_per_token: float = 0.1):
    text = tokenizer.normalize(LYRICS).text
    matrix = diagonal(4, len(text))
    return build_alignment(LYRICS, tokenizer, matrix, seconds_per_token), matrix


def test_token_index_is_normalised_character_index():
    tokenizer = LyricsTokenizer()
    text = tokenizer.normalize(LYRICS).text
    assert text == "Hello world --\n\n  second line here\nthird line\n"
    ids = tokenizer.encode(LYRICS)
    assert len(ids) == len(text) and tokenizer.decode(ids) == text


def test_build_alignment_words_and_lines():
    tokenizer = LyricsTokenizer()
    result, _ = aligned(tokenizer)
    text = tokenizer.normalize(LYRICS).text
    assert "".join(c for c, _ in result.characters) == text

    def at(index):  # start of character `index` on the 4-tokens-per-character diagonal
        return index * 4 * 0.1

    words = [(w, pytest.approx(at(i), abs=0.1)) for w, i in [
        ("Hello", 0), ("world", 6), ("--", 12), ("second", 18), ("line", 25), ("here", 30),
        ("third", 35), ("line", 41)]]
    assert result.words == words
    assert result.lines == [
        ("Hello wörld —", pytest.approx(at(0), abs=0.1)),
        ("second line here", pytest.approx(at(18), abs=0.1)),
        ("third½ line", pytest.approx(at(35), abs=0.1)),
    ]
    with pytest.raises(ValueError, match="46"):
        build_alignment(LYRICS, tokenizer, np.zeros((10, 5)), 0.1)


@pytest.mark.parametrize(("seconds", "stamp"), [
    (0.0, "00:00.00"), (65.437, "01:05.44"), (59.996, "01:00.00"), (3600.5, "60:00.50"),
])
def test_lrc_timestamps(seconds, stamp):
    assert lrc_timestamp(seconds) == stamp


def parse_lrc(text: str) -> list[tuple[float, str]]:
    lines = []
    for line in text.splitlines():
        match = re.fullmatch(r"\[(\d{2,}):(\d{2})\.(\d{2})\](.*)", line)
        assert match, line
        minutes, seconds, hundredths, words = match.groups()
        lines.append((int(minutes) * 60 + int(seconds) + int(hundredths) / 100, words))
    return lines


def test_write_alignment_files(tmp_path):
    tokenizer = LyricsTokenizer()
    first, matrix = aligned(tokenizer)
    second = LyricAlignment(first.characters, first.words, first.lines[:1])
    write_alignment(tmp_path, [first, second], [matrix, torch.from_numpy(matrix)], 0.1,
                    {"level": 2, "layer": 9})
    folder = tmp_path / "alignment"
    assert sorted(p.name for p in folder.iterdir()) == [
        "alignment.json", "sample_0.lrc", "sample_0.png", "sample_1.lrc", "sample_1.png"]
    record = json.loads((folder / "alignment.json").read_text())
    assert record["level"] == 2 and record["layer"] == 9 and record["seconds_per_token"] == 0.1
    assert len(record["samples"]) == 2
    sample = record["samples"][0]
    assert sample["words"][1] == {"word": "world", "start": pytest.approx(2.4, abs=0.1)}
    assert [c["char"] for c in sample["characters"]] == [c for c, _ in first.characters]
    assert [line["text"] for line in sample["lines"]] == [t for t, _ in first.lines]
    lrc = parse_lrc((folder / "sample_0.lrc").read_text())
    assert [text for _, text in lrc] == ["Hello wörld —", "second line here", "third½ line"]
    np.testing.assert_allclose([t for t, _ in lrc], [s for _, s in first.lines], atol=0.005)
    assert [t for t, _ in lrc] == sorted(t for t, _ in lrc)
    assert len(parse_lrc((folder / "sample_1.lrc").read_text())) == 1
    png = folder / "sample_0.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert matplotlib.image.imread(png).shape == (600, 1000, 4)
    with pytest.raises(ValueError, match="2 alignments but 1"):
        write_alignment(tmp_path, [first, second], [matrix], 0.1, {})
