"""The memory planner of `jukelite train RECIPE --dry-run`: exact static bytes, activations
measured on a reduced shape that predict a larger one, the plan's arithmetic and the CLI."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
import torch
import yaml

from jukelite.cli import EXIT_USAGE, main
from jukelite.prior.model import LevelPrior, PriorConfig
from jukelite.recipes import load_recipe
from jukelite.train import memory_plan as mp
from jukelite.vqvae.config import VQVAEConfig

pytestmark = pytest.mark.usefixtures("single_thread")

# Hand-countable: two dense blocks of width 8 (n_state 2), a tied head, artist/genre labels.
TINY = dict(bins=16, n_ctx=8, width=8, depth=2, heads=1, attn_order=0, blocks=2, labels=True,
            artist_bins=4, genre_bins=2, max_bow_genre_size=1, timing=False)
# One block: ln_0 16 + c_attn 8x6+6 + c_proj 2x8+8 + ln_1 16 + c_fc 8x8+8 + c_proj 8x8+8.
BLOCK = 16 + 54 + 24 + 16 + 72 + 72  # 254
ROOT = 16 * 8 + 8 * 8 + 4 * 8 + 2 * 8  # x_emb, pos_emb, artist, genre: 240
TOTAL = ROOT + 2 * BLOCK  # 748: x_out is x_emb
LINEAR = 2 * (54 + 24 + 72 + 72) + 16 * 8  # the blocks' Linears and the tied head: 572
MATRICES = ROOT + 2 * (48 + 16 + 64 + 64)  # AdamW's decay group (ndim >= 2): 624
# A recipe reads `bins` from its bundle: 2048 codes (the default) without one.
RECIPE_TOTAL = TOTAL + (2048 - 16) * 8  # 17,004


def tiny_tensors() -> mp.ModelTensors:
    with torch.device("meta"):
        return mp.ModelTensors.of(LevelPrior(PriorConfig(**TINY)))


def test_static_bytes_are_exact_under_ddp():
    tensors = tiny_tensors()
    assert tensors.numel == TOTAL
    assert tensors.units() == {"": ROOT, "transformer.blocks.0": BLOCK,
                               "transformer.blocks.1": BLOCK}
    lines = mp.static_bytes(tensors, "ddp", 8, bf16=True, ema=True)
    assert lines == {"weights": 4 * TOTAL, "gradients": 4 * TOTAL, "optimizer": 8 * TOTAL,
                     "ema": 4 * TOTAL, "buffers": 0, "ddp_buckets": 4 * TOTAL,
                     "weight_copies": 2 * LINEAR, "optimizer_step": 4 * MATRICES,
                     "ema_swap": 4 * TOTAL}
    # one process: no DDP wrapper, so no buckets; fp32: no autocast copies; no EMA
    single = mp.static_bytes(tensors, "ddp", 1, bf16=False, ema=False)
    assert single["ddp_buckets"] == single["weight_copies"] == single["ema"] == 0
    assert single["ema_swap"] == 0


def test_fsdp_shards_are_ddp_over_n_when_n_divides_every_first_dim():
    tensors = tiny_tensors()
    ddp = mp.static_bytes(tensors, "ddp", 2, bf16=True, ema=True)
    fsdp = mp.static_bytes(tensors, "fsdp", 2, bf16=True, ema=True)
    for key in ("weights", "gradients", "optimizer", "ema", "optimizer_step", "ema_swap"):
        assert fsdp[key] * 2 == ddp[key], key
    assert fsdp["buffers"] == ddp["buffers"]
    # root gathered for the step + two blocks in flight (bf16), and the larger unit's bf16
    # gradient with its fp32 reduce-scatter input
    assert fsdp["gathered"] == 2 * (ROOT + 2 * BLOCK) + (2 + 4) * BLOCK
    assert "ddp_buckets" not in fsdp and "weight_copies" not in fsdp


def test_fsdp_shards_are_padded_to_whole_rows():
    # rank 0 keeps ceil(dim0 / 4) rows: genre [2, 8] -> 1 row of 8, c_attn [6, 8] -> 2 rows
    block = 2 + 2 + 2 * 8 + 2 + 2 * 2 + 2 + 2 + 2 + 2 * 8 + 2 + 2 * 8 + 2  # 68
    root = 4 * 8 + 2 * 8 + 1 * 8 + 1 * 8
    assert tiny_tensors().per_rank(4, sharded=True) == root + 2 * block == 200
    assert mp.Param((3, 5), "", False).shard(2) == 10
    assert mp.Param((), "", False).shard(8) == 1


def test_the_plan_adds_up_and_finds_the_largest_micro_batch():
    tensors = mp.ModelTensors((mp.Param((1024, 1024), "", True),), buffer_bytes=100)
    acts = {"ddp": mp.Activations(full=3 << 20, checkpointed=1 << 20)}
    profile = mp.Profile("prior", tensors, acts, batch_size=2, bf16=True, ema=True,
                         parallel="ddp", checkpointing=True)
    gib, n = 1 << 30, 1 << 20
    plan = mp.plan(profile, world_size=4, gpu_memory_gib=2.1)
    ddp = plan.modes["ddp"]
    held = (4 + 4 + 8 + 4) * n + 100 + 4 * n + 2 * n  # + buckets + bf16 copies
    assert ddp.activations == {"checkpointed": 2 << 20, "full": 6 << 20}
    assert ddp.peaks == {"checkpointed": held + (2 << 20) + 2 * gib,
                         "full": held + (6 << 20) + 2 * gib}
    room = int(2.1 * gib) - 2 * gib - held
    assert ddp.max_batch == {"checkpointed": room // (1 << 20), "full": room // (3 << 20)}
    assert ddp.fits == {"checkpointed": True, "full": True}
    tight = mp.plan(profile, world_size=4, gpu_memory_gib=2.0)
    assert tight.modes["ddp"].fits == {"checkpointed": False, "full": False}
    assert tight.modes["ddp"].max_batch == {"checkpointed": 0, "full": 0}
    with pytest.raises(ValueError, match="world size must be >= 1"):
        mp.plan(profile, world_size=0)


def test_bilinear_extrapolation_is_exact_on_a_bilinear_function():
    def f(t: int, w: int) -> float:
        return 3 + 5 * t + 7 * w + 11 * t * w

    points = {(t, w): f(t, w) for t in (2, 4) for w in (3, 9)}
    assert mp._bilinear(points, (100, 50)) == pytest.approx(f(100, 50))
    assert mp._bilinear({(2, 1): 5.0, (4, 1): 9.0}, (10, 1)) == pytest.approx(21.0)


# ------------------------------------------------------------------------ activations
MEDIUM = dict(bins=64, n_ctx=256, width=256, depth=6, heads=2, attn_order=2, blocks=16,
              labels=True, artist_bins=5, genre_bins=4, max_bow_genre_size=2, timing=True,
              min_duration=1, max_duration=60, sample_rate=8000)
SHAPES = {
    "top prior": {},
    "lyrics encoder": dict(lyrics="encoder", n_tokens=32, lyrics_width=64, lyrics_depth=3,
                           lyrics_heads=2, lyrics_blocks=4, attn_order=6),
    "upsampler": dict(level=0, upsampler=True, cond_width=32, cond_depth=2, timing=False),
    "lyric prefix": dict(lyrics="single", n_tokens=32, attn_order=12, depth=17, blocks=8),
}


def measured_directly(config: PriorConfig, bf16: bool) -> dict[str, tuple[int, int]]:
    """Saved bytes of the whole model at its real shape, without and with checkpointing
    (what checkpointing holds, plus one block's recomputation)."""
    model = mp.reduced_prior(config, one_block_per_type=False)
    kinds = mp.prior_blocks(model)[1]
    result = {}
    for mode in mp.MODES:
        fsdp = mode == "fsdp" and bf16
        if fsdp:
            model = model.to(torch.bfloat16)
        plain = mp.measure_prior(model, config, bf16, fsdp)
        recompute = max(mp.layer_terms(plain, kinds)[f"recompute:{k}"] for k in kinds)
        for transformer in mp._schedules(model).values():
            transformer.checkpoint_activations = True
        held = mp.measure_prior(model, config, bf16, fsdp)
        for transformer in mp._schedules(model).values():
            transformer.checkpoint_activations = False
        result[mode] = (sum(n for n, _ in plain.saved.values()),
                        sum(n for n, _ in held.saved.values()) + recompute)
    return result


@pytest.mark.parametrize(("shape", "bf16"), [*[(name, True) for name in SHAPES],
                                            ("top prior", False)])
def test_a_small_shape_predicts_the_activations_of_a_larger_one(shape, bf16):
    config = PriorConfig(**{**MEDIUM, **SHAPES[shape]})
    with torch.device("meta"):
        layers = mp.prior_layers(LevelPrior(config))
    predicted = mp.prior_activations(config, layers, bf16, contexts=(32, 64), widths=(32, 64))
    direct = measured_directly(config, bf16)
    for mode in mp.MODES:
        full, checkpointed = direct[mode]
        assert predicted[mode].full == pytest.approx(full, rel=0.02), mode
        assert predicted[mode].checkpointed == pytest.approx(checkpointed, rel=0.02), mode
        assert checkpointed < full
    if bf16:  # FSDP keeps bf16 block inputs where DDP's residual stream is fp32
        assert predicted["fsdp"].checkpointed < predicted["ddp"].checkpointed


def test_the_reduced_shapes_keep_heads_whole_and_scale_other_widths_alike():
    config = PriorConfig(**{**MEDIUM, "width": 4800, "heads": 8, **SHAPES["lyrics encoder"],
                            "lyrics_width": 1280, "lyrics_heads": 4})
    shapes = mp.reduced_widths(config)
    assert shapes == [{"width": 480, "lyrics_width": 128}, {"width": 960, "lyrics_width": 256}]
    for sizes in shapes:
        small = mp.reduced_config(config, 64, sizes)  # validates the config
        assert small.n_state % small.heads == 0 and small.seq_len % small.blocks == 0
    assert mp.reduced_widths(PriorConfig(**{**MEDIUM, "width": 512})) == [{"width": 128},
                                                                       {"width": 256}]
    assert mp.reduced_widths(PriorConfig(**{**MEDIUM, "width": 64})) == [{"width": 64}]
    assert mp.reduced_contexts(PriorConfig(**MEDIUM), (30, 60)) == [30, 60]
    assert mp.reduced_contexts(PriorConfig(**{**MEDIUM, **SHAPES["upsampler"]}),
                               (30, 60)) == [32, 60]


def test_vqvae_activations_grow_linearly_with_the_window():
    config = VQVAEConfig(sample_rate=8000, levels=2, downs_t=[2, 1], strides_t=[2, 2],
                         width=[8, 8], depth=[1, 1], codebook_size=16, code_dim=8, linf_k=64,
                         stft_n_fft=[64], stft_hop=[16], stft_window=[64])
    assert mp.vqvae_lengths(config, [0, 1], 4096) == [128, 256]
    predicted = mp.vqvae_activations(config, [0, 1], 1, 4096, bf16=True).full
    from jukelite.vqvae.model import VQVAE

    audio = torch.randn(1, 1, 4096)
    direct = mp.measure(VQVAE(config).train(), [], lambda m: m(audio)[1], True,
                        False).owned(None)
    assert predicted == pytest.approx(direct, rel=0.02)


# ------------------------------------------------------------------------ recipes and CLI
def write_recipe(tmp_path: Path, **train) -> Path:
    recipe = {
        "kind": "prior", "level": 0,
        "data": {"manifest": str(tmp_path / "m.jsonl")},
        "model": {**{k: v for k, v in TINY.items() if k != "bins"},
                  "checkpoint_activations": True},
        "train": {"batch_size": 2, "ema_decay": 0.99, **train},
        "output": {"dir": str(tmp_path / "run"), "bundle": str(tmp_path / "none")},
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def test_a_recipe_plan_has_the_exact_static_bytes(tmp_path):
    profile = mp.profile_recipe(load_recipe(write_recipe(tmp_path), []))
    plan = mp.plan(profile, world_size=2)
    assert plan.trainable == RECIPE_TOTAL and plan.batch_size == 2 and plan.bf16
    assert plan.modes["ddp"].lines["weights"] == 4 * RECIPE_TOTAL
    assert plan.modes["fsdp"].lines["optimizer"] == 4 * RECIPE_TOTAL  # 8 bytes over 2 ranks
    assert plan.modes["ddp"].activations["full"] == 2 * profile.activations["ddp"].full
    fp32 = mp.profile_recipe(load_recipe(write_recipe(tmp_path, precision="fp32"), []))
    assert fp32.activations["ddp"] == fp32.activations["fsdp"]
    assert fp32.activations["ddp"].full > profile.activations["ddp"].full  # no bf16


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_dry_run_prints_the_plan_and_the_verdicts(capsys, tmp_path):
    recipe = write_recipe(tmp_path)
    code, out, err = run(capsys, "train", recipe, "--dry-run", "--world-size", "4",
                         "--gpu-memory", "40")
    assert code == 0, err
    assert f"trainable parameters: {RECIPE_TOTAL:,}" in out
    header = re.search(r"^memory per device, KiB: 4 devices of 40 GiB, micro-batch 2", out,
                       re.M)
    assert header, out
    assert re.search(r"^ +ddp +fsdp$", out, re.M)
    weights = re.search(r"^  weights \(fp32 masters\) +([\d.]+) +([\d.]+)$", out, re.M)
    # the fsdp shards of 4 ranks: x_emb [2048, 8] -> 512 rows, the rest as counted above
    assert [float(v) for v in weights.groups()] == [round(4 * RECIPE_TOTAL / 1024, 2),
                                                    round(4 * (200 - 32 + 512 * 8) / 1024, 2)]
    verdicts = re.findall(r"^(ddp|fsdp), (checkpointed|not checkpointed): [\d.]+ GiB, fits",
                          out, re.M)
    assert len(verdicts) == 4
    assert "ddp, checkpointed: " in out and out.count("<- the recipe's") == 1
    assert re.search(r"^ddp, checkpointed: .*<- the recipe's$", out, re.M)
    assert "note: activations: measured on the CPU" in out
    # 1 GiB cannot hold the 2 GiB runtime reserve
    code, out, _ = run(capsys, "train", recipe, "--dry-run", "--gpu-memory", "1")
    assert code == 0
    assert "memory per device, KiB: 1 device of 1 GiB" in out
    assert out.count("does not fit in 1 GiB") == 4


@pytest.mark.parametrize(("argv", "message"), [
    (["--dry-run", "--world-size", "0"], "--world-size must be >= 1, got 0"),
    (["--dry-run", "--gpu-memory", "-5"], "--gpu-memory must be a number of GiB > 0, got -5"),
    (["--dry-run", "--gpu-memory", "nan"], "--gpu-memory must be a number of GiB > 0, got nan"),
    (["--world-size", "8"], "--world-size: only with --dry-run (a memory plan)"),
])
def test_bad_plan_options_are_usage_errors(capsys, tmp_path, argv, message):
    code, out, err = run(capsys, "train", write_recipe(tmp_path), *argv)
    assert code == EXIT_USAGE
    assert out == ""
    assert err.strip() == f"error: {message}"


def test_a_world_size_that_is_not_a_number_is_refused_by_the_parser(capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", str(write_recipe(tmp_path)), "--dry-run", "--world-size", "many"])
    assert exit_info.value.code == 2
    assert "argument --world-size: invalid int value: 'many'" in capsys.readouterr().err


def test_the_markdown_table_has_a_row_per_recipe_and_world_size(capsys, tmp_path):
    recipe = write_recipe(tmp_path, parallel="fsdp")
    assert mp.main([str(recipe), "--world-sizes", "2,8", "--markdown"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[:2] == mp.MARKDOWN_HEADER
    assert [line.split(" | ")[:3] for line in lines[2:]] == [["| `tiny`", "17,004", "2"],
                                                              ["| `tiny`", "17,004", "8"]]
    assert all(line.count("✓") == 4 for line in lines[2:])


def test_dataclass_plan_is_serialisable():
    profile = mp.Profile("prior", tiny_tensors(), {"ddp": mp.Activations(10, 5)}, 1, True,
                         False, "ddp", True)
    as_dict = mp.plan(profile).to_dict()
    assert as_dict["modes"]["ddp"]["per_sample"] == {"checkpointed": 5, "full": 10}
    assert dataclasses.is_dataclass(mp.plan(profile))
