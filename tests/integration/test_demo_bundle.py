"""The shipped demo model (data/demo): it is found with no model named, it sings two seconds
through the CLI, and its conditioning scores sit above the shuffled-request floor."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile

from jukelite.bundle import demo_bundle_path, file_sha256, read_manifest
from jukelite.cli import main

from .conftest import REPO

DEMO = REPO / "data" / "demo"


def test_the_shipped_demo_is_the_default_and_small(capsys):
    assert demo_bundle_path() == DEMO
    manifest = read_manifest(DEMO)
    assert sorted(manifest["vqvae"]) == sorted(manifest["priors"]) == ["0", "1", "2"]
    assert manifest["packed"]["dtype"] == "float16"
    for section in ("vqvae", "priors"):
        for entry in manifest[section].values():
            assert entry["sha256"] == file_sha256(DEMO / entry["file"])
            assert entry["provenance"]["train_seconds"] > 0  # how it was trained is recorded
    size = sum(p.stat().st_size for p in DEMO.iterdir())
    assert size < 40e6
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "artists (5): dusty_static, juniper_tide, mira_vale, nova_lark, the_copper_owls" in out
    assert " min, cpu: " in out  # training time and device, per component


def test_cli_sings_two_seconds_with_no_model_named(tmp_path, capsys):
    out = tmp_path / "song"
    code = main(["sample", "--artist", "Nova Lark", "--genre", "chiptune",
                 "--lyrics", "la lo me", "--seconds", "2", "--seed", "3", "-o", str(out)])
    assert code == 0, capsys.readouterr().err
    manifest = read_manifest(DEMO)
    wav = out / "level_0" / "sample_0.wav"
    info = soundfile.info(str(wav))
    assert (info.samplerate, info.frames, info.channels) == (manifest["sample_rate"],
                                                             2 * manifest["sample_rate"], 1)
    audio, _ = soundfile.read(str(wav), dtype="float32")
    assert np.isfinite(audio).all()
    assert np.sqrt(np.mean(audio**2)) > 0.01  # not silent
    record = json.loads((out / "song.json").read_text())
    assert record["status"] == "complete"
    assert record["bundle_sha256"] == file_sha256(DEMO / "jukelite.json")
    request = record["request"]
    assert (request["artist"], request["genres"], request["seed"]) == ("Nova Lark",
                                                                      ["chiptune"], 3)
    assert request["lyrics"] == "la lo me"


@pytest.mark.slow
def test_quick_conditioning_eval_of_the_demo_puts_the_floor_below_the_ceiling(tmp_path, capsys):
    out = tmp_path / "conditioning.json"
    # --levels top keeps the suite short (decoding the top codes instead of upsampling them:
    # 80 s instead of 3 min); the full-depth quick run passes the same checks.
    assert main(["eval", "conditioning", "--quick", "--levels", "top", "--quiet",
                 "-o", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["settings"]["bundle"] == str(DEMO)
    for key in ("artist_accuracy", "genre_accuracy"):
        assert report["floor"][key] < report["ceiling"][key]
    assert report["floor"]["lyric_cer"] > report["ceiling"]["lyric_cer"]
