"""`jukelite sample` end to end on a tiny random bundle built here: files, records, errors."""

from __future__ import annotations

import json

import pytest
import soundfile as sf
import torch

from jukelite.cli import main
from jukelite.cli.sample import parse_temperature
from jukelite.inference.codes import load_codes

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture
def bundle(tmp_path, make_complete_bundle):
    return make_complete_bundle(tmp_path / "bundle")


def sample(bundle, *options: str) -> int:
    return main(["sample", "--model", str(bundle), "--quiet", *options])


def test_sample_writes_audio_codes_pictures_and_a_record(bundle, tmp_path, capsys):
    out = tmp_path / "out"
    code = sample(bundle, "--artist", "Ada", "--genre", "rock", "--genre", "folk",
                  "--seconds", "0.05", "--n-samples", "2", "--seed", "4",
                  "--temperature", "1=0.9,0=1.0", "--top-k", "8", "-o", str(out))
    assert code == 0
    for level in (1, 0):
        for index in range(2):
            audio, rate = sf.read(out / f"level_{level}" / f"sample_{index}.wav")
            assert rate == 8000 and audio.shape == (400,) and abs(audio).max() > 0
            png = (out / f"level_{level}" / f"sample_{index}.png").read_bytes()
            assert png.startswith(b"\x89PNG")
    codes, info = load_codes(out / "codes.safetensors")
    assert codes[1].shape == (2, 50) and codes[0].shape == (2, 100)
    record = json.loads((out / "song.json").read_text())
    request = record["request"]
    assert record["status"] == "complete" and request["genres"] == ["rock", "folk"]
    assert request["temperature"] == {"0": 1.0, "1": 0.9} and request["top_k"] == 8
    assert request["seed"] == 4 and "torch" in record["versions"]
    assert set(record["levels"]) == {"0", "1"} and record["levels"]["0"]["tokens"] == 100
    printed = capsys.readouterr().out
    assert "level 0: 100 codes per sample" in printed and str(out) in printed


def test_a_preview_then_resume_gives_the_codes_of_one_full_run(bundle, tmp_path):
    settings = ["--artist", "Bo", "--genre", "folk", "--seconds", "0.04", "--seed", "1"]
    assert sample(bundle, *settings, "--levels", "top", "-o", str(tmp_path / "a")) == 0
    assert not (tmp_path / "a" / "level_0").exists()
    assert sample(bundle, "--resume", str(tmp_path / "a"), "--levels", "all") == 0
    assert sample(bundle, *settings, "-o", str(tmp_path / "b")) == 0
    first, _ = load_codes(tmp_path / "a" / "codes.safetensors")
    second, _ = load_codes(tmp_path / "b" / "codes.safetensors")
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])


def test_prime_and_upsample(bundle, tmp_path):
    prompt, kept = tmp_path / "prompt.wav", tmp_path / "kept.wav"
    noise = 0.3 * torch.randn(800).numpy()
    sf.write(prompt, noise, 8000)
    sf.write(kept, noise[:160], 8000)  # what --prime-seconds 0.02 keeps
    out = tmp_path / "primed"
    assert sample(bundle, "--artist", "Ada", "--genre", "rock", "--prime", str(prompt),
                  "--prime-seconds", "0.02", "--seconds", "0.06", "-o", str(out)) == 0
    primed, _ = load_codes(out / "codes.safetensors")
    from jukelite.inference.codec import encode_file

    encode_file(kept, bundle, tmp_path / "prompt_codes.safetensors", progress=False)
    own, _ = load_codes(tmp_path / "prompt_codes.safetensors")
    assert torch.equal(primed[1][:, :20], own[1])  # 0.02 s = 160 samples = 20 codes
    again = tmp_path / "again"
    assert sample(bundle, "--upsample", str(out / "codes.safetensors"), "--seed", "5",
                  "-o", str(again)) == 0
    upsampled, _ = load_codes(again / "codes.safetensors")
    assert torch.equal(upsampled[1], primed[1]) and not torch.equal(upsampled[0], primed[0])
    record = json.loads((again / "song.json").read_text())["request"]
    assert record["mode"] == "upsample" and record["artist"] == "Ada"  # from the run's record


@pytest.mark.parametrize(("options", "message"), [
    (["--artist", "Adda", "--genre", "rock", "-o", "{out}"], "did you mean 'ada'"),
    (["--artist", "Ada", "--genre", "rok", "-o", "{out}"], "rock"),
    (["--artist", "Ada", "--genre", "rock", "--seconds", "30", "-o", "{out}"], "timing range"),
    (["--artist", "Ada", "--genre", "rock", "--prime", "{tmp}/nope.wav", "--seconds", "0.1",
      "-o", "{out}"], "nope.wav"),
    (["--artist", "Ada", "--genre", "rock"], "-o OUTDIR"),
    (["--resume", "{out}", "--artist", "Ada"], "drop --artist"),
    (["--artist", "Ada", "--temperature", "hot", "-o", "{out}"], "--temperature"),
    (["--artist", "Ada", "--lyrics-file", "{tmp}/none.txt", "-o", "{out}"], "none.txt"),
])
def test_bad_requests_exit_2_with_a_clear_message(bundle, tmp_path, capsys, options, message):
    options = [o.format(out=tmp_path / "out", tmp=tmp_path) for o in options]
    assert sample(bundle, *options) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out" / "codes.safetensors").exists()


def test_an_existing_run_is_not_overwritten_by_accident(bundle, tmp_path, capsys):
    settings = ["--artist", "Ada", "--genre", "rock", "--seconds", "0.02", "--levels", "top"]
    assert sample(bundle, *settings, "-o", str(tmp_path / "run")) == 0
    assert sample(bundle, *settings, "-o", str(tmp_path / "run")) == 2
    assert "--resume" in capsys.readouterr().err
    assert sample(bundle, *settings, "--overwrite", "-o", str(tmp_path / "run")) == 0


def test_temperature_option_parses_one_value_or_levels():
    assert parse_temperature("0.8") == 0.8
    assert parse_temperature("2=0.98,1=0.99") == {2: 0.98, 1: 0.99}


def test_alignment_writes_lyric_timings_for_a_lyrics_prior(tmp_path, make_complete_bundle):
    bundle = make_complete_bundle(tmp_path / "lyrical", lyrics="encoder")
    out = tmp_path / "sung"
    assert sample(bundle, "--artist", "Bo", "--genre", "folk", "--lyrics", "la di da\nhey ho",
                  "--seconds", "0.06", "--n-samples", "2", "--alignment", "-o", str(out)) == 0
    record = json.loads((out / "alignment" / "alignment.json").read_text())
    assert record["level"] == 1 and record["layer"] == 3 and len(record["samples"]) == 2
    words = record["samples"][0]["words"]
    assert [w["word"] for w in words] == ["la", "di", "da", "hey", "ho"]
    starts = [w["start"] for w in words]
    assert starts == sorted(starts) and 0 <= starts[0] and starts[-1] < 0.06
    lrc = (out / "alignment" / "sample_1.lrc").read_text().splitlines()
    assert [line[10:] for line in lrc] == ["la di da", "hey ho"] and lrc[0].startswith("[00:")
    assert (out / "alignment" / "sample_0.png").read_bytes().startswith(b"\x89PNG")


def test_alignment_needs_a_lyrics_prior(bundle, tmp_path, capsys):
    assert sample(bundle, "--artist", "Ada", "--alignment", "-o", str(tmp_path / "o")) == 2
    assert "lyrics-conditioned" in capsys.readouterr().err
