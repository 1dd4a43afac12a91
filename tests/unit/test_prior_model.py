"""Level priors: released shapes, cached decoding equal to the full pass, losses, errors."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from jukelite.data.labels import label_vector
from jukelite.prior.model import LevelPrior, PriorConfig
from jukelite.vqvae.model import count_parameters

pytestmark = pytest.mark.usefixtures("single_thread")

JUKEBOX = {
    "prior_5b": (
        dict(level=2, width=4800, depth=72, heads=8, attn_order=2, blocks=128,
             merged_decoder=True, artist_bins=4111, genre_bins=120, timing=True,
             sample_rate=44100, min_duration=60.0, init_scale=0.1),
        5_060_452_800,
    ),
    "prior_5b_lyrics": (
        dict(level=2, width=4800, depth=79, heads=8, attn_order=10, blocks=128,
             merged_decoder=True, artist_bins=4111, genre_bins=120, timing=True,
             sample_rate=44100, min_duration=23.8, lyrics="encoder", n_tokens=512, n_vocab=80,
             prime_loss_fraction=0.4, lyrics_width=1280, lyrics_depth=18, lyrics_heads=4,
             lyrics_attn_order=2, lyrics_blocks=32, init_scale=0.1, lyrics_init_scale=0.7),
        5_640_506_800,
    ),
    "prior_1b_lyrics": (
        dict(level=2, n_ctx=6144, width=2048, depth=72, heads=2, attn_order=12, blocks=64,
             artist_bins=7898, genre_bins=604, max_bow_genre_size=1, t_bins=64, timing=True,
             sample_rate=44100, min_duration=17.84, lyrics="single", n_tokens=384, n_vocab=79,
             prime_loss_fraction=0.4, init_scale=0.2),
        942_643_200,
    ),
    "upsampler": (
        dict(level=0, width=1920, depth=72, heads=1, attn_order=2, blocks=128, artist_bins=4111,
             genre_bins=120, upsampler=True, cond_width=1024, cond_depth=16,
             cond_dilation_cycle=8, init_scale=0.4),
        981_298_176,
    ),
}


@pytest.mark.parametrize("name", sorted(JUKEBOX))
def test_released_shapes_have_jukebox_parameter_counts(name):
    settings, expected = JUKEBOX[name]
    with torch.device("meta"):
        prior = LevelPrior(PriorConfig(**settings))
    assert count_parameters(prior) == expected


# Tiny versions of each kind of prior: (config, batch of conditioning inputs).
def tiny(kind: str) -> tuple[PriorConfig, dict]:
    base = dict(bins=11, n_ctx=16, width=24, depth=4, heads=2, blocks=4, artist_bins=3,
                genre_bins=4, max_bow_genre_size=2, init_scale=1.0)
    y = torch.stack([label_vector(400, 100, 32, 1, [2, 3]), label_vector(900, 0, 32, 2, [1, -1])])
    lyrics = torch.randint(1, 9, (2, 8), generator=torch.Generator().manual_seed(1))
    if kind == "top":
        config = dict(attn_order=2, timing=True, t_bins=8, sample_rate=100, min_duration=2.0,
                      max_duration=20.0, merged_decoder=True)
        return PriorConfig(**base, **config), {"y": y}
    if kind == "upsampler":
        upper = torch.randint(0, 11, (2, 4), generator=torch.Generator().manual_seed(2))
        config = dict(attn_order=2, upsampler=True, cond_width=8, cond_depth=2,
                      cond_dilation_cycle=2)
        return PriorConfig(**base, **config), {"y": y, "upper": upper}
    if kind == "encoder":
        config = dict(attn_order=8, depth=10, lyrics="encoder", n_tokens=8, n_vocab=9,
                      lyrics_width=16, lyrics_depth=2, lyrics_heads=2, lyrics_blocks=2,
                      prime_loss_fraction=0.4, timing=True, t_bins=8, sample_rate=100,
                      min_duration=2.0, max_duration=20.0)
        return PriorConfig(**{**base, **config}), {"y": y, "lyrics": lyrics}
    if kind == "single":  # labels everywhere, then the zero conditioning of the lyric prefix
        config = dict(attn_order=12, depth=16, blocks=6, lyrics="single", n_tokens=8, n_vocab=9,
                      prime_loss_fraction=0.4, timing=True, t_bins=8, sample_rate=100,
                      min_duration=2.0, max_duration=20.0, labels_everywhere=True)
        return PriorConfig(**{**base, **config}), {"y": y, "lyrics": lyrics}
    config = dict(attn_order=0, labels=False)
    return PriorConfig(**base, **config), {}


KINDS = ["top", "upsampler", "encoder", "single", "unconditioned"]


def build(kind: str) -> tuple[LevelPrior, torch.Tensor, dict]:
    config, inputs = tiny(kind)
    torch.manual_seed(0)
    prior = LevelPrior(config).eval()
    # Give zero-initialised cross-attention outputs some weight, so the test sees them.
    for block in prior.transformer.blocks:
        torch.nn.init.normal_(block.attn.c_proj.weight, std=0.05)
        torch.nn.init.normal_(block.mlp.c_proj.weight, std=0.05)
    codes = torch.randint(0, config.bins, (2, config.n_ctx),
                          generator=torch.Generator().manual_seed(3))
    return prior, codes, inputs


@pytest.mark.parametrize("kind", KINDS)
def test_one_token_steps_reproduce_the_full_pass(kind):
    prior, codes, inputs = build(kind)
    with torch.no_grad():
        full = prior(codes, **inputs).logits
        cond = prior.condition(**inputs)
        tokens = prior.sequence(codes, inputs.get("lyrics"))
        caches = prior.init_caches(2)
        steps = [prior.logits_cached(tokens, p, 1, caches, cond) for p in range(tokens.shape[1])]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_chunked_prefill_then_steps_reproduce_the_full_pass(kind):
    prior, codes, inputs = build(kind)
    with torch.no_grad():
        full = prior(codes, **inputs).logits
        cond = prior.condition(**inputs)
        tokens = prior.sequence(codes, inputs.get("lyrics"))
        caches = prior.init_caches(2)
        n = tokens.shape[1]
        pieces, start = [], 0
        for length in (5, 7, 1, n):  # chunks crossing block boundaries, then the rest
            length = min(length, n - start)
            pieces.append(prior.logits_cached(tokens, start, length, caches, cond))
            start += length
    assert start == n
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_loss_is_bits_per_token_and_learns(kind):
    prior, codes, inputs = build(kind)
    prior.train()
    out = prior(codes, **inputs)
    config = prior.config
    music = out.logits[:, -config.n_ctx :].log_softmax(-1)
    target = prior.sequence(codes, inputs.get("lyrics"))[:, -config.n_ctx :]
    expected = -music.gather(-1, target[..., None]).mean() / math.log(2)
    torch.testing.assert_close(out.metrics["music_bits_per_token"], expected.detach())
    assert out.logits.shape == (2, config.seq_len, config.vocab)
    optimizer = torch.optim.Adam(prior.parameters(), lr=3e-3)
    first = float(out.loss.detach())
    for _ in range(60):
        loss = prior(codes, **inputs).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert float(loss.detach()) < 0.5 * first


def test_conditioning_inputs_are_checked():
    prior, codes, inputs = build("upsampler")
    with pytest.raises(ValueError, match="pass y"):
        prior(codes, upper=inputs["upper"])
    with pytest.raises(ValueError, match=r"upper-level codes \[N, 4\]"):
        prior(codes, y=inputs["y"], upper=inputs["upper"][:, :3])
    with pytest.raises(ValueError, match="expected 16 codes"):
        prior(codes[:, :8], **inputs)
    top, codes, inputs = build("top")
    y = inputs["y"].clone()
    y[0, 0] = 50  # a 0.5 s song; the model's timing range starts at 2 s
    with pytest.raises(ValueError, match="at least 2.00 s"):
        top(codes, y=y)


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match="lyrics must be one of"):
        PriorConfig(lyrics="sometimes")
    with pytest.raises(ValueError, match="divisible by heads"):
        PriorConfig(width=30, heads=4)
    with pytest.raises(ValueError, match="lyrics_heads"):
        PriorConfig(lyrics="encoder", n_tokens=8, lyrics_width=12, lyrics_heads=2, lyrics_blocks=2)
    with pytest.raises(ValueError, match="labels_everywhere needs labels=true"):
        PriorConfig(labels=False, labels_everywhere=True)
    with pytest.raises(ValueError, match="unknown PriorConfig key"):
        PriorConfig.from_dict({"widht": 3})


@pytest.mark.parametrize("kind", ["top", "upsampler"])
def test_labels_everywhere_adds_the_label_embedding_at_every_position(kind):
    prior, _, inputs = build(kind)
    config = dataclasses.replace(prior.config, labels_everywhere=True)
    everywhere = LevelPrior(config)
    everywhere.load_state_dict(prior.state_dict())  # no new weights
    with torch.no_grad():
        plain, spread = prior.condition(**inputs), everywhere.condition(**inputs)
    torch.testing.assert_close(spread.start, plain.start)
    assert spread.x_cond.shape == (2, config.n_ctx, config.width)
    torch.testing.assert_close(spread.x_cond - plain.x_cond,
                               plain.start.expand(-1, config.n_ctx, -1))
    other = inputs["y"].flip(0)  # the two rows' artists and genres differ
    with torch.no_grad():
        swapped = everywhere.condition(**{**inputs, "y": other})
    assert not torch.allclose(swapped.x_cond[:, -1], spread.x_cond[:, -1])


@pytest.mark.parametrize("kind", KINDS)
def test_static_steps_equal_the_cached_steps(kind):
    """The position-as-tensor step (for CUDA graphs / torch.compile) gives the cached step's
    logits at every position, across rows, columns and the lyric prefix."""
    prior, codes, inputs = build(kind)
    with torch.no_grad():
        cond = prior.condition(**inputs)
        tokens = prior.sequence(codes, inputs.get("lyrics"))
        cached, static = prior.init_caches(2), prior.init_caches(2)
        for position in range(tokens.shape[1]):
            expected = prior.logits_cached(tokens, position, 1, cached, cond)[:, -1]
            previous = tokens[:, max(position - 1, 0)]
            got = prior.logits_step(previous, torch.tensor(position), static, cond)
            torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", ["top", "single"])
def test_a_static_step_allocates_the_same_at_every_position(kind):
    """No per-step allocation grows with the position (caches are written in place; the
    temporaries are the same for the first and the last token of a window)."""
    from torch.profiler import ProfilerActivity, profile

    prior, codes, inputs = build(kind)
    cond = prior.condition(**inputs)
    tokens = prior.sequence(codes, inputs.get("lyrics"))
    caches, allocated = prior.init_caches(2), {}
    last = tokens.shape[1] - 1
    with torch.no_grad():
        for position in range(tokens.shape[1]):
            def step(position=position):
                previous = tokens[:, max(position - 1, 0)]
                prior.logits_step(previous, torch.tensor(position), caches, cond)

            if position in (1, last):
                with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
                    step()
                allocated[position] = sum(
                    event.cpu_memory_usage for event in prof.events() if event.cpu_memory_usage > 0
                )
            else:
                step()
    assert allocated[1] == allocated[last] > 0
