"""Model bundles and code files: round trips, and refusals that name what is wrong."""

import json

import pytest
import torch
from safetensors.torch import save_file

from jukelite.bundle import (
    FORMAT_VERSION,
    MANIFEST_NAME,
    BundleError,
    describe,
    file_sha256,
    load_vqvae_level,
    read_manifest,
    save_vqvae_level,
    vqvae_levels,
)
from jukelite.inference.codes import CODES_FORMAT, CodesError, load_codes, save_codes

pytestmark = pytest.mark.usefixtures("single_thread")


def random_audio(seconds: float = 0.05, rate: int = 8000, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(2, 1, int(seconds * rate), generator=generator) * 0.3


# ----------------------------------------------------------------------------- bundles
def test_round_trip_gives_identical_codes_and_audio(tmp_path, tiny_level):
    bundle = tmp_path / "b"
    audio = random_audio()
    for level in (0, 1):
        model = tiny_level(level)
        model.set_data_statistics(0.5, 3.0)
        weights = save_vqvae_level(bundle, model, provenance={"steps": 11})
        assert weights == bundle / f"vqvae_level_{level}.safetensors"
        loaded = load_vqvae_level(bundle, level)
        assert not loaded.training
        assert loaded.level == level
        assert loaded.config == model.config
        codes = model.encode(audio)
        assert codes.unique().numel() > 2  # a real test: the codes vary
        assert torch.equal(loaded.encode(audio), codes)
        assert torch.equal(loaded.decode(codes), model.decode(codes))
        for key, value in model.state_dict().items():
            assert torch.equal(loaded.state_dict()[key], value), key
    assert vqvae_levels(bundle) == [0, 1]


def test_manifest_contents(tiny_bundle):
    manifest = json.loads((tiny_bundle / MANIFEST_NAME).read_text())
    assert manifest["format_version"] == FORMAT_VERSION
    assert manifest["sample_rate"] == 8000
    assert manifest["channels"] == 1
    assert manifest["levels"] == 2
    assert manifest["hop_lengths"] == {"0": 4, "1": 8}
    entry = manifest["vqvae"]["0"]
    assert entry["file"] == "vqvae_level_0.safetensors"
    assert entry["hop_length"] == 4
    assert entry["config"]["width"] == [8, 8]
    assert entry["provenance"]["steps"] == 7
    assert "saved_at" in entry["provenance"]
    assert len(entry["sha256"]) == 64
    assert not list(tiny_bundle.glob(".*.tmp*"))  # no temporary files left behind


def test_saving_a_level_again_replaces_it(tmp_path, tiny_level):
    bundle = tmp_path / "b"
    save_vqvae_level(bundle, tiny_level(0, seed=1))
    newer = tiny_level(0, seed=2)
    save_vqvae_level(bundle, newer, metrics={"spectral_convergence_db": -9.0})
    assert vqvae_levels(bundle) == [0]
    loaded = load_vqvae_level(bundle, 0)
    assert torch.equal(loaded.quantizer.codebook, newer.quantizer.codebook)
    assert read_manifest(bundle)["vqvae"]["0"]["metrics"] == {"spectral_convergence_db": -9.0}


@pytest.mark.parametrize(
    ("change", "key"),
    [({"sample_rate": 16000}, "sample_rate"), ({"channels": 2}, "channels"),
     ({"levels": 1, "downs_t": [2], "strides_t": [2], "width": [8], "depth": [1]}, "levels")],
)
def test_mismatched_level_is_refused(tiny_bundle, tiny_config, tiny_level, change, key):
    before = (tiny_bundle / MANIFEST_NAME).read_text()
    weights_before = (tiny_bundle / "vqvae_level_0.safetensors").read_bytes()
    other = tiny_level(0, tiny_config(**change))
    with pytest.raises(BundleError, match=f"cannot add VQ-VAE level 0 with {key}="):
        save_vqvae_level(tiny_bundle, other)
    # nothing changed on disk
    assert (tiny_bundle / MANIFEST_NAME).read_text() == before
    assert (tiny_bundle / "vqvae_level_0.safetensors").read_bytes() == weights_before


def test_not_a_bundle(tmp_path):
    with pytest.raises(BundleError, match=f"not a jukelite bundle: {MANIFEST_NAME} not found"):
        load_vqvae_level(tmp_path, 0)
    (tmp_path / MANIFEST_NAME).write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        read_manifest(tmp_path)
    (tmp_path / MANIFEST_NAME).write_text(json.dumps({"format_version": 99}))
    with pytest.raises(BundleError, match="format_version 99 is not supported"):
        read_manifest(tmp_path)


def test_missing_level(tmp_path, make_bundle):
    bundle = make_bundle(tmp_path / "b", levels=(1,))
    with pytest.raises(BundleError, match=r"has no VQ-VAE level 0 \(levels present: \['1'\]\)"):
        load_vqvae_level(bundle, 0)


def test_missing_weights(tiny_bundle):
    (tiny_bundle / "vqvae_level_1.safetensors").unlink()
    with pytest.raises(BundleError, match="vqvae_level_1.safetensors is listed in .* but missing"):
        load_vqvae_level(tiny_bundle, 1)
    assert load_vqvae_level(tiny_bundle, 0).level == 0


def test_corrupt_weights(tiny_bundle):
    path = tiny_bundle / "vqvae_level_0.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(BundleError, match="level_0.safetensors: size differs from jukelite.json"):
        load_vqvae_level(tiny_bundle, 0)
    path.write_bytes(b"garbage")
    _record_weights(tiny_bundle, 0)  # a manifest that agrees: the reader itself must refuse
    with pytest.raises(BundleError, match="level_0.safetensors: cannot be read as safetensors"):
        load_vqvae_level(tiny_bundle, 0)


def _record_weights(bundle, level):
    """Make jukelite.json list the file now in place, as if it had been written so."""
    manifest = read_manifest(bundle)
    entry = manifest["vqvae"][str(level)]
    weights = bundle / entry["file"]
    entry.update(sha256=file_sha256(weights), size=weights.stat().st_size)
    (bundle / MANIFEST_NAME).write_text(json.dumps(manifest))


def test_weights_that_do_not_fit_the_config(tiny_bundle):
    # level 1's weights under level 0's name: valid safetensors, wrong tensors
    (tiny_bundle / "vqvae_level_0.safetensors").write_bytes(
        (tiny_bundle / "vqvae_level_1.safetensors").read_bytes()
    )
    _record_weights(tiny_bundle, 0)
    with pytest.raises(BundleError, match="vqvae_level_0.safetensors: weights do not match"):
        load_vqvae_level(tiny_bundle, 0)
    save_file({"w": torch.zeros(2)}, str(tiny_bundle / "vqvae_level_1.safetensors"))
    _record_weights(tiny_bundle, 1)
    with pytest.raises(BundleError, match="weights do not match"):
        load_vqvae_level(tiny_bundle, 1)


def test_describe(tiny_bundle):
    info = describe(tiny_bundle)
    assert info["sample_rate"] == 8000
    assert info["channels"] == 1
    assert info["levels"] == 2
    assert info["format_version"] == FORMAT_VERSION
    assert [lv["level"] for lv in info["vqvae"]] == [0, 1]
    level0, level1 = info["vqvae"]
    assert level0["hop_length"] == 4 and level1["hop_length"] == 8
    assert level0["tokens_per_second"] == 2000.0 and level1["tokens_per_second"] == 1000.0
    assert level0["codebook"] == "16 x 8"
    assert level0["width"] == 8 and level0["depth"] == 1
    assert level0["trained_steps"] == 7
    model = load_vqvae_level(tiny_bundle, 0)
    assert level0["parameters"] == sum(p.numel() for p in model.parameters()) > 0
    weights = sum(p.stat().st_size for p in tiny_bundle.glob("*.safetensors"))
    assert info["size_bytes"] == weights > 0
    assert info["priors"] == {}
    assert info["provenance"][0]["steps"] == 7
    json.dumps(info)  # `jukelite info --json` prints it


def test_describe_sorts_levels_numerically(tmp_path, tiny_config, make_bundle):
    config = tiny_config(levels=11, downs_t=[1] * 11, strides_t=[2] * 11,
                         width=[4 + i for i in range(11)], depth=[1] * 11)
    bundle = make_bundle(tmp_path / "b", levels=(10, 2), config=config)
    levels = describe(bundle)["vqvae"]
    assert [lv["level"] for lv in levels] == [2, 10]
    assert [lv["width"] for lv in levels] == [6, 14]  # each level's own width
    assert [lv["hop_length"] for lv in levels] == [8, 2048]
    assert vqvae_levels(bundle) == [2, 10]


# ----------------------------------------------------------------------------- codes files
def test_codes_round_trip(tmp_path):
    codes = {0: torch.randint(0, 2048, (2, 50)), 2: torch.randint(0, 2**20, (2, 4))}
    info = {"sample_rate": 8000, "hop_lengths": {"0": 4, "2": 32}, "audio_samples": 199}
    path = save_codes(tmp_path / "song.safetensors", codes, info)
    assert path == tmp_path / "song.safetensors"
    loaded, loaded_info = load_codes(path)
    assert loaded_info == info
    assert sorted(loaded) == [0, 2]
    for level, tensor in codes.items():
        assert loaded[level].dtype == torch.int64
        assert torch.equal(loaded[level], tensor)


def test_codes_suffix_is_added(tmp_path):
    path = save_codes(tmp_path / "song.codes", {0: torch.zeros(1, 3, dtype=torch.long)}, {})
    assert path == tmp_path / "song.codes.safetensors"
    assert path.is_file()


def test_codes_must_be_two_dimensional(tmp_path):
    with pytest.raises(CodesError, match=r"level 1 must be \[n_samples, tokens\], got \(5,\)"):
        save_codes(tmp_path / "c.safetensors", {1: torch.zeros(5, dtype=torch.long)}, {})
    assert not list(tmp_path.iterdir())


def test_missing_codes_file(tmp_path):
    with pytest.raises(CodesError, match="does not exist"):
        load_codes(tmp_path / "none.safetensors")


def test_non_safetensors_file_is_refused(tmp_path):
    path = tmp_path / "c.safetensors"
    path.write_bytes(b"RIFF....WAVEfmt not codes at all")
    with pytest.raises(CodesError, match="is not a safetensors codes file"):
        load_codes(path)


def test_other_safetensors_are_refused(tiny_bundle, tmp_path):
    with pytest.raises(CodesError, match="is not a jukelite codes file"):
        load_codes(tiny_bundle / "vqvae_level_0.safetensors")
    path = tmp_path / "c.safetensors"
    save_file({"level_0": torch.zeros(1, 2, dtype=torch.int32)}, str(path))  # no metadata
    with pytest.raises(CodesError, match="format None"):
        load_codes(path)


def test_unexpected_tensor_name_is_refused(tmp_path):
    path = tmp_path / "c.safetensors"
    save_file({"level_0": torch.zeros(1, 2, dtype=torch.int32), "audio": torch.zeros(3)},
              str(path), metadata={"format": CODES_FORMAT, "info": "{}"})
    with pytest.raises(CodesError, match="unexpected tensor 'audio'"):
        load_codes(path)


def test_components_written_at_once_all_land_in_the_manifest(tmp_path, tiny_level):
    """Two writers into one bundle (e.g. two trainings finishing together) hold the lock in
    turn, so neither overwrites the other's entry in jukelite.json."""
    import threading

    bundle, errors = tmp_path / "b", []
    models = [tiny_level(level) for level in (0, 1)]

    def write(model) -> None:
        try:
            for _ in range(10):
                save_vqvae_level(bundle, model)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(model,)) for model in models]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert vqvae_levels(bundle) == [0, 1]


def test_the_package_imports_without_posix_only_modules():
    """The bundle lock is portable: jukelite imports where fcntl does not exist (Windows)."""
    import subprocess
    import sys

    code = ("import sys; sys.modules.update(fcntl=None, termios=None, resource=None); "
            "import jukelite, jukelite.cli, jukelite.bundle, jukelite.train.trainer, "
            "jukelite.inference.run, jukelite.bench.sample; print('ok')")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0 and result.stdout == "ok\n", result.stderr[-2000:]
