"""`jukelite bench attention` and `jukelite bench prior` on tiny shapes."""

from __future__ import annotations

import json

import pytest

from jukelite.cli import build_parser, main
from jukelite.prior.model import LevelPrior, PriorConfig
from jukelite.vqvae.model import count_parameters


def _run(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[dict, str]:
    assert main(argv) == 0
    captured = capsys.readouterr()
    return json.loads(captured.out), captured.err


def test_bench_attention_reports_times_and_ratios(capsys: pytest.CaptureFixture[str]) -> None:
    result, table = _run(
        capsys,
        ["bench", "attention", "--n-ctx", "256", "--width", "32", "--heads", "2"]
        + ["--block-ctx", "16", "--repeats", "1"],
    )
    assert result["benchmark"] == "attention"
    assert (result["width"], result["heads"], result["block_ctx"]) == (32, 2, 16)
    assert "for backward" in result["measures"] and result["memory"]
    entries = result["results"]
    assert {e["type"] for e in entries} == {"DENSE", "ROW", "COLUMN", "PREV_ROW"}
    for entry in entries:
        assert entry["n_ctx"] == 256 and entry["blocks"] == 16
        assert entry["time_s"] > 0
        assert entry["peak_bytes"] > 0
        assert entry["time_ratio_vs_dense"] > 0
        assert entry["memory_ratio_vs_dense"] > 0
    dense = next(e for e in entries if e["type"] == "DENSE")
    assert dense["time_ratio_vs_dense"] == dense["memory_ratio_vs_dense"] == 1.0
    assert "DENSE" in table


def test_bench_prior_custom_shape(capsys: pytest.CaptureFixture[str]) -> None:
    result, table = _run(
        capsys,
        ["bench", "prior", "--shape", "custom", "--width", "32", "--depth", "2", "--heads", "2"]
        + ["--n-ctx", "32", "--blocks", "4", "--bins", "16", "--batch", "2", "--repeats", "1"],
    )
    assert result["benchmark"] == "prior"
    (entry,) = result["shapes"]
    config = PriorConfig(
        width=32, depth=2, heads=2, n_ctx=32, blocks=4, bins=16, attn_order=2, labels=False
    )
    assert entry["shape"] == "custom"
    assert entry["parameters"] == count_parameters(LevelPrior(config))
    assert entry["tokens_per_step"] == 2 * 32
    assert entry["seconds_per_step"] > 0
    assert entry["tokens_per_second"] > 0
    assert entry["tokens_per_second"] == pytest.approx(64 / entry["seconds_per_step"])
    assert "custom" in table


def test_bench_prior_shapes_and_overrides() -> None:
    from jukelite.bench.prior import prior_shape

    args = build_parser().parse_args(["bench", "prior", "--depth", "3"])
    assert args.shape == "tiny,small" and args.batch is None
    tiny = prior_shape("tiny", args)
    assert tiny == dict(width=64, depth=3, heads=2, n_ctx=256, blocks=8, bins=256, batch=4)
    assert prior_shape("small", args)["depth"] == 3
    assert prior_shape("small", args)["batch"] == 1
    with pytest.raises(ValueError, match="unknown prior shape"):
        prior_shape("huge", args)
    args = build_parser().parse_args(["bench", "prior", "--n-ctx", "64,128"])
    with pytest.raises(ValueError, match="one --n-ctx"):
        prior_shape("tiny", args)


def test_bench_help_documents_all_benchmarks(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["bench", "--help"])
    text = capsys.readouterr().out
    for word in ("vqvae", "attention", "prior", "--block-ctx", "--shape", "ignored"):
        assert word in text


def test_single_batch_benchmarks_get_one_int_and_their_own_seconds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from jukelite import bench
    from jukelite.bench import prior, vqvae

    seen: list = []
    monkeypatch.setattr(vqvae, "bench_vqvae", lambda args: seen.append(args) or {})
    monkeypatch.setattr(prior, "bench_prior", lambda args: seen.append(args) or {})
    parser = build_parser()
    bench.run_benchmark(parser.parse_args(["bench", "vqvae"]))
    bench.run_benchmark(parser.parse_args(["bench", "prior", "--batch", "3", "--seconds", "2"]))
    assert (seen[0].batch, seen[0].seconds) == (None, 5.0)
    assert (seen[1].batch, seen[1].seconds) == (3, 2.0)
    for bad in ("1,8", "x", "0"):
        with pytest.raises(ValueError, match="--batch"):
            bench.run_benchmark(parser.parse_args(["bench", "vqvae", "--batch", bad]))
