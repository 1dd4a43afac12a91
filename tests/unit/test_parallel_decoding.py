"""Parallel (masked) upsamplers: the mask schedule, the loss, decoding, and sampling end to end."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

import jukelite
from jukelite.bundle import Bundle, BundleError, pack_bundle
from jukelite.cli import main
from jukelite.data.labels import label_vector
from jukelite.inference.options import SamplingSettings
from jukelite.inference.parallel import sample_window_parallel
from jukelite.prior.masking import cosine_mask_ratio, draw_training_mask, hidden_after_steps
from jukelite.prior.model import LevelPrior, PriorConfig, SongConditions

pytestmark = pytest.mark.usefixtures("single_thread")


def parallel_prior(guidance: bool = False, seed: int = 0) -> LevelPrior:
    torch.manual_seed(seed)
    config = PriorConfig(level=0, bins=32, n_ctx=64, width=32, depth=3, heads=2, blocks=8,
                         artist_bins=3, genre_bins=3, max_bow_genre_size=1, upsampler=True,
                         cond_width=16, cond_depth=1, cond_dilation_cycle=1,
                         decoding="parallel", guidance=guidance, sample_rate=8000)
    model = LevelPrior(config)
    for parameter in model.parameters():  # nothing zero-initialised: every input matters
        parameter.data.add_(torch.randn_like(parameter) * 0.05)
    if guidance:
        model.null_start.data.normal_(std=1.0)
    return model.eval()


def labels(batch: int, artist: int = 1) -> torch.Tensor:
    return label_vector(8000 * 4, 0, 64 * 4, artist, [1])[None].expand(batch, -1)


# ------------------------------------------------------------------------------ the schedule
def test_training_masks_follow_the_cosine_schedule_and_keep_prefixes():
    generator = torch.Generator().manual_seed(0)
    masks = draw_training_mask(4000, 64, generator)
    assert masks.dtype == torch.bool and masks.shape == (4000, 64)
    assert masks.sum(1).min() >= 1  # every window has something to predict
    # without prefixes, the hidden fraction is cos(pi/2 u) for uniform u: mean 2/pi
    plain = draw_training_mask(4000, 64, torch.Generator().manual_seed(1), known_prefix_rate=0)
    assert plain.float().mean().item() == pytest.approx(2 / math.pi, abs=0.02)
    # with prefixes, some windows start with visible codes and hide codes only after them
    first_hidden = masks.float().argmax(1)
    assert 0.3 < (first_hidden > 0).float().mean() < 0.7
    again = draw_training_mask(4000, 64, torch.Generator().manual_seed(0))
    assert torch.equal(masks, again)
    assert cosine_mask_ratio(torch.tensor([0.0, 1.0])).tolist() == pytest.approx([1.0, 0.0],
                                                                                abs=1e-6)


def test_sampling_reveals_codes_on_the_cosine_curve():
    assert hidden_after_steps(32, 8) == [31, 29, 26, 22, 17, 12, 6, 0]
    assert hidden_after_steps(3, 8) == [2, 1, 0]  # fewer codes than steps: one per step
    assert hidden_after_steps(100, 1) == [0]
    for total, steps in [(512, 12), (256, 16), (7, 7), (1, 4)]:
        counts = hidden_after_steps(total, steps)
        assert counts[-1] == 0 and len(counts) <= steps
        assert all(a > b for a, b in zip([total, *counts], counts, strict=False))
    with pytest.raises(ValueError, match="steps must be >= 1"):
        hidden_after_steps(10, 0)


# ------------------------------------------------------------------------------ the loss
def test_loss_is_bits_on_hidden_codes_that_the_model_never_sees(monkeypatch):
    model = parallel_prior()
    codes = torch.randint(0, 32, (3, 64), generator=torch.Generator().manual_seed(2))
    upper = torch.randint(0, 32, (3, 16), generator=torch.Generator().manual_seed(3))
    mask = draw_training_mask(3, 64, torch.Generator().manual_seed(4))
    seen = []
    original = LevelPrior.masked_logits

    def spy(self, tokens, cond):
        seen.append(tokens.clone())
        return original(self, tokens, cond)

    monkeypatch.setattr(LevelPrior, "masked_logits", spy)
    out = model(codes, labels(3), upper, mask=mask)
    tokens = seen[0]
    assert (tokens[mask] == model.config.mask_id).all()
    assert torch.equal(tokens[~mask], codes[~mask])
    expected = F.cross_entropy(out.logits[mask], codes[mask]) / math.log(2)
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert out.metrics["masked_bits_per_code"].item() == pytest.approx(out.loss.item())
    assert out.logits.shape == (3, 64, 32)  # the mask id is never predicted
    # the loss ignores visible positions' targets: change them, only the context moves
    shifted = codes.clone()
    shifted[~mask] = (shifted[~mask] + 1) % 32
    logits = original(model, shifted.masked_fill(mask, 32), model.condition(labels(3), upper))
    same = F.cross_entropy(logits[mask], codes[mask]) / math.log(2)
    assert model(shifted, labels(3), upper, mask=mask).loss.item() == pytest.approx(same.item())
    with pytest.raises(ValueError, match="mask must be bool"):
        model(codes, labels(3), upper, mask=mask.long())


def test_parallel_is_checked_in_the_config():
    with pytest.raises(ValueError, match="decoding=parallel is for upsamplers"):
        PriorConfig(bins=8, n_ctx=16, width=8, depth=1, blocks=4, labels=False,
                    decoding="parallel")
    with pytest.raises(ValueError, match="decoding must be one of"):
        PriorConfig(bins=8, n_ctx=16, width=8, depth=1, blocks=4, labels=False,
                    decoding="masked")
    with pytest.raises(ValueError, match="cannot read a lyric prefix"):
        PriorConfig(bins=8, n_ctx=16, width=8, depth=1, blocks=4, labels=False, upsampler=True,
                    lyrics="single", n_tokens=4, decoding="parallel")
    assert PriorConfig(bins=8, n_ctx=16, width=8, depth=1, blocks=4, labels=False,
                       upsampler=True, decoding="parallel").vocab == 9


# ------------------------------------------------------------------------------ decoding
def decode(model, known, seed=5, **kwargs):
    cond = model.condition(labels(known.shape[0]), kwargs.pop("upper"))
    return sample_window_parallel(model, cond, known, kwargs.pop("steps", 6),
                                  kwargs.pop("settings", SamplingSettings(temperature=1.0)),
                                  torch.Generator().manual_seed(seed), **kwargs)


def test_decoding_fills_every_position_keeps_known_codes_and_repeats_with_its_seed():
    model = parallel_prior()
    upper = torch.randint(0, 32, (2, 16), generator=torch.Generator().manual_seed(6))
    known = torch.randint(0, 32, (2, 20), generator=torch.Generator().manual_seed(7))
    codes = decode(model, known, upper=upper)
    assert codes.shape == (2, 64) and codes.dtype == torch.long
    assert ((codes >= 0) & (codes < 32)).all()  # no mask id left behind
    assert torch.equal(codes[:, :20], known)
    assert torch.equal(decode(model, known, upper=upper), codes)
    assert not torch.equal(decode(model, known, seed=6, upper=upper), codes)
    short = decode(model, known[:, :0], upper=upper, length=40, steps=1)
    assert short.shape == (2, 40) and (short < 32).all()
    greedy = SamplingSettings(temperature=1.0, top_k=1)  # top-k applies to every draw
    logits = model.masked_logits(torch.full((2, 64), 32), model.condition(labels(2), upper))
    one_step = decode(model, known[:, :0], upper=upper, steps=1, settings=greedy)
    assert torch.equal(one_step, logits.argmax(-1))
    progress = []
    decode(model, known, upper=upper, steps=5, on_step=progress.append)
    assert sum(progress) == 44 and len(progress) == 5


def test_guidance_one_is_conditional_decoding_and_zero_the_unconditioned_model():
    model = parallel_prior(guidance=True)
    upper = torch.randint(0, 32, (2, 16), generator=torch.Generator().manual_seed(8))
    song = SongConditions(8000 * 4, 1, (1,))
    cond = model.window_inputs(song, 4, 0, 2, upper).cond
    null = model.window_inputs(song, 4, 0, 2, upper, null=True).cond
    known = torch.zeros(2, 0, dtype=torch.long)
    settings = SamplingSettings(temperature=1.0)

    def draw(c, **guidance):
        return sample_window_parallel(model, c, known, 4, settings,
                                      torch.Generator().manual_seed(9), **guidance)

    plain, unconditioned = draw(cond), draw(null)
    assert torch.equal(draw(cond, guidance=1.0, uncond=null), plain)
    assert torch.equal(draw(cond, guidance=0.0, uncond=null), unconditioned)
    assert not torch.equal(draw(cond, guidance=20.0, uncond=null), plain)


def test_an_autoregressive_prior_refuses_parallel_decoding():
    torch.manual_seed(0)
    model = LevelPrior(PriorConfig(bins=8, n_ctx=16, width=8, depth=1, blocks=4, labels=False))
    with pytest.raises(ValueError, match="decodes autoregressively"):
        sample_window_parallel(model, model.condition(), torch.zeros(1, 0).long(), 4)


# ------------------------------------------------------------------------------ end to end
def test_sample_a_parallel_bundle_from_the_api(tmp_path, make_complete_bundle):
    bundle = make_complete_bundle(tmp_path / "b", parallel=True)
    assert Bundle.open(bundle).default_steps == {0: 12}
    jb = jukelite.load(bundle)
    song = dict(artist="Ada", genre="rock", seconds=0.2, seed=3, n_samples=2)
    first = jb.generate(**song)
    assert first.codes[0].shape == (2, 400) and (first.codes[0] < 16).all()
    assert first.record["request"]["steps"] == {"0": 12}
    assert torch.equal(jb.generate(**song).codes[0], first.codes[0])
    chunked = jb.generate(**song, max_batch_size=1).codes[0]  # batched in chunks of one
    assert chunked.shape == (2, 400) and (chunked < 16).all()
    fewer = jb.generate(**song, steps={0: 2})
    assert fewer.record["request"]["steps"] == {"0": 2}
    assert torch.equal(fewer.codes[1], first.codes[1])  # the top prior is untouched
    assert not torch.equal(fewer.codes[0], first.codes[0])
    again = jb.upsample(first.codes[1], artist="Ada", genre="rock", seed=3)
    assert torch.equal(again.codes[0], first.codes[0])
    preview = jb.generate(**song, levels="top", output_dir=tmp_path / "run")
    resumed = jb.resume(tmp_path / "run", levels="all")  # the parallel level after a preview
    assert torch.equal(resumed.codes[0], first.codes[0])
    assert torch.equal(preview.codes[1], first.codes[1])
    continued = jb.continue_(first.audio[:1], seconds=0.4, prime_seconds=0.1, artist="Ada",
                             genre="rock", seed=3)
    assert continued.codes[0].shape == (1, 800)
    assert torch.equal(continued.codes[0][:, :200], jb.encode(first.audio[:1, :, :800], [0])[0])
    with pytest.raises(ValueError, match=r"steps given for level\(s\) \[1\]; the parallel "
                                         r"levels are \[0\]"):
        jb.generate(**song, steps={1: 4})
    with pytest.raises(ValueError, match="steps must be an integer >= 1"):
        jb.generate(**song, steps=0)
    autoregressive = jukelite.load(make_complete_bundle(tmp_path / "ar"))
    with pytest.raises(ValueError, match="every prior of this bundle decodes autoregressively"):
        autoregressive.generate(**song, steps=4)
    with pytest.raises(ValueError, match="decodes in parallel"):
        jb.score(first.codes[0][:, :16], 0, "Ada", "rock", upper_codes=first.codes[1][:, :8])


def test_sample_cli_with_a_parallel_bundle_and_packed_defaults(tmp_path, make_complete_bundle,
                                                                capsys):
    bundle = make_complete_bundle(tmp_path / "b", parallel=True, guidance=True)
    packed = tmp_path / "packed"
    assert main(["pack", str(bundle), str(packed), "--steps", "0=3", "--guidance", "1=2",
                 "--quiet"]) == 0
    assert Bundle.open(packed).default_steps == {0: 3}
    assert Bundle.open(packed).default_guidance == {1: 2.0}
    assert main(["info", str(packed)]) == 0
    shown = capsys.readouterr().out
    assert "default decoding steps (parallel levels): level 0 3" in shown
    assert "bits per hidden code, parallel decoding" in shown
    out = tmp_path / "out"
    assert main(["sample", "--model", str(packed), "--artist", "Ada", "--genre", "rock",
                 "--seconds", "0.2", "-o", str(out), "--quiet"]) == 0
    record = json.loads((out / "song.json").read_text())
    assert record["request"]["steps"] == {"0": 3}
    assert record["request"]["guidance"] == {"1": 2.0}
    assert (out / "level_0" / "sample_0.wav").is_file()
    out2 = tmp_path / "out2"
    assert main(["sample", "--model", str(packed), "--artist", "Ada", "--genre", "rock",
                 "--seconds", "0.2", "-o", str(out2), "--steps", "0=1", "--guidance", "1",
                 "--quiet"]) == 0
    record = json.loads((out2 / "song.json").read_text())
    assert record["request"]["steps"] == {"0": 1} and record["request"]["guidance"] == {}
    assert main(["sample", "--model", str(packed), "--artist", "Ada", "--genre", "rock",
                 "--seconds", "0.2", "-o", str(tmp_path / "x"), "--steps", "1.5",
                 "--quiet"]) == 2
    assert "--steps 1.5: decoding steps must be a whole number >= 1" in capsys.readouterr().err


def test_pack_checks_the_defaults_it_records(tmp_path, make_complete_bundle):
    bundle = make_complete_bundle(tmp_path / "b", parallel=True)
    with pytest.raises(BundleError, match="level 1: steps are for parallel priors"):
        pack_bundle(bundle, tmp_path / "p1", steps={1: 4})
    with pytest.raises(BundleError, match="level 0: steps must be an integer >= 1, got 0"):
        pack_bundle(bundle, tmp_path / "p2", steps={0: 0})
    with pytest.raises(BundleError, match="level 1: guidance needs a prior trained with"):
        pack_bundle(bundle, tmp_path / "p3", guidance={1: 2.0})
    with pytest.raises(BundleError, match=r"steps given for level\(s\) \[4\]"):
        pack_bundle(bundle, tmp_path / "p4", steps={4: 2})


def test_priors_load_the_same_built_directly_or_on_the_meta_device(tmp_path, make_complete_bundle,
                                                                   monkeypatch):
    """Small priors skip the meta device (its random init imports torch's compiler)."""
    import jukelite.bundle as bundle_module

    bundle = make_complete_bundle(tmp_path / "b", parallel=True)
    direct = bundle_module.load_prior_level(bundle, 0)
    monkeypatch.setattr(bundle_module, "META_BUILD_BYTES", 0)
    built_on_meta = bundle_module.load_prior_level(bundle, 0)
    assert direct.state_dict().keys() == built_on_meta.state_dict().keys()
    for key, value in direct.state_dict().items():
        assert torch.equal(value, built_on_meta.state_dict()[key]), key
    assert direct.x_out.weight is direct.embedding.x_emb.weight  # the tied head stays tied
