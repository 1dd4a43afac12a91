"""`jukelite bench sample` on minimal shapes: report structure, the naive reference, the render."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from jukelite.bench.sample import (
    SETTINGS,
    batch_list,
    bench_sample,
    naive_window,
    random_window_inputs,
    time_render,
    time_sampling,
)
from jukelite.cli import build_parser, main
from jukelite.data.labels import LabelVocabulary
from jukelite.data.manifest import ManifestEntry
from jukelite.inference.window import sample_window
from jukelite.prior.model import LevelPrior, PriorConfig

from .test_prior_model import tiny

pytestmark = pytest.mark.usefixtures("single_thread")

MINIMAL = ["--shape", "custom", "--width", "16", "--depth", "2", "--heads", "2", "--n-ctx", "32",
           "--blocks", "4", "--bins", "16", "--naive-tokens", "2", "--repeats", "1"]
TIMING_KEYS = ("cached_seconds", "cached_tokens_per_second", "naive_seconds",
               "naive_tokens_per_second", "speedup", "prefill_seconds", "prefill_tokens_per_second")


def positive_finite(value: Any) -> bool:
    return isinstance(value, float) and math.isfinite(value) and value > 0


def check_timings(entry: dict[str, Any], batch: int) -> None:
    assert entry["batch"] == batch
    for key in TIMING_KEYS:
        assert positive_finite(entry[key]), (key, entry[key])
    assert entry["speedup"] == pytest.approx(
        entry["cached_tokens_per_second"] / entry["naive_tokens_per_second"]
    )
    for kind in ("cached", "naive", "prefill"):
        assert entry[f"{kind}_tokens_per_second"] == pytest.approx(
            batch * entry[f"{kind}_tokens"] / entry[f"{kind}_seconds"]
        )


def test_cli_custom_shape_reports_cached_naive_and_prefill(capsys: pytest.CaptureFixture[str]):
    assert main(["bench", "sample", *MINIMAL, "--tokens", "8", "--batch", "1,2",
                 "--no-render"]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert result["benchmark"] == "sample"
    assert result["device"] == "cpu" and result["dtype"] == "float32"
    assert result["threads"] == 1 and result["torch"] == torch.__version__
    assert result["batches"] == [1, 2] and result["render"] is None
    assert list(result["shapes"]) == ["custom"]
    (level,) = result["shapes"]["custom"]["levels"].items()
    name, entry = level
    assert name == "any"
    assert (entry["n_ctx"], entry["width"], entry["depth"], entry["bins"]) == (32, 16, 2, 16)
    assert entry["conditioning"] == [] and entry["hop_fraction"] == 0.125
    assert entry["parameters"] > 0
    assert list(entry["batches"]) == ["1", "2"]
    for batch, timings in entry["batches"].items():
        check_timings(timings, int(batch))
        assert timings["cached_tokens"] == 8 and timings["naive_tokens"] == 2
        assert timings["prefill_tokens"] == 32 - 4  # n_ctx minus a top prior's hop of 1/8
    assert "speedup" in captured.err and "custom" in captured.err


def test_tokens_are_capped_at_the_window():
    args = build_parser().parse_args(["bench", "sample", *MINIMAL, "--tokens", "100",
                                      "--batch", "1", "--no-render"])
    result = bench_sample(args)
    timings = result["shapes"]["custom"]["levels"]["any"]["batches"]["1"]
    assert timings["cached_tokens"] == 32


@pytest.mark.parametrize("kind", ["top", "upsampler", "encoder", "single"])
def test_naive_reference_draws_what_the_cached_sampler_draws(kind: str):
    torch.manual_seed(0)
    config, _ = tiny(kind)
    prior = LevelPrior(config).eval()
    cond, _, _, prefix = random_window_inputs(prior, 2, torch.Generator().manual_seed(1))
    assert prefix.shape == (2, config.n_tokens if kind == "single" else 0)
    length = prefix.shape[1] + 5
    cached = sample_window(prior, cond, prefix, SETTINGS, torch.Generator().manual_seed(3),
                           length=length)
    with torch.no_grad():
        naive = naive_window(prior, cond, prefix, 5, torch.Generator().manual_seed(3))
    assert torch.equal(cached, naive)


def test_prefill_covers_the_lyric_prefix_and_the_overlap():
    torch.manual_seed(0)
    config, _ = tiny("single")
    prior = LevelPrior(config).eval()
    timings = time_sampling(prior, 1, tokens=3, naive_tokens=1, hop_fraction=0.5,
                            device=torch.device("cpu"), repeats=1)
    check_timings(timings, 1)
    assert timings["prefill_tokens"] == config.seq_len - config.n_ctx // 2


def test_batch_lists_and_bad_options():
    assert batch_list(None) == [1, 8] and batch_list("4") == [4] and batch_list("2, 3") == [2, 3]
    for bad in ("", "0", "1,x"):
        with pytest.raises(ValueError, match="--batch"):
            batch_list(bad)
    parser = build_parser()
    with pytest.raises(ValueError, match="unknown sample shape"):
        bench_sample(parser.parse_args(["bench", "sample", "--shape", "huge", "--no-render"]))
    with pytest.raises(ValueError, match="--naive-tokens"):
        bench_sample(parser.parse_args(["bench", "sample", *MINIMAL, "--naive-tokens", "0",
                                        "--no-render"]))
    args = parser.parse_args(["bench", "sample"])
    assert args.render and args.seconds is None and args.batch is None and args.dtype == "float32"


@pytest.fixture
def small_bundle(tmp_path: Path, make_bundle) -> Path:
    """Two VQ-VAE levels (hops 4 and 8 at 8 kHz), a labelled top prior with timing on level 1
    and an upsampler on level 0: a full render of 0.05 s takes well under a second."""
    bundle = make_bundle(tmp_path / "bundle")
    vocabulary = LabelVocabulary.from_entries(
        [ManifestEntry(path=Path("a.wav"), artist="Ada", genres=["rock"])], max_bow_genre_size=1
    )
    shared = dict(bins=16, n_ctx=16, width=16, depth=2, heads=2, blocks=4, attn_order=2,
                  artist_bins=vocabulary.n_artists, genre_bins=vocabulary.n_genres,
                  max_bow_genre_size=1, sample_rate=8000)
    torch.manual_seed(0)
    top = LevelPrior(PriorConfig(level=1, timing=True, t_bins=8, min_duration=0.01,
                                 max_duration=10.0, **shared))
    upsampler = LevelPrior(PriorConfig(level=0, upsampler=True, cond_down_t=1, cond_stride=2,
                                       cond_width=8, cond_depth=1, cond_dilation_cycle=1,
                                       **shared))
    from jukelite.bundle import save_prior_level

    for prior in (top, upsampler):
        save_prior_level(bundle, prior, {"labels": vocabulary.to_dict(), "lyrics": None})
    return bundle


def test_render_is_split_per_level_top_down(small_bundle: Path):
    render = time_render(small_bundle, 0.05, torch.device("cpu"), "Ada", "rock", lyrics="")
    assert render["audio_seconds"] == pytest.approx(400 / 8000)  # a multiple of the top hop
    assert render["realtime_factor"] == pytest.approx(
        render["wall_seconds"] / render["audio_seconds"]
    )
    assert list(render["levels"]) == ["1", "0"]  # the order they ran in
    assert render["levels"]["1"]["tokens"] == 400 // 8
    assert render["levels"]["0"]["tokens"] == 400 // 4
    for level in render["levels"].values():
        assert positive_finite(level["seconds"]) and positive_finite(level["tokens_per_second"])
        assert level["tokens_per_second"] == pytest.approx(level["tokens"] / level["seconds"])
    assert render["decode_seconds"] >= 0
    parts = sum(level["seconds"] for level in render["levels"].values())
    assert parts + render["decode_seconds"] == pytest.approx(render["wall_seconds"])


def test_help_documents_the_sample_benchmark(capsys: pytest.CaptureFixture[str]):
    with pytest.raises(SystemExit):
        main(["bench", "--help"])
    text = capsys.readouterr().out
    for word in ("sample", "--naive-tokens", "--no-render", "--dtype", "default 1,8"):
        assert word in text


def test_the_tiny_random_bundle_is_built_from_the_shipped_recipes(tmp_path: Path):
    from jukelite.bench.random_bundle import build_random_bundle, tiny_recipes
    from jukelite.bundle import Bundle

    vqvae_recipe, prior_recipes = tiny_recipes()
    assert [p.name for p in prior_recipes] == ["prior_top.yaml", "prior_mid.yaml",
                                               "prior_bottom.yaml"]
    assert all(p.is_file() for p in [vqvae_recipe, *prior_recipes])
    path = build_random_bundle(tmp_path / "tiny", vqvae_recipe, prior_recipes)
    bundle = Bundle.open(path)
    bundle.check_complete()
    assert bundle.levels == [0, 1, 2] and sorted(bundle.prior_configs) == [0, 1, 2]
    assert bundle.prior_configs[2].lyrics != "none" and bundle.prior_configs[0].upsampler
    with pytest.raises(FileExistsError, match="already holds a bundle"):
        build_random_bundle(path, vqvae_recipe, prior_recipes)


def test_model_bundle_times_each_level_as_it_decodes(tmp_path: Path, make_complete_bundle,
                                                     capsys: pytest.CaptureFixture[str]):
    bundle = make_complete_bundle(tmp_path / "parallel", parallel=True)
    assert main(["bench", "sample", "--model", str(bundle), "--batch", "1,2", "--tokens", "8",
                 "--naive-tokens", "2", "--repeats", "1", "--seconds", "0.05"]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    levels = result["shapes"]["model"]["levels"]
    assert levels["1"]["decoding"] == "autoregressive" and levels["0"]["decoding"] == "parallel"
    assert levels["0"]["audio_codes_per_second"] == 8000 / 4
    for batch in (1, 2):
        top, bottom = levels["1"]["batches"][str(batch)], levels["0"]["batches"][str(batch)]
        check_timings(top, batch)
        assert top["realtime_factor"] == pytest.approx(
            8000 / 8 / top["cached_tokens_per_second"])
        assert bottom["steps"] == 12 and bottom["parallel_codes"] == 8  # half of n_ctx 16
        assert bottom["parallel_codes_per_second"] == pytest.approx(
            batch * 8 / bottom["parallel_seconds"])
        assert bottom["realtime_factor"] == pytest.approx(
            2000 / bottom["parallel_codes_per_second"])
    assert "parallel_twin" not in levels["0"]  # twins are for the tiny recipes' upsamplers
    render = result["render"]
    assert render["bundle"] == str(bundle)
    assert render["decoding"] == {"1": "autoregressive", "0": "parallel"}
    assert render["levels"]["0"]["tokens"] == 400 // 4 and result["render_parallel"] is None
    assert "parallel/12" in captured.err and "render:" in captured.err
