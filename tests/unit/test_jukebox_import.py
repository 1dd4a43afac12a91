"""The Jukebox importer without Jukebox's code: released shapes on the meta device, round trips
of hand-built checkpoints at tiny sizes, and every error a user can run into."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from jukelite.bundle import Bundle
from jukelite.convert.checkpoint import CheckpointError, read_checkpoint
from jukelite.convert.jukebox import JukeboxImportError, import_jukebox
from jukelite.convert.jukebox_configs import prior_config, vqvae_config
from jukelite.convert.jukebox_export import (
    prior_to_jukebox,
    save_jukebox_checkpoint,
    vqvae_to_jukebox,
)
from jukelite.convert.jukebox_hparams import HparamsError, resolve_hparams
from jukelite.convert.jukebox_keys import PRIOR_RULES, MappingError, map_keys
from jukelite.prior.model import LevelPrior
from jukelite.vqvae.model import LevelVQVAE, count_parameters

COMPONENTS = ["vqvae", "prior_level_0", "prior_level_1", "prior_level_2"]

# Entry and parameter counts of the released checkpoints (reference sheet, sections 3.2, 8).
RELEASED = {
    "upsampler": (1006, 981_298_176),
    "prior_5b": (872, 5_060_452_800),
    "prior_5b_lyrics": (1194, 5_640_506_800),
    "prior_1b_lyrics": (872, 942_643_200),
}

TINY_VQVAE = {"width": 4, "depth": 1, "l_bins": 32, "emb_width": 8}
TINY_UPSAMPLER = {"prior_width": 16, "prior_depth": 3, "n_ctx": 64, "blocks": 4,
                  "cond_width": 8, "cond_depth": 2, "y_bins": [4, 5]}
TINY_TOP = {  # 1b_lyrics structure: attn_order 12 needs 48 layers for its prime/dense layers
    "1b_lyrics": {"prior_width": 16, "prior_depth": 48, "n_ctx": 64, "blocks": 4,
                  "n_tokens": 8, "y_bins": [3, 4], "heads": 2, "min_duration": 1.0},
    "5b_lyrics": {"prior_width": 16, "prior_depth": 79, "n_ctx": 64, "blocks": 4,
                  "n_tokens": 8, "y_bins": [4, 5], "heads": 2, "min_duration": 1.0,
                  "prime_width": 8, "prime_depth": 2, "prime_blocks": 2, "prime_heads": 1,
                  "alignment_layer": 78, "alignment_head": 1},
    "5b": {"prior_width": 16, "prior_depth": 3, "n_ctx": 64, "blocks": 4, "y_bins": [4, 5],
           "heads": 2, "min_duration": 1.0},
}


def write_ids(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "v2_artist_ids.txt").write_text(
        "unknown;0\nvarious;0\n;0\nalan_jackson;1\nmira_vale;3\n")
    (folder / "v2_genre_ids.txt").write_text("unknown;0\ncountry;1\nrock;2\nfolk;3\n")
    (folder / "v3_artist_ids.txt").write_text("unknown;0\nalan jackson;1\nmira vale;3\n")
    (folder / "v3_genre_ids.txt").write_text("unknown;0\ncountry;1\nfolk rock;2\n")
    return folder


def tiny_hps(model_set: str) -> dict[str, dict]:
    return {"vqvae": dict(TINY_VQVAE), "prior_level_0": dict(TINY_UPSAMPLER),
            "prior_level_1": dict(TINY_UPSAMPLER), "prior_level_2": dict(TINY_TOP[model_set])}


def _randomise(module: torch.nn.Module, seed: int) -> None:
    """Every parameter and buffer random: zeros would hide a wrong mapping."""
    generator = torch.Generator().manual_seed(seed)
    for tensor in [*module.parameters(), *module.buffers()]:
        if tensor.is_floating_point():
            tensor.data.copy_(torch.randn(tensor.shape, generator=generator) * 0.1)


def make_checkpoints(folder: Path, model_set: str, hps: dict[str, dict]):
    """Jukebox-format checkpoints of random tiny models; returns (paths, jukelite originals)."""
    resolved, _ = resolve_hparams(COMPONENTS, model_set, hps)
    vq = vqvae_config(resolved["vqvae"])
    vqvae = {level: LevelVQVAE(vq, level) for level in range(vq.levels)}
    for level, model in vqvae.items():
        _randomise(model, level)
    save_jukebox_checkpoint(folder / "vqvae.pth.tar",
                            vqvae_to_jukebox({lv: m.state_dict() for lv, m in vqvae.items()}))
    priors = {}
    for level in range(3):
        component = f"prior_level_{level}"
        config = prior_config(component, resolved[component], vq)
        prior = LevelPrior(config)
        _randomise(prior, 10 + level)
        state = prior_to_jukebox(prior.state_dict(), tied=not config.merged_decoder)
        if resolved[component]["fp16_params"]:  # Jukebox stores Conv1D weights in float16
            state = {k: v.half() if k.endswith(".w") else v for k, v in state.items()}
            for name, param in prior.named_parameters():  # what the file then holds
                if name.endswith(".weight") and (".attn." in name or ".mlp." in name
                                                 or name == "lyrics_encoder.proj.weight"):
                    param.data.copy_(param.data.half().float())
        save_jukebox_checkpoint(folder / f"prior_level_{level}.pth.tar", state)
        priors[level] = prior
    paths = {"vqvae": folder / "vqvae.pth.tar",
             "priors": {lv: folder / f"prior_level_{lv}.pth.tar" for lv in range(3)}}
    return paths, vqvae, priors


# ---------------------------------------------------------------------- released shapes
@pytest.mark.parametrize("model_set", ["5b", "5b_lyrics", "1b_lyrics"])
def test_released_shapes_match_the_reference_key_by_key(model_set):
    """At full size, on the meta device: the models the presets describe have exactly the
    released checkpoints' entries and parameter counts, and every key maps."""
    resolved, _ = resolve_hparams(COMPONENTS, model_set)
    vq = vqvae_config(resolved["vqvae"])
    with torch.device("meta"):
        levels = {level: LevelVQVAE(vq, level) for level in range(3)}
        vq_state = vqvae_to_jukebox({lv: m.state_dict() for lv, m in levels.items()})
        assert len(vq_state) == 669
        assert sum(count_parameters(m) for m in levels.values()) == 1_485_763
        for level in range(3):
            config = prior_config(f"prior_level_{level}", resolved[f"prior_level_{level}"], vq)
            prior = LevelPrior(config)
            state = prior_to_jukebox(prior.state_dict(), tied=not config.merged_decoder)
            name = "upsampler" if level < 2 else f"prior_{model_set}"
            entries, parameters = RELEASED[name]
            assert len(state) == entries
            assert count_parameters(prior) == parameters
            expected = {k: tuple(v.shape) for k, v in prior.state_dict().items()}
            if not config.merged_decoder:
                expected.pop("x_out.weight")
            key_map = map_keys({k: tuple(v.shape) for k, v in state.items()}, expected,
                               PRIOR_RULES, name, tied_head=not config.merged_decoder)
            assert len(key_map.names) == len(expected)


def test_released_1b_lyrics_quirks():
    resolved, _ = resolve_hparams(COMPONENTS, "1b_lyrics")
    vq = vqvae_config(resolved["vqvae"])
    top = prior_config("prior_level_2", resolved["prior_level_2"], vq)
    assert (top.vocab, top.seq_len, top.lyrics, top.n_vocab) == (2127, 6528, "single", 79)
    assert not top.merged_decoder and top.t_bins == 64 and top.min_duration == 17.84
    with torch.device("meta"):
        prime = [b.attn for b in LevelPrior(top).transformer.blocks if b.attn.attn_type == 7]
    assert len(prime) == 3 and all(a.prime_keys == 448 for a in prime)
    up1 = prior_config("prior_level_1", resolved["prior_level_1"], vq)
    up0 = prior_config("prior_level_0", resolved["prior_level_0"], vq)
    assert (up0.cond_res_scale, up1.cond_res_scale) == (1.0, 0.25)
    assert up0.cond_down_t == 2 and up0.upsampler and not up0.timing


# ---------------------------------------------------------------------- round trips
@pytest.mark.parametrize("model_set", ["1b_lyrics", "5b_lyrics", "5b"])
def test_round_trip_gives_the_same_weights_and_logits(tmp_path, model_set):
    hps = tiny_hps(model_set)
    paths, vqvae, priors = make_checkpoints(tmp_path, model_set, hps)
    bundle = import_jukebox(tmp_path / "bundle", vqvae=paths["vqvae"], priors=paths["priors"],
                            preset=model_set, hps=hps, ids=write_ids(tmp_path / "ids"))
    loaded = Bundle.open(bundle)
    for level, original in vqvae.items():
        state = loaded.vqvae(level).state_dict()
        for key, value in original.state_dict().items():
            if key.startswith("quantizer.") and key != "quantizer.codebook" or \
                    key.startswith("norm_"):
                continue  # jukelite-only statistics, set by the importer
            assert torch.equal(state[key], value), key
        audio = torch.randn(1, 1, 1024)
        assert torch.equal(loaded.vqvae(level).encode(audio), original.eval().encode(audio))
    for level, original in priors.items():
        imported = loaded.prior(level)
        for key, value in original.state_dict().items():
            assert torch.equal(imported.state_dict()[key], value), key
        config = original.config
        codes = torch.randint(0, config.bins, (2, config.n_ctx))
        y = torch.tensor([[config.sample_rate * 30, 0, 100, 1, 1, *[-1] *
                           (config.max_bow_genre_size - 1)]] * 2)
        upper = torch.randint(0, config.bins, (2, config.n_ctx // 4)) if config.upsampler \
            else None
        lyrics = torch.randint(1, config.n_vocab, (2, config.n_tokens)) \
            if config.lyrics != "none" else None
        with torch.no_grad():
            want = original.eval()(codes, y, upper, lyrics).logits
            got = imported(codes, y, upper, lyrics).logits
        assert torch.equal(got, want)
    manifest = json.loads((bundle / "jukelite.json").read_text())
    provenance = manifest["priors"]["2"]["provenance"]
    assert provenance["source"]["sha256"] and provenance["source"]["legacy_format"]
    assert "Noncommercial" in provenance["license"]
    assert provenance["preset"] == model_set
    version = "v3" if model_set == "1b_lyrics" else "v2"
    labels = manifest["priors"]["2"]["vocabularies"]["labels"]
    assert labels["normalization"] == f"jukebox_{version}"
    assert manifest["priors"]["0"]["vocabularies"]["labels"]["normalization"] == "jukebox_v2"
    assert not (tmp_path / ".bundle.importing").exists()


def test_float16_halves_the_bundle_and_loads_as_float32(tmp_path):
    hps = tiny_hps("5b")
    paths, _, priors = make_checkpoints(tmp_path, "5b", hps)
    ids = write_ids(tmp_path / "ids")
    full = import_jukebox(tmp_path / "f32", paths["vqvae"], paths["priors"], "5b", hps, ids)
    half = import_jukebox(tmp_path / "f16", paths["vqvae"], paths["priors"], "5b", hps, ids,
                          dtype="float16")

    def size(bundle: Path) -> int:
        return sum(p.stat().st_size for p in bundle.glob("prior_*.safetensors"))

    assert size(half) < 0.6 * size(full)  # tensor data halves; the key header does not
    prior = Bundle.open(half).prior(2)
    assert prior.embedding.x_emb.weight.dtype == torch.float32
    want = priors[2].embedding.x_emb.weight
    assert torch.allclose(prior.embedding.x_emb.weight, want, atol=1e-3)


def test_priors_join_an_existing_bundle_with_the_same_vqvae(tmp_path):
    hps = tiny_hps("5b")
    paths, _, _ = make_checkpoints(tmp_path, "5b", hps)
    ids = write_ids(tmp_path / "ids")
    bundle = import_jukebox(tmp_path / "b", paths["vqvae"], {2: paths["priors"][2]}, "5b", hps,
                            ids)
    import_jukebox(bundle, None, {0: paths["priors"][0]}, "5b", hps, ids)
    assert sorted(json.loads((bundle / "jukelite.json").read_text())["priors"]) == ["0", "2"]
    other = {**hps, "vqvae": {**hps["vqvae"], "l_bins": 64}}
    with pytest.raises(ValueError, match="differs from the VQ-VAE"):
        import_jukebox(bundle, None, {1: paths["priors"][1]}, "5b", other, ids)


# ---------------------------------------------------------------------- errors
def test_wrong_hparams_name_the_size_and_the_evidence(tmp_path):
    hps = tiny_hps("5b")
    paths, _, _ = make_checkpoints(tmp_path, "5b", hps)
    wrong = {**hps, "prior_level_2": {**hps["prior_level_2"], "prior_width": 32,
                                      "prior_depth": 4}}
    with pytest.raises(MappingError) as info:
        import_jukebox(tmp_path / "b", paths["vqvae"], {2: paths["priors"][2]}, "5b", wrong,
                       write_ids(tmp_path / "ids"))
    message = str(info.value)
    assert "prior_width: the hparams say 32, the checkpoint has 16 (prior.x_emb.weight)" in message
    assert "prior_depth: the hparams say 4, the checkpoint has 3" in message
    assert not (tmp_path / "b").exists() and not (tmp_path / ".b.importing").exists()


def test_every_unmapped_missing_and_misshapen_key_is_listed():
    expected = {"embedding.x_emb.weight": (8, 4), "embedding.pos_emb": (6, 4),
                "transformer.blocks.0.attn.c_attn.weight": (12, 4),
                "transformer.blocks.0.attn.c_attn.bias": (12,)}
    source = {"prior.x_emb.weight": (8, 4),
              "prior.transformer._attn_mods.0.attn.c_attn.w": (12, 4),  # not transposed
              "prior.transformer._attn_mods.0.attn.c_attn.b": (12,),
              "prior.some_new_thing": (3,), "y_emb.artist_emb.emb.weight": (5, 4)}
    with pytest.raises(MappingError) as info:
        map_keys(source, expected, PRIOR_RULES, "ckpt")
    message = str(info.value)
    assert "prior.transformer._attn_mods.0.attn.c_attn.w: expected (4, 12), found (12, 4)" \
        in message
    assert "prior.some_new_thing" in message and "y_emb.artist_emb.emb.weight" in message
    assert "embedding.pos_emb" in message  # missing


def test_labelled_priors_need_the_id_files(tmp_path):
    hps = tiny_hps("5b")
    paths, _, _ = make_checkpoints(tmp_path, "5b", hps)
    with pytest.raises(JukeboxImportError, match="jukebox/data/ids"):
        import_jukebox(tmp_path / "b", paths["vqvae"], {2: paths["priors"][2]}, "5b", hps)


def test_bad_presets_and_hparams():
    with pytest.raises(HparamsError, match="unknown preset"):
        resolve_hparams(COMPONENTS, "6b")
    with pytest.raises(HparamsError, match="unknown key"):
        resolve_hparams(COMPONENTS, "5b", {"prior_level_2": {"priorwidth": 3}})
    with pytest.raises(HparamsError, match="for level 0"):
        resolve_hparams(["prior_level_2"], "upsampler_level_0")
    with pytest.raises(HparamsError, match="--preset NAME or --hps"):
        resolve_hparams(COMPONENTS)
    resolved, _ = resolve_hparams(["vqvae", "prior_level_1"], "small_vqvae,small_upsampler")
    with pytest.raises(HparamsError, match="labels: false"):  # trained with --labels=False
        prior_config("prior_level_1", resolved["prior_level_1"], vqvae_config(resolved["vqvae"]))
    resolved, _ = resolve_hparams(["vqvae", "prior_level_1"], "small_vqvae,small_upsampler",
                                  {"prior_level_1": {"labels": False}})
    config = prior_config("prior_level_1", resolved["prior_level_1"],
                          vqvae_config(resolved["vqvae"]))
    assert config.level == 1 and config.n_ctx == 8192 and config.sample_rate == 22050
    with pytest.raises(HparamsError, match="spread"):
        prior_config("prior_level_1", {**resolved["prior_level_1"], "spread": 4},
                     vqvae_config(resolved["vqvae"]))


def test_hparams_files_in_yaml_and_json(tmp_path):
    from jukelite.convert.jukebox_hparams import read_hparams_file

    (tmp_path / "h.yaml").write_text("prior_level_2:\n  prior_width: 64\n  y_bins: [3, 4]\n")
    (tmp_path / "h.json").write_text('{"prior_level_2": {"prior_width": 64, "y_bins": [3, 4]}}')
    for name in ("h.yaml", "h.json"):
        assert read_hparams_file(tmp_path / name) == {"prior_level_2": {"prior_width": 64,
                                                                         "y_bins": [3, 4]}}
    (tmp_path / "bad.yaml").write_text("- just\n- a list\n")
    with pytest.raises(HparamsError, match="component"):
        read_hparams_file(tmp_path / "bad.yaml")
    with pytest.raises(HparamsError, match="no such hparams file"):
        read_hparams_file(tmp_path / "missing.yaml")


def test_unsafe_pickles_are_refused(tmp_path):
    class Payload:
        def __reduce__(self):
            return (os.system, ("echo should-not-run",))

    path = tmp_path / "evil.pth.tar"
    torch.save({"model": {"a": torch.ones(1)}, "x": Payload()}, path)
    with pytest.raises(CheckpointError, match="refused to read.*system"):
        read_checkpoint(path)
    (tmp_path / "junk.pth.tar").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint"):
        read_checkpoint(tmp_path / "junk.pth.tar")


def test_checkpoints_read_safely_in_both_formats(tmp_path):
    import numpy as np

    for legacy in (True, False):
        path = tmp_path / f"c{legacy}.pth.tar"
        torch.save({"hps": {"sr": 44100, "sample_length": np.int64(8)},
                    "model": {"module.a": torch.ones(2, dtype=torch.float16)}, "opt": None,
                    "step": 5}, path, _use_new_zipfile_serialization=not legacy)
        checkpoint = read_checkpoint(path)
        assert list(checkpoint.model) == ["a"] and checkpoint.step == 5
        assert checkpoint.hps["sample_length"] == 8 and checkpoint.legacy_format == legacy


def test_cli_import_then_info(tmp_path):
    hps = tiny_hps("5b")
    paths, _, _ = make_checkpoints(tmp_path, "5b", hps)
    hps_file = tmp_path / "hps.json"
    hps_file.write_text(json.dumps(hps))
    command = [sys.executable, "-m", "jukelite.cli", "import", "jukebox", "--vqvae",
               str(paths["vqvae"]), "--prior", f"2={paths['priors'][2]}", "--preset", "5b",
               "--hps", str(hps_file), "--ids", str(write_ids(tmp_path / "ids")), "-o",
               str(tmp_path / "b"), "--quiet"]
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["priors"] == [2]
    info = subprocess.run([sys.executable, "-m", "jukelite.cli", "info", str(tmp_path / "b")],
                          capture_output=True, text=True)
    assert "prior level 2: 1" in info.stdout and "imported from jukebox" in info.stdout
    assert "license: OpenAI Jukebox weights: Noncommercial" in info.stdout
    again = subprocess.run(command, capture_output=True, text=True)
    assert again.returncode == 2 and "already exists" in again.stderr
    assert "Traceback" not in again.stderr
    bad = subprocess.run(command[:6] + ["--prior", "two=x", "--preset", "5b", "-o",
                                        str(tmp_path / "c")], capture_output=True, text=True)
    assert bad.returncode == 2 and "LEVEL=FILE" in bad.stderr


def test_an_imported_top_prior_alone_samples_the_top_level(tmp_path):
    """VQ-VAE + top prior are enough for `--levels top`; the song length conditioning the
    timing can exceed the sampled length (Jukebox's total_sample_length_in_seconds)."""
    import jukelite
    from jukelite.cli import main

    hps = tiny_hps("1b_lyrics")
    paths, _, _ = make_checkpoints(tmp_path, "1b_lyrics", hps)
    bundle = import_jukebox(tmp_path / "b", paths["vqvae"], {2: paths["priors"][2]},
                            "1b_lyrics", hps, write_ids(tmp_path / "ids"))
    jb = jukelite.load(bundle)
    song = dict(artist="Alan Jackson", genre="country", lyrics="Hello, wörld", seconds=0.1,
                levels="top", seed=3)
    with pytest.raises(ValueError, match="timing range"):
        jb.generate(**song)  # a 0.1 s song is shorter than the prior's 1 s minimum
    short = jb.generate(**song, total_seconds=2.0)
    long = jb.generate(**song, total_seconds=40.0)
    assert short.codes[2].shape == long.codes[2].shape == (1, 35)
    assert not torch.equal(short.codes[2], long.codes[2])  # the timing signal differs
    assert long.record["request"]["song_samples"] == 13782 * 128  # whole top-level codes
    with pytest.raises(ValueError, match="no prior for level"):
        jb.generate(**{**song, "levels": "all"})
    with pytest.raises(ValueError, match="at least the sampled length"):
        jb.generate(**song, total_seconds=0.01)
    with pytest.raises(ValueError, match="did you mean 'alan jackson'"):
        jb.generate(**{**song, "artist": "Alan Jacksen"}, total_seconds=2.0)
    code = main(["sample", "--model", str(bundle), "--artist", "Alan Jackson", "--genre",
                 "country", "--seconds", "0.1", "--total-seconds", "700", "--levels", "top",
                 "-o", str(tmp_path / "song"), "--quiet"])
    assert code == 2  # 700 s is outside the prior's timing range [1, 600)


def test_streaming_writer_refuses_a_tensor_unlike_its_header(tmp_path):
    from safetensors.torch import load_file

    from jukelite.convert.stream_safetensors import write_streaming

    specs = [("a", torch.float16, (2, 3)), ("b", torch.bool, ()), ("c", torch.bfloat16, (4,))]
    made = {"a": torch.randn(2, 3).half(), "b": torch.tensor(True),
            "c": torch.randn(4).bfloat16()}
    write_streaming(tmp_path / "x.safetensors", specs, made.__getitem__, {"k": "v"})
    loaded = load_file(tmp_path / "x.safetensors")
    assert all(torch.equal(loaded[k], v) for k, v in made.items())
    with pytest.raises(ValueError, match="declared"):
        write_streaming(tmp_path / "y.safetensors", specs, lambda name: torch.zeros(1))


def test_import_benchmark_runs_at_tiny_shapes(tmp_path):
    """`jukelite bench jukebox-import` end to end, with an hparams file that shrinks 1b_lyrics
    (the real run writes a 3.8 GB checkpoint)."""
    from jukelite.cli import main

    hps = tmp_path / "tiny.yaml"
    hps.write_text(json.dumps({"vqvae": TINY_VQVAE, "prior_level_2": TINY_TOP["1b_lyrics"]}))
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        code = main(["bench", "jukebox-import", "--hps", str(hps), "--workdir",
                     str(tmp_path / "work"), "--sample-seconds", "0.1", "--total-seconds", "3",
                     "--import-dtypes", "float32,float16"])
    assert code == 0
    result = json.loads(printed.getvalue())
    resolved, _ = resolve_hparams(["vqvae", "prior_level_2"], "1b_lyrics", tiny_hps("1b_lyrics"))
    with torch.device("meta"):
        expected = count_parameters(LevelPrior(prior_config(
            "prior_level_2", resolved["prior_level_2"], vqvae_config(resolved["vqvae"]))))
    assert result["prior_parameters"] == expected
    imports = result["imports"]
    assert imports["float16"]["bundle_bytes"] < imports["float32"]["bundle_bytes"]
    assert all(0 < r["peak_rss_bytes"] and r["peak_rss_over_checkpoint"] > 0
               for r in imports.values())
    assert result["sample"]["tokens"] == 35 and result["sample"]["tokens_per_second"] > 0
