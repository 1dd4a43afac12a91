"""Bundle integrity: sizes and sha256 checked on load (with a cache outside the bundle),
`info --verify`, NaN weights refused, priors trained on another VQ-VAE refused."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import jukelite
import jukelite.bundle as bundle_module
from jukelite.bundle import (
    MANIFEST_NAME,
    Bundle,
    BundleError,
    add_converted_level,
    demo_bundle_path,
    file_sha256,
    load_prior_level,
    load_vqvae_level,
    pack_bundle,
    read_manifest,
    save_prior_level,
    save_vqvae_level,
    verification_cache_path,
    verify_bundle,
)
from jukelite.cli import main
from jukelite.fileio import write_json_atomic

pytestmark = pytest.mark.usefixtures("single_thread")

REMEDY = "re-copy it or re-run the training/import"


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch) -> Path:
    """Each test remembers verified files in its own folder, never in the user's cache."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("JUKELITE_CACHE_DIR", str(folder))
    return folder


@pytest.fixture
def complete(tmp_path, make_complete_bundle) -> Path:
    return make_complete_bundle(tmp_path / "bundle")


@pytest.fixture
def hash_calls(monkeypatch) -> list[Path]:
    """The files `_read_level` and friends hash from now on."""
    calls: list[Path] = []

    def counting(path):
        calls.append(Path(path))
        return file_sha256(path)

    monkeypatch.setattr(bundle_module, "file_sha256", counting)
    return calls


def flip_byte(path: Path, offset: int = -100) -> None:
    """Corrupt one byte of the tensor data in place, keeping the size."""
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def touch_later(path: Path) -> None:
    """Move the mtime on, as any rewrite does, whatever the filesystem's time resolution."""
    info = path.stat()
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns + 2_000_000_000))


def edit_manifest(bundle: Path, edit) -> None:
    manifest = read_manifest(bundle)
    edit(manifest)
    write_json_atomic(bundle / MANIFEST_NAME, manifest)


# ----------------------------------------------------------------------------- what is recorded
def test_every_writer_records_sha256_and_size(complete, tmp_path, tiny_level):
    manifest = read_manifest(complete)
    entries = [*manifest["vqvae"].values(), *manifest["priors"].values()]
    assert len(entries) == 4
    for entry in entries:
        weights = complete / entry["file"]
        assert entry["size"] == weights.stat().st_size > 0
        assert entry["sha256"] == file_sha256(weights)

    packed = pack_bundle(complete, tmp_path / "packed")
    for section in ("vqvae", "priors"):
        for entry in packed[section].values():
            weights = tmp_path / "packed" / entry["file"]
            assert entry["size"] == weights.stat().st_size
            assert entry["sha256"] == file_sha256(weights)

    level = tiny_level(0)
    state = {k: v.contiguous() for k, v in level.state_dict().items()}
    imported = tmp_path / "imported"
    add_converted_level(imported, "vqvae", 0, lambda path: save_file(state, str(path)),
                        {"config": level.config.to_dict(), "hop_length": level.hop_length,
                         "parameters": 1},
                        {"sample_rate": 8000, "channels": 1, "levels": 2})
    entry = read_manifest(imported)["vqvae"]["0"]
    assert entry["size"] == (imported / entry["file"]).stat().st_size
    assert entry["sha256"] == file_sha256(imported / entry["file"])
    assert load_vqvae_level(imported, 0).hop_length == level.hop_length


def test_old_manifest_without_size_still_loads_and_checks_sha256(complete):
    def drop_sizes(manifest):
        for section in ("vqvae", "priors"):
            for entry in manifest[section].values():
                del entry["size"]

    edit_manifest(complete, drop_sizes)
    assert load_vqvae_level(complete, 0).level == 0
    assert load_prior_level(complete, 1).config.level == 1
    assert verify_bundle(complete) == []
    weights = complete / "prior_level_1.safetensors"
    weights.write_bytes(weights.read_bytes()[:-10])  # truncated: only the sha256 can tell
    with pytest.raises(BundleError, match="sha256 differs from jukelite.json"):
        load_prior_level(complete, 1)


# ----------------------------------------------------------------------------- corrupt files
def test_flipped_bytes_are_caught_on_load_once_the_file_changed(complete):
    weights = complete / "prior_level_1.safetensors"
    expected = read_manifest(complete)["priors"]["1"]["sha256"]
    assert load_prior_level(complete, 1).config.level == 1
    flip_byte(weights)
    touch_later(weights)
    found = file_sha256(weights)
    with pytest.raises(BundleError) as caught:
        load_prior_level(complete, 1)
    assert str(caught.value) == (
        f"{weights}: sha256 differs from jukelite.json (expected {expected[:12]}..., found "
        f"{found[:12]}...): the file is corrupt or was replaced; {REMEDY}")
    with pytest.raises(BundleError, match="prior_level_1.safetensors: sha256 differs"):
        jukelite.load(complete).generate(artist="Ada", genre="rock", seconds=0.02)


def test_info_verify_reports_each_file_and_exits_2(complete, capsys):
    assert main(["info", str(complete), "--verify"]) == 0
    out = capsys.readouterr().out
    assert out.count("ok   ") == 4 and "4 of 4 weight file(s) ok\n" in out

    weights = complete / "vqvae_level_0.safetensors"
    info = weights.stat()
    flip_byte(weights)
    os.utime(weights, ns=(info.st_atime_ns, info.st_mtime_ns))  # hides it from the cache...
    assert load_vqvae_level(complete, 0).level == 0
    assert main(["info", str(complete), "--verify"]) == 2  # ...but not from --verify
    out = capsys.readouterr().out
    assert f"BAD  {weights}: sha256 differs from jukelite.json (expected " in out
    assert f"ok   {complete / 'prior_level_1.safetensors'}\n" in out
    assert "3 of 4 weight file(s) ok, 1 bad" in out
    problems = verify_bundle(complete)
    assert len(problems) == 1 and problems[0].startswith(f"{weights}: sha256 differs")

    assert main(["info", str(complete), "--verify", "--json"]) == 2
    report = json.loads(capsys.readouterr().out)
    assert not report["ok"]
    assert [f["ok"] for f in report["files"]] == [False, True, True, True]


def test_truncated_file_gives_a_size_error_on_load_and_in_pack(complete, tmp_path):
    weights = complete / "prior_level_0.safetensors"
    size = weights.stat().st_size
    weights.write_bytes(weights.read_bytes()[: size // 2])
    message = (f"{weights}: size differs from jukelite.json (expected {size} bytes, found "
               f"{size // 2}): the file is truncated or was replaced; {REMEDY}")
    with pytest.raises(BundleError) as caught:
        load_prior_level(complete, 0)
    assert str(caught.value) == message
    with pytest.raises(BundleError) as caught:
        pack_bundle(complete, tmp_path / "packed")
    assert str(caught.value) == message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle", "cache"]  # nothing staged
    assert main(["info", str(complete), "--verify"]) == 2


def test_pack_of_an_unreadable_file_without_records_is_a_bundle_error(complete, tmp_path):
    def drop_records(manifest):
        for entry in manifest["vqvae"].values():
            del entry["size"], entry["sha256"]

    edit_manifest(complete, drop_records)
    weights = complete / "vqvae_level_1.safetensors"
    weights.write_bytes(weights.read_bytes()[:40])
    with pytest.raises(BundleError, match=f"^{weights}: cannot be read as safetensors"):
        pack_bundle(complete, tmp_path / "packed")
    assert not (tmp_path / "packed").exists()
    assert not (tmp_path / ".packed.packing").exists()


def test_nan_weights_are_refused_naming_the_tensor(tmp_path, tiny_level, capsys):
    level = tiny_level(0)
    name, parameter = next(iter(level.named_parameters()))
    with torch.no_grad():
        parameter.view(-1)[0] = float("nan")
        parameter.view(-1)[1] = float("inf")
    bundle = tmp_path / "bundle"
    weights = save_vqvae_level(bundle, level)
    with pytest.raises(BundleError) as caught:
        load_vqvae_level(bundle, 0)
    assert str(caught.value).startswith(
        f"{weights}: tensor '{name}' holds 1 NaN and 1 inf value(s) of {parameter.numel()}")
    assert main(["info", str(bundle), "--verify"]) == 2
    assert f"BAD  {weights}: tensor '{name}' holds 1 NaN" in capsys.readouterr().out
    with pytest.raises(BundleError, match=f"tensor '{name}' holds 1 NaN"):
        pack_bundle(bundle, tmp_path / "packed")


# ----------------------------------------------------------------------------- the cache
def test_verified_files_are_not_hashed_again_until_they_change(
    complete, cache_dir, monkeypatch, tmp_path, hash_calls
):
    monkeypatch.setenv("JUKELITE_CACHE_DIR", str(tmp_path / "fresh"))  # not yet verified
    weights = complete / "prior_level_1.safetensors"
    load_prior_level(complete, 1)
    assert hash_calls == [weights]
    cached = json.loads((tmp_path / "fresh" / "verified.json").read_text())
    info = weights.stat()
    assert cached[str(weights.resolve())] == {
        "size": info.st_size, "mtime_ns": info.st_mtime_ns,
        "sha256": read_manifest(complete)["priors"]["1"]["sha256"]}
    load_prior_level(complete, 1)
    assert hash_calls == [weights]  # the second load trusts the cache
    touch_later(weights)
    load_prior_level(complete, 1)
    assert hash_calls == [weights, weights]  # a new mtime means a new check
    load_prior_level(complete, 1)
    assert len(hash_calls) == 2


def test_files_just_written_need_no_hash_on_first_load(tmp_path, make_bundle, hash_calls):
    bundle = make_bundle(tmp_path / "bundle")
    hash_calls.clear()
    load_vqvae_level(bundle, 0)
    load_vqvae_level(bundle, 1)
    assert hash_calls == []


def test_corrupt_or_unwritable_cache_never_stops_loading(complete, cache_dir, monkeypatch,
                                                         tmp_path):
    cache_dir.mkdir(exist_ok=True)
    verification_cache_path().write_text("{not json")
    assert load_vqvae_level(complete, 0).level == 0
    assert str((complete / "vqvae_level_0.safetensors").resolve()) in json.loads(
        verification_cache_path().read_text())

    blocker = tmp_path / "a_file"
    blocker.write_text("")
    monkeypatch.setenv("JUKELITE_CACHE_DIR", str(blocker / "cache"))  # cannot be created
    assert load_vqvae_level(complete, 1).level == 1
    assert not (blocker / "cache").exists()


def test_cache_lives_outside_the_bundle_and_a_read_only_bundle_loads(complete, cache_dir):
    before = {p.name: p.stat().st_mtime_ns for p in complete.iterdir()}
    paths = [complete, *complete.iterdir()]
    modes = {p: stat.S_IMODE(p.stat().st_mode) for p in paths}
    for path in paths:
        path.chmod(0o555 if path.is_dir() else 0o444)
    try:
        jb = jukelite.load(complete)
        song = jb.generate(artist="Ada", genre="rock", seconds=0.02, seed=0)
        assert song.codes[0].shape == (1, 40)
    finally:
        for path, mode in modes.items():
            path.chmod(mode)
    assert {p.name: p.stat().st_mtime_ns for p in complete.iterdir()} == before
    assert verification_cache_path() == cache_dir / "verified.json"
    assert verification_cache_path().is_file()


def test_cache_path_follows_xdg_without_override(monkeypatch, tmp_path):
    monkeypatch.delenv("JUKELITE_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert verification_cache_path() == tmp_path / "xdg" / "jukelite" / "verified.json"


# ----------------------------------------------------------------------------- stale priors
def record_vqvae(bundle: Path, level: int, run_dir: str) -> None:
    """Re-save prior `level` with the provenance training writes: the sha256 of the VQ-VAE
    level whose codes it was trained on."""
    manifest = read_manifest(bundle)
    prior = load_prior_level(bundle, level)
    save_prior_level(bundle, prior, {"labels": manifest["labels"]}, provenance={
        "vqvae_sha256": manifest["vqvae"][str(level)]["sha256"],
        "recipe": {"output": {"dir": run_dir, "bundle": str(bundle)}}})


def test_prior_trained_on_a_replaced_vqvae_is_refused(complete, tiny_level, capsys):
    record_vqvae(complete, 1, "runs/top")
    record_vqvae(complete, 0, "runs/up")
    assert Bundle.open(complete).stale_priors() == {}
    old = read_manifest(complete)["vqvae"]["1"]["sha256"]
    save_vqvae_level(complete, tiny_level(1, seed=5))  # "retrained" VQ-VAE level 1
    new = read_manifest(complete)["vqvae"]["1"]["sha256"]
    assert new != old
    reason = (f"prior level 1 was trained on VQ-VAE level 1 with sha256 {old[:12]}..., but the "
              f"bundle now holds {new[:12]}...: retrain the prior (jukelite train with its "
              "recipe, run dir runs/top) or restore the VQ-VAE")
    assert Bundle.open(complete).stale_priors() == {1: reason}

    with pytest.raises(BundleError) as caught:
        jukelite.load(complete).generate(artist="Ada", genre="rock", seconds=0.02)
    assert str(caught.value) == reason

    assert main(["info", str(complete)]) == 0
    captured = capsys.readouterr()
    assert f"warning: {reason}" in captured.err
    assert "prior level 0 was trained" not in captured.err
    assert main(["info", str(complete), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["stale_priors"] == {"1": reason}


def test_only_the_sampled_levels_are_refused(complete, tiny_level):
    record_vqvae(complete, 0, "runs/up")
    save_vqvae_level(complete, tiny_level(0, seed=7))
    jb = jukelite.load(complete)
    assert sorted(Bundle.open(complete).stale_priors()) == [0]
    song = jb.generate(artist="Ada", genre="rock", seconds=0.02, levels="top")
    assert set(song.codes) == {1}
    with pytest.raises(BundleError, match=r"^prior level 0 was trained on VQ-VAE level 0 "):
        jb.generate(artist="Ada", genre="rock", seconds=0.02, levels="all")


def test_packing_keeps_the_link_between_priors_and_their_vqvae(complete, tmp_path, tiny_level):
    record_vqvae(complete, 1, "runs/top")
    packed = tmp_path / "packed"
    manifest = pack_bundle(complete, packed)
    source_sha = read_manifest(complete)["vqvae"]["1"]["sha256"]
    assert manifest["vqvae"]["1"]["packed_from_sha256"] == [source_sha]
    assert Bundle.open(packed).stale_priors() == {}
    repacked = pack_bundle(packed, tmp_path / "repacked", dtype="bfloat16")
    assert repacked["vqvae"]["1"]["packed_from_sha256"] == [
        source_sha, manifest["vqvae"]["1"]["sha256"]]
    assert Bundle.open(tmp_path / "repacked").stale_priors() == {}
    save_vqvae_level(packed, tiny_level(1, seed=5))  # a new VQ-VAE in a packed bundle
    assert sorted(Bundle.open(packed).stale_priors()) == [1]


def test_priors_without_a_record_are_never_stale(complete, tiny_level):
    save_vqvae_level(complete, tiny_level(1, seed=5))
    assert Bundle.open(complete).stale_priors() == {}
    assert Bundle.open(demo_bundle_path()).stale_priors() == {}  # packed before sizes existed
