"""The default model: where it is looked for, what happens without it, and packing a bundle's
weights to float16 for shipping."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

import jukelite
from jukelite import bundle as demo_model
from jukelite.bundle import BundleError, file_sha256, load_prior_level, pack_bundle, read_manifest
from jukelite.cli import EXIT_USAGE, main

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture
def complete_bundle(tmp_path, make_complete_bundle):
    return make_complete_bundle(tmp_path / "bundle", lyrics="encoder")


def test_load_without_a_path_uses_the_first_installed_demo(complete_bundle, tmp_path,
                                                           monkeypatch):
    missing = tmp_path / "not_here"
    monkeypatch.setattr(demo_model, "demo_bundle_candidates", lambda: [missing, complete_bundle])
    assert demo_model.demo_bundle_path() == complete_bundle
    jb = jukelite.load()
    assert jb.bundle == complete_bundle
    song = jb.generate(artist="Ada", genre="rock", seconds=0.03, seed=0)
    assert song.audio.shape[-1] == 240


def test_no_demo_installed_is_a_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(demo_model, "demo_bundle_candidates", lambda: [tmp_path / "a"])
    with pytest.raises(BundleError, match=r"demo model is not installed \(looked in .*a\)"):
        jukelite.load()
    assert main(["sample", "--artist", "Ada", "--genre", "rock", "-o", str(tmp_path / "o")]) \
        == EXIT_USAGE
    assert "the demo model is not installed" in capsys.readouterr().err


def test_packed_float16_bundle_is_half_the_size_and_samples_like_the_original(
    complete_bundle, tmp_path
):
    packed = tmp_path / "packed"
    manifest = pack_bundle(complete_bundle, packed, "float16", {"data": "synth 200 songs"})
    assert manifest["packed"]["dtype"] == "float16"
    assert manifest["packed"]["data"] == "synth 200 songs"
    assert read_manifest(packed) == manifest
    for name in ("vqvae_level_0.safetensors", "prior_level_1.safetensors"):
        original, small = load_file(complete_bundle / name), load_file(packed / name)
        assert original.keys() == small.keys()
        assert all(v.dtype in (torch.float16, torch.int64, torch.int32, torch.bool)
                   for v in small.values())
        float_bytes = [sum(v.nbytes for v in state.values() if v.is_floating_point())
                       for state in (original, small)]
        assert float_bytes[1] * 2 == float_bytes[0] > 0
    entry = manifest["priors"]["1"]
    assert entry["sha256"] == file_sha256(packed / entry["file"])
    prior = load_prior_level(packed, 1)
    assert all(p.dtype == torch.float32 for p in prior.parameters())
    original = load_prior_level(complete_bundle, 1)
    for (name, a), (_, b) in zip(original.state_dict().items(), prior.state_dict().items(),
                                 strict=True):
        if a.is_floating_point():
            torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4, msg=name)
    audio = jukelite.load(packed).generate(artist="Ada", genre="rock", seconds=0.05, seed=2).audio
    reference = jukelite.load(complete_bundle).generate(artist="Ada", genre="rock", seconds=0.05,
                                                        seed=2).audio
    assert audio.shape == reference.shape and torch.isfinite(audio).all()


def test_pack_refuses_an_existing_target_and_an_unknown_dtype(complete_bundle, tmp_path):
    with pytest.raises(BundleError, match="already exists"):
        pack_bundle(complete_bundle, complete_bundle)
    with pytest.raises(BundleError, match="pack dtype must be one of"):
        pack_bundle(complete_bundle, tmp_path / "x", "int8")
    assert not (tmp_path / "x").exists()


def test_cli_pack_and_info_of_the_default_model(complete_bundle, tmp_path, monkeypatch, capsys):
    target = tmp_path / "shipped"
    assert main(["pack", str(complete_bundle), str(target), "--note", "songs=200"]) == 0
    assert "float16 weights" in capsys.readouterr().out
    assert json.loads((target / "jukelite.json").read_text())["packed"]["songs"] == "200"
    assert main(["pack", str(complete_bundle), str(tmp_path / "y"), "--note", "nonsense"]) \
        == EXIT_USAGE
    assert "--note expects KEY=VALUE" in capsys.readouterr().err
    monkeypatch.setattr(demo_model, "demo_bundle_candidates", lambda: [target])
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert str(target) in out
    assert "artists (2): ada, bo" in out and "genre words (2): folk, rock" in out


def test_a_packed_temperature_is_the_bundle_default_that_a_request_overrides(
    complete_bundle, tmp_path
):
    packed = tmp_path / "cool"
    manifest = pack_bundle(complete_bundle, packed, "float32", temperature={0: 0.7})
    assert manifest["sampling"] == {"temperature": {"0": 0.7}}
    jb = jukelite.load(packed)
    assert jb.default_temperature == {0: 0.7, 1: 0.99}
    assert jukelite.load(complete_bundle).default_temperature == {0: 0.99, 1: 0.99}

    def used(**kwargs) -> dict:
        song = jb.generate(artist="Ada", genre="rock", seconds=0.03, seed=0, **kwargs)
        return song.record["request"]["temperature"]

    assert used() == {"0": 0.7, "1": 0.99}
    assert used(temperature={1: 0.5}) == {"0": 0.7, "1": 0.5}  # unnamed levels: the bundle's
    assert used(temperature=1.0) == {"0": 1.0, "1": 1.0}

    def codes(**kwargs) -> torch.Tensor:
        return jb.generate(artist="Ada", genre="rock", seconds=0.1, seed=0, **kwargs).codes[0]

    assert torch.equal(codes(), codes(temperature={0: 0.7}))  # what sampling used
    assert not torch.equal(codes(), codes(temperature={0: 0.05}))
    with pytest.raises(BundleError, match=r"level\(s\) \[5\].*levels \[0, 1\]"):
        pack_bundle(complete_bundle, tmp_path / "bad", temperature={5: 0.7})
    with pytest.raises(BundleError,
                       match=r"level 0: temperature must be a finite number > 0, got 0.0"):
        pack_bundle(complete_bundle, tmp_path / "bad", temperature={0: 0.0})
    assert not (tmp_path / "bad").exists()


def test_cli_pack_temperature_shows_in_info_and_needs_level_pairs(
    complete_bundle, tmp_path, capsys
):
    target = tmp_path / "cool"
    assert main(["pack", str(complete_bundle), str(target), "--temperature", "0=0.7"]) == 0
    capsys.readouterr()
    assert main(["info", str(target)]) == 0
    assert "default sampling temperature: level 0 0.7 (other levels 0.99)" in \
        capsys.readouterr().out
    assert main(["pack", str(complete_bundle), str(tmp_path / "z"), "--temperature", "0.7"]) \
        == EXIT_USAGE
    assert "takes LEVEL=T pairs" in capsys.readouterr().err
