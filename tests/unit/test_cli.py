"""The `jukelite` command line, called in-process through `main([...])`."""

import json
import re
from pathlib import Path

import pytest
import torch
import yaml

from jukelite.audio import audio_info, save_audio
from jukelite.cli import EXIT_USAGE, main
from jukelite.data.manifest import read_manifest
from jukelite.inference.codes import load_codes
from jukelite.vqvae import VQVAE, VQVAEConfig, count_parameters

pytestmark = pytest.mark.usefixtures("single_thread")

REPO = Path(__file__).resolve().parents[2]
JUKEBOX = REPO / "recipes" / "jukebox" / "vqvae.yaml"
RATE = 8000
LENGTH = 1001

TINY_RECIPE = {
    "kind": "vqvae",
    "data": {"manifest": "m.jsonl", "sample_rate": RATE, "sample_length": 64},
    "model": {"levels": 2, "downs_t": [2, 1], "strides_t": [2, 2], "width": [8, 8],
              "depth": [1, 1], "codebook_size": 16, "code_dim": 8, "linf_k": 64},
    "output": {"dir": "runs/tiny", "bundle": "models/tiny"},
}


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    """Run every command from an empty folder so stray writes are visible and harmless."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def wav(tmp_path):
    path = tmp_path / "song.wav"
    generator = torch.Generator().manual_seed(0)
    save_audio(path, torch.randn(1, LENGTH, generator=generator) * 0.3, RATE)
    return path


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def trainable_line(out: str) -> int:
    match = re.search(r"^trainable parameters: ([\d,]+)$", out, re.M)
    assert match, out
    return int(match.group(1).replace(",", ""))


# ----------------------------------------------------------------------------- help
@pytest.mark.parametrize(
    "argv",
    [[], ["train"], ["reconstruct"], ["encode"], ["decode"], ["data"], ["data", "index"],
     ["data", "synth"], ["info"], ["bench"]],
)
def test_help_on_every_command(capsys, argv):
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--help"])
    assert exit_info.value.code == 0
    assert "usage: jukelite" in capsys.readouterr().out


# ----------------------------------------------------------------------------- train
def test_train_dry_run_jukebox(capsys, tmp_path):
    code, out, err = run(capsys, "train", JUKEBOX, "--dry-run")
    assert code == 0, err
    assert trainable_line(out) == 1_485_763
    assert "trainable parameters: 1,485,763" in out
    levels = re.findall(r"^level (\d) \(hop (\d+)\)", out, re.M)
    assert levels == [("0", "8"), ("1", "32"), ("2", "128")]
    assert list(tmp_path.iterdir()) == []  # a dry run writes nothing


@pytest.mark.parametrize(("recipe", "tied"), [("prior_1b_lyrics.yaml", True),
                                              ("prior_5b.yaml", False)])
def test_prior_dry_run_parts_add_up_to_the_total(capsys, recipe, tied):
    code, out, err = run(capsys, "train", str(Path(JUKEBOX).parent / recipe), "--dry-run")
    assert code == 0, err
    parts = {name: int(count.replace(",", "")) for name, count in
             re.findall(r"^(\w+): ([\d,]+)$", out, re.M)}
    assert sum(parts.values()) == trainable_line(out)
    assert ("x_out" not in parts) == tied
    assert ("note: x_out shares its weights" in out) == tied


def test_train_dry_run_overrides_after_options(capsys):
    code, out, err = run(capsys, "train", JUKEBOX, "--dry-run", "model.width=[8,8,8]",
                         "model.depth=[1,1,1]")
    assert code == 0, err
    config = VQVAEConfig(sample_rate=44100, width=[8, 8, 8], depth=[1, 1, 1])
    with torch.device("meta"):
        expected = count_parameters(VQVAE(config))
    assert trainable_line(out) == expected != 1_485_763


def test_train_dry_run_overrides_before_and_after_options(capsys):
    code, out, _ = run(capsys, "train", JUKEBOX, "--dry-run")
    level0 = re.search(r"^level 0 .* = ([\d,]+) trainable", out, re.M).group(1)
    code, out, err = run(capsys, "train", JUKEBOX, "level=1", "--dry-run", "level=0")
    assert code == 0, err
    assert re.findall(r"^level (\d)", out, re.M) == ["0"]  # the later override wins
    assert trainable_line(out) == int(level0.replace(",", ""))


def test_train_bad_recipe_key_exits_2(capsys, tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({**TINY_RECIPE, "train": {"stepz": 3}}))
    code, out, err = run(capsys, "train", recipe, "--dry-run")
    assert code == EXIT_USAGE
    assert out == ""
    assert err.startswith(f"error: {recipe}")
    assert "unknown key 'train.stepz'; valid keys here:" in err


def test_train_bad_override_exits_2(capsys):
    code, out, err = run(capsys, "train", JUKEBOX, "--dry-run", "model.sample_rate=8000")
    assert code == EXIT_USAGE
    assert "'model.sample_rate' is taken from 'data.sample_rate'" in err


def test_train_missing_recipe_exits_2(capsys, tmp_path):
    code, _, err = run(capsys, "train", tmp_path / "none.yaml", "--dry-run")
    assert code == EXIT_USAGE
    assert "does not exist" in err


@pytest.mark.parametrize(
    "argv",
    [["train", str(JUKEBOX), "--dry-run", "not-an-override"],
     ["train", str(JUKEBOX), "--dry-run", "--bogus"],
     ["info", "somewhere", "extra=1"]],
)
def test_unrecognised_arguments(capsys, argv):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert "unrecognized arguments" in capsys.readouterr().err


# ----------------------------------------------------------------------------- info
def test_info(capsys, tiny_bundle):
    code, out, err = run(capsys, "info", tiny_bundle)
    assert code == 0, err
    assert f"bundle {tiny_bundle} (format 1): 8000 Hz, 1 channel(s), 2 levels" in out
    rows = [line.split() for line in out.splitlines() if re.match(r"^\s+[01]\s", line)]
    assert [row[:3] for row in rows] == [["0", "4", "2000.0"], ["1", "8", "1000.0"]]
    assert all(row[3:6] == ["16", "x", "8"] for row in rows)
    assert "priors: none yet" in out
    assert "level 0: trained 7 steps" in out


def test_info_json(capsys, tiny_bundle):
    code, out, _ = run(capsys, "info", tiny_bundle, "--json")
    assert code == 0
    info = json.loads(out)
    assert info["sample_rate"] == RATE
    assert [lv["hop_length"] for lv in info["vqvae"]] == [4, 8]


def test_info_not_a_bundle(capsys, tmp_path):
    code, out, err = run(capsys, "info", tmp_path)
    assert code == EXIT_USAGE
    assert "not a jukelite bundle" in err and out == ""


# ----------------------------------------------------------------------------- codec commands
def test_encode_then_decode(capsys, tiny_bundle, wav, tmp_path):
    code, out, err = run(capsys, "encode", wav, "--model", tiny_bundle, "-o", tmp_path / "c",
                         "--quiet")
    assert code == 0, err
    assert out.strip() == f"wrote {tmp_path / 'c.safetensors'}"
    codes, info = load_codes(tmp_path / "c.safetensors")
    assert {level: tuple(c.shape) for level, c in codes.items()} == {0: (1, 251), 1: (1, 126)}
    assert info["audio_samples"] == LENGTH

    code, out, err = run(capsys, "decode", tmp_path / "c.safetensors", "--model", tiny_bundle,
                         "-o", tmp_path / "out.wav", "--level", "1", "--quiet")
    assert code == 0, err
    assert out.strip() == f"wrote {tmp_path / 'out.wav'}"
    assert audio_info(tmp_path / "out.wav").frames == LENGTH


def test_encode_one_level(capsys, tiny_bundle, wav, tmp_path):
    code, _, err = run(capsys, "encode", wav, "--model", tiny_bundle, "-o", tmp_path / "c",
                       "--level", "1", "--quiet")
    assert code == 0, err
    assert sorted(load_codes(tmp_path / "c.safetensors")[0]) == [1]


def test_decode_of_a_non_codes_file_exits_2(capsys, tiny_bundle, wav, tmp_path):
    code, _, err = run(capsys, "decode", wav, "--model", tiny_bundle, "-o", tmp_path / "o.wav")
    assert code == EXIT_USAGE
    assert err.startswith("error: ") and "is not a safetensors codes file" in err
    assert not (tmp_path / "o.wav").exists()


def test_encode_with_a_missing_level_exits_2(capsys, tiny_bundle, wav, tmp_path):
    code, _, err = run(capsys, "encode", wav, "--model", tiny_bundle, "-o", tmp_path / "c",
                       "--level", "0,5", "--quiet")
    assert code == EXIT_USAGE
    assert "no VQ-VAE level [5]" in err


def test_reconstruct_json(capsys, tiny_bundle, wav, tmp_path):
    code, out, err = run(capsys, "reconstruct", wav, "--model", tiny_bundle, "-o",
                         tmp_path / "rec.wav", "--json", "--quiet")
    assert code == 0, err
    results = json.loads(out)
    assert sorted(results) == ["0", "1"]
    for level, hop in (("0", 4), ("1", 8)):
        metrics = results[level]
        assert metrics["hop_length"] == hop
        assert 1 <= metrics["codes_used"] <= 16
        assert isinstance(metrics["si_sdr_db"], float)
        assert audio_info(metrics["output"]).frames == LENGTH
        assert Path(metrics["output"]) == tmp_path / f"rec.level{level}.wav"


def test_reconstruct_table(capsys, tiny_bundle, wav, tmp_path):
    code, out, err = run(capsys, "reconstruct", wav, "--model", tiny_bundle, "--level", "0",
                         "-o", tmp_path / "rec.wav", "--quiet")
    assert code == 0, err
    header, row = out.strip().splitlines()
    assert header.split()[:2] == ["level", "hop"]
    assert row.split()[:2] == ["0", "4"]
    assert row.split()[-1] == str(tmp_path / "rec.wav")
    assert audio_info(tmp_path / "rec.wav").frames == LENGTH


# ----------------------------------------------------------------------------- data
@pytest.fixture
def synth_dir(capsys, tmp_path):
    code, out, err = run(capsys, "data", "synth", tmp_path / "songs", "--songs", "2",
                         "--seconds", "0.5", "--sample-rate", RATE, "--seed", "3")
    assert code == 0, err
    assert out.strip() == f"wrote 2 songs and {tmp_path / 'songs' / 'manifest.jsonl'}"
    return tmp_path / "songs"


def test_data_synth(synth_dir):
    audio = sorted(synth_dir.glob("*.flac"))
    assert [p.name for p in audio] == ["song_000.flac", "song_001.flac"]
    for path in audio:
        info = audio_info(path)
        assert info.sample_rate == RATE and info.frames == RATE // 2
    entries = read_manifest(synth_dir / "manifest.jsonl")
    assert [e.path.name for e in entries] == ["song_000.flac", "song_001.flac"]
    assert all(e.artist and e.genres for e in entries)


def test_data_index(capsys, synth_dir, tmp_path):
    output = tmp_path / "index" / "manifest.jsonl"
    code, out, err = run(capsys, "data", "index", synth_dir, "-o", output, "--quiet")
    assert code == 0, err
    assert out.startswith(f"wrote {output}: 2 songs")
    assert "problem" not in err
    entries = read_manifest(output)
    synth = read_manifest(synth_dir / "manifest.jsonl")
    assert [e.path for e in entries] == [e.path for e in synth]
    assert [(e.artist, e.genres, e.lyrics) for e in entries] == [
        (e.artist, e.genres, e.lyrics) for e in synth
    ]  # labels come from the metadata.csv the synthesiser wrote
    assert all(e.duration == pytest.approx(0.5) and e.sample_rate == RATE for e in entries)


def test_data_index_with_a_bad_file(capsys, synth_dir, tmp_path):
    (synth_dir / "broken.wav").write_bytes(b"this is not audio")
    output = tmp_path / "manifest.jsonl"

    code, out, err = run(capsys, "data", "index", synth_dir, "-o", output, "--strict", "--quiet")
    assert code == EXIT_USAGE
    assert "broken.wav" in err
    assert "1 problem(s); nothing written (--strict)" in err
    assert out == ""
    assert not output.exists()

    code, out, err = run(capsys, "data", "index", synth_dir, "-o", output, "--quiet")
    assert code == 0
    assert "problem: " in err and "broken.wav" in err
    assert "2 songs" in out and "1 problem(s) listed above" in out
    assert len(read_manifest(output)) == 2


def test_data_index_of_a_missing_or_empty_folder(capsys, tmp_path):
    code, _, err = run(capsys, "data", "index", tmp_path / "missing", "-o", tmp_path / "m.jsonl")
    assert code == EXIT_USAGE
    assert "error: " in err and "not found" in err
    (tmp_path / "empty").mkdir()
    code, _, err = run(capsys, "data", "index", tmp_path / "empty", "-o", tmp_path / "m.jsonl",
                       "--quiet")
    assert code == EXIT_USAGE
    assert "no usable audio found" in err
    assert not (tmp_path / "m.jsonl").exists()


# ----------------------------------------------------------------------------- bench
def test_bench_vqvae_on_a_tiny_recipe(capsys, tmp_path):
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(TINY_RECIPE))
    code, out, err = run(capsys, "bench", "vqvae", "--recipe", recipe, "--seconds", "0.5",
                         "--repeats", "1")
    assert code == 0, err
    result = json.loads(out)
    assert result["benchmark"] == "vqvae"
    assert result["source"] == str(recipe)
    assert result["seconds_per_item"] == 0.5
    assert sorted(result["levels"]) == ["0", "1"]
    for level, hop in (("0", 4), ("1", 8)):
        entry = result["levels"][level]
        assert entry["hop_length"] == hop
        assert entry["tokens"] == RATE // 2 // hop
        assert entry["encode_realtime_factor"] > 0
        assert entry["decode_realtime_factor"] > 0
        assert entry["encode_tokens_per_second"] > 0
        assert entry["parameters"] > 0
    assert "enc RTF" in err  # the readable table goes to stderr


def test_bench_vqvae_on_a_bundle(capsys, tiny_bundle):
    code, out, err = run(capsys, "bench", "vqvae", "--model", tiny_bundle, "--seconds", "0.1",
                         "--repeats", "1")
    assert code == 0, err
    result = json.loads(out)
    assert {k: v["hop_length"] for k, v in result["levels"].items()} == {"0": 4, "1": 8}


def test_bad_level_is_a_usage_error(tiny_bundle, tmp_path, capsys):
    audio = tmp_path / "a.wav"
    save_audio(audio, torch.zeros(1, 800), 8000)
    code = main(["encode", str(audio), "--model", str(tiny_bundle), "--level", "x", "-o",
                 str(tmp_path / "c.safetensors")])
    assert code == 2
    assert "--level must be 'all' or comma-separated integers" in capsys.readouterr().err


def test_the_cli_runs_as_a_module(tmp_path):
    """`torchrun -m jukelite.cli train ...` (README) needs `python -m jukelite.cli` to work."""
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "jukelite.cli", "train", JUKEBOX, "--dry-run"],
                            capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "trainable parameters: 1,485,763" in result.stdout
