"""`jukelite score` on the shipped demo model: the numbers of `Jukebox.score`, from audio or
codes files, written atomically with every code's log-probability; clear errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import jukelite
from jukelite.bundle import demo_bundle_path
from jukelite.cli import main

pytestmark = pytest.mark.usefixtures("single_thread")

RATE = 16000  # the demo model's; hops 8, 32, 128 (x4 per level)
SECONDS = 1.25  # 157 top codes (the last one partial) and 625 level-1 codes


@pytest.fixture(scope="module")
def wav(tmp_path_factory) -> Path:
    """A short synthetic song: a gliding tone with a pulse, and some noise."""
    t = np.arange(int(RATE * SECONDS)) / RATE
    rng = np.random.default_rng(0)
    signal = 0.3 * np.sin(2 * np.pi * (220 + 80 * t) * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))
    path = tmp_path_factory.mktemp("score") / "x.wav"
    sf.write(path, (signal + 0.02 * rng.standard_normal(t.shape)).astype(np.float32), RATE)
    return path


@pytest.fixture(scope="module")
def jb() -> jukelite.Jukebox:
    return jukelite.load()


def score(capsys, *args: str) -> tuple[int, dict | None, str]:
    code = main(["score", *args, "--quiet"])
    captured = capsys.readouterr()
    return code, json.loads(captured.out) if code == 0 else None, captured.err


def bits(logprobs: torch.Tensor) -> float:
    return float(-logprobs.double().mean() / math.log(2))


def test_scoring_audio_at_the_top_level_gives_the_api_numbers(wav, jb, capsys, tmp_path):
    out = tmp_path / "scores.json"
    code, report, _ = score(capsys, str(wav), "--level", "2", "--artist", "Mira Vale",
                            "--genre", "ambient", "--lyrics", "la la la", "-o", str(out))
    assert code == 0
    codes = jb.encode(wav, [2])[2]
    expected = jb.score(codes, 2, artist="Mira Vale", genre="ambient", lyrics="la la la")
    assert report["level"] == 2 and report["n"] == 1 and report["tokens"] == 157
    assert report["bits_per_token"] == pytest.approx(bits(expected), rel=1e-9)
    assert report["bits_per_second"] == pytest.approx(bits(expected) * RATE / 128, rel=1e-9)
    assert report["per_sample_bits_per_token"] == pytest.approx([bits(expected)], rel=1e-9)
    assert 0 < report["bits_per_token"] < 8  # 256 codes: a trained prior beats uniform
    conditioning = report["conditioning"]
    assert conditioning["artist"] == "Mira Vale" and conditioning["genres"] == ["ambient"]
    assert conditioning["artist_id"] == jb.artists.index("mira_vale")
    assert conditioning["lyrics_used"] and conditioning["total_samples"] == 157 * 128
    written = json.loads(out.read_text())
    assert {k: v for k, v in written.items() if k != "logprobs"} == report
    torch.testing.assert_close(torch.tensor(written["logprobs"]), expected, atol=1e-7, rtol=0)
    assert not list(tmp_path.glob(".*"))  # no temporary file left behind


@pytest.fixture(scope="module")
def autoregressive_bundle(tmp_path_factory) -> Path:
    """The demo model with an autoregressive level-1 upsampler (random weights) in place of its
    parallel one, which has no per-code log-probabilities to score."""
    import dataclasses
    import shutil

    from jukelite.bundle import Bundle, save_prior_level
    from jukelite.prior.model import LevelPrior

    path = tmp_path_factory.mktemp("ar") / "bundle"
    shutil.copytree(demo_bundle_path(), path)
    bundle = Bundle.open(path)
    config = dataclasses.replace(bundle.prior_configs[1], decoding="autoregressive")
    with torch.random.fork_rng():
        torch.manual_seed(0)
        prior = LevelPrior(config).eval()
    save_prior_level(path, prior, {"labels": bundle.label_vocabulary(1).to_dict(), "lyrics": None})
    return path


def test_an_upsampler_scores_audio_and_codes_files_alike(wav, autoregressive_bundle, capsys,
                                                         tmp_path):
    code, _, err = score(capsys, str(wav), "--level", "1")  # the demo's level 1 is parallel
    assert code == 2 and "decodes in parallel" in err
    labels = ["--level", "1", "--artist", "Nova Lark", "--genre", "rock",
              "--model", str(autoregressive_bundle)]
    code, from_audio, _ = score(capsys, str(wav), *labels)
    assert code == 0 and from_audio["tokens"] == 624  # whole level-2 codes: 156 x 4
    jb = jukelite.load(autoregressive_bundle)
    encoded = jb.encode(wav, [1, 2])
    expected = jb.score(encoded[1][:, :624], 1, artist="Nova Lark", genre="rock",
                        upper_codes=encoded[2][:, :156])
    assert from_audio["bits_per_token"] == pytest.approx(bits(expected), rel=1e-9)
    assert from_audio["conditioning"]["upper_level"] == 2

    model = ["--model", str(autoregressive_bundle), "--quiet"]
    every_level, lower, upper = (tmp_path / f"{name}.safetensors"
                                 for name in ("all", "lower", "upper"))
    assert main(["encode", str(wav), *model, "-o", str(every_level)]) == 0
    assert main(["encode", str(wav), *model, "--level", "1", "-o", str(lower)]) == 0
    assert main(["encode", str(wav), *model, "--level", "2", "-o", str(upper)]) == 0
    capsys.readouterr()
    code, from_codes, _ = score(capsys, str(every_level), *labels)
    assert code == 0 and from_codes["bits_per_token"] == from_audio["bits_per_token"]
    code, _, err = score(capsys, str(lower), *labels)
    assert code == 2 and "--upper" in err
    code, with_upper, _ = score(capsys, str(lower), *labels, "--upper", str(upper))
    assert code == 0 and with_upper["bits_per_token"] == from_audio["bits_per_token"]


def test_bad_requests_are_one_clear_line(wav, capsys, tmp_path):
    code, _, err = score(capsys, str(wav), "--level", "2", "--artist", "Mira Vail")
    assert code == 2 and "mira_vale" in err
    code, _, err = score(capsys, str(wav), "--level", "2", "--upper", str(wav))
    assert code == 2 and "--upper is for upsamplers" in err
    code, _, err = score(capsys, str(wav), "--level", "7")
    assert code == 2 and "--level must be one of [0, 1, 2]" in err
    code, _, err = score(capsys, str(wav), "--level", "2", "--total-seconds", "0.5")
    assert code == 2 and "total_length must reach past" in err
    code, _, err = score(capsys, str(tmp_path / "missing.wav"), "--level", "2")
    assert code == 2 and "does not exist" in err
