"""The shipped demo model (data/demo): it is found with no model named, it sings two seconds
through the CLI, and it sings the artist it is asked for well above the shuffled-request floor."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile

from jukelite.bundle import demo_bundle_path, file_sha256, read_manifest
from jukelite.cli import main
from jukelite.evaluation import EvalSettings, evaluate_conditioning

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


# The cheapest run that shows the README's headline, the artist heard well above the floor: songs
# of 4 s (at 3 s the scorers tell held-out singers apart far less often) sampled to level 1,
# since the level-0 upsampler adds no artist (measured with the autoregressive demo: margins 0.23
# at level 1 and 0.21 at full depth for seed 0). Each artist is asked for once, 10 times: a
# request costs about the same for 10 clips as for 2. No lyrics recognizer.
ARTIST_CHECK = EvalSettings(seconds=4.0, train_songs=200, test_songs=20, samples_per_pair=10,
                            all_pairs=False, classifier_steps=300, recognizer_steps=0)
# Measured for seed 0 with the shipped demo (usage-restart VQ-VAE, parallel upsamplers): 0.440
# against a floor of 0.210 (16 clips per artist: 0.463 against 0.199; the demo before it, 16
# clips: 0.513 against 0.195).
# A model that ignores the artist scores its floor give or take 0.057 (50 clips), so it would
# need almost two of those to pass.
ARTIST_MARGIN = 0.1


@pytest.mark.slow
@pytest.mark.usefixtures("single_thread")
def test_the_demo_sings_the_asked_for_artist_well_above_the_floor():
    report = evaluate_conditioning(settings=ARTIST_CHECK, seed=0, levels=1)
    assert report["settings"]["bundle"] == str(DEMO)
    # The scorers tell held-out demo songs apart (measured: 0.9 and 1.0).
    assert report["ceiling"]["artist_accuracy"] >= 0.8
    assert report["ceiling"]["genre_accuracy"] >= 0.9
    model, floor = report["model"]["artist_accuracy"], report["floor"]["artist_accuracy"]
    assert model - floor > ARTIST_MARGIN, (model, floor, report["model"]["per_artist"])
