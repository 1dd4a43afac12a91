"""Training building blocks: LR schedule, weight EMA, checkpoints and RNG state."""

import math
import random

import numpy as np
import pytest
import torch
from torch import nn

from jukelite.train.checkpoint import (
    CHECKPOINT_FORMAT,
    capture_rng_state,
    checkpoint_path,
    list_checkpoints,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from jukelite.train.ema import WeightEMA
from jukelite.train.schedule import build_scheduler, lr_multiplier


# ----------------------------------------------------------------------------- schedule
def test_warmup_is_linear_from_one_step():
    assert [lr_multiplier(s, 100, 4, "constant") for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_multiplier(4, 100, 4, "constant") == 1.0


@pytest.mark.parametrize("schedule", ["constant", "linear", "cosine"])
def test_warmup_is_the_same_for_every_schedule(schedule):
    assert lr_multiplier(0, 10, 5, schedule) == pytest.approx(0.2)
    assert lr_multiplier(2, 10, 5, schedule) == pytest.approx(0.6)
    assert lr_multiplier(5, 10, 5, schedule) == pytest.approx(1.0)  # first step after warm-up


def test_constant_stays_at_one():
    assert all(lr_multiplier(s, 10, 2, "constant") == 1.0 for s in range(2, 50))


def test_linear_decays_to_zero():
    values = [lr_multiplier(s, 10, 2, "linear") for s in range(2, 13)]
    assert values == pytest.approx([1.0, 0.875, 0.75, 0.625, 0.5, 0.375, 0.25, 0.125, 0, 0, 0])


def test_cosine_decays_to_zero():
    total, warmup = 10, 2
    for step in range(warmup, 14):
        progress = min(1.0, (step - warmup) / (total - warmup))
        expected = 0.5 * (1 + math.cos(math.pi * progress))
        assert lr_multiplier(step, total, warmup, "cosine") == pytest.approx(expected)
    assert lr_multiplier(6, total, warmup, "cosine") == pytest.approx(0.5)  # half-way
    assert lr_multiplier(total, total, warmup, "cosine") == pytest.approx(0.0)


def test_no_warmup_starts_at_full_rate():
    assert lr_multiplier(0, 10, 0, "cosine") == 1.0
    assert lr_multiplier(0, 10, 0, "linear") == 1.0
    assert lr_multiplier(5, 10, 0, "linear") == pytest.approx(0.5)


def test_warmup_not_shorter_than_training_does_not_divide_by_zero():
    assert lr_multiplier(10, 10, 10, "linear") == 1.0
    assert lr_multiplier(11, 10, 10, "cosine") == pytest.approx(0.0)


def test_unknown_schedule():
    with pytest.raises(ValueError, match="unknown schedule 'exp'"):
        lr_multiplier(50, 100, 10, "exp")
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    with pytest.raises(ValueError, match="unknown schedule"):
        build_scheduler(optimizer, 100, 0, "exp")  # refused before any step, even in warm-up


def test_build_scheduler_applies_the_multiplier():
    param = nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=2.0)
    scheduler = build_scheduler(optimizer, total_steps=6, warmup=2, schedule="linear")
    seen = []
    for _ in range(7):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    expected = [2.0 * lr_multiplier(s, 6, 2, "linear") for s in range(7)]
    assert seen == pytest.approx(expected)
    assert seen[:3] == pytest.approx([1.0, 2.0, 2.0])


# ----------------------------------------------------------------------------- EMA
def make_model() -> nn.Module:
    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    with torch.no_grad():
        for index, param in enumerate(model.parameters()):
            param.copy_(torch.arange(param.numel(), dtype=torch.float32).view_as(param) + index)
    return model


def set_params(model: nn.Module, value: float) -> None:
    with torch.no_grad():
        for param in model.parameters():
            param.fill_(value)


def test_ema_rejects_bad_decay():
    for decay in (0.0, 1.0, 1.5, -0.1):
        with pytest.raises(ValueError, match="decay"):
            WeightEMA(make_model(), decay)


def test_ema_tracks_parameters_not_buffers_nor_frozen():
    model = make_model()
    model[0].bias.requires_grad_(False)
    ema = WeightEMA(model, 0.9)
    assert set(ema.shadow) == {"0.weight", "1.weight", "1.bias"}  # no running_mean, no frozen
    for name, param in model.named_parameters():
        if name in ema.shadow:
            assert torch.equal(ema.shadow[name], param)
            assert ema.shadow[name].data_ptr() != param.data_ptr()


def test_ema_update_without_warmup():
    model = make_model()
    ema = WeightEMA(model, 0.9, warmup=False)
    start = {n: s.clone() for n, s in ema.shadow.items()}
    set_params(model, 10.0)
    ema.update()
    for name, shadow in ema.shadow.items():
        assert torch.allclose(shadow, 0.9 * start[name] + 0.1 * 10.0)
    ema.update()
    for name, shadow in ema.shadow.items():
        assert torch.allclose(shadow, 0.81 * start[name] + 0.19 * 10.0)
    assert ema.updates == 2
    assert ema.current_decay() == 0.9


def test_ema_update_with_warmup():
    model = make_model()
    ema = WeightEMA(model, 0.99)
    assert ema.current_decay() == pytest.approx(1 / 10)
    expected = {n: s.clone() for n, s in ema.shadow.items()}
    for step in range(3):
        decay = (1 + step) / (10 + step)
        assert ema.current_decay() == pytest.approx(decay)
        set_params(model, float(step + 1))
        ema.update()
        for name in expected:
            expected[name] = decay * expected[name] + (1 - decay) * float(step + 1)
    for name, shadow in ema.shadow.items():
        assert torch.allclose(shadow, expected[name])
    ema.updates = 10_000
    assert ema.current_decay() == 0.99  # the warm-up only ever lowers the decay


def test_ema_does_not_touch_raw_weights():
    model = make_model()
    ema = WeightEMA(model, 0.5, warmup=False)
    set_params(model, 4.0)
    ema.update()
    assert all(torch.all(p == 4.0) for p in model.parameters())


def test_ema_of_low_precision_model_is_kept_in_float32():
    model = make_model().to(torch.bfloat16)
    ema = WeightEMA(model, 0.5, warmup=False)
    assert all(s.dtype == torch.float32 for s in ema.shadow.values())
    set_params(model, 1.0)
    ema.update()
    first = ema.shadow["0.weight"].clone()
    with ema.swapped_in():
        assert model[0].weight.dtype == torch.bfloat16
        assert torch.allclose(model[0].weight.float(), first, atol=1e-2)


def test_swapped_in_loads_the_average_and_restores_raw_weights():
    model = make_model()
    ema = WeightEMA(model, 0.5, warmup=False)
    set_params(model, 2.0)
    ema.update()
    raw = {n: p.detach().clone() for n, p in model.named_parameters()}
    x = torch.randn(4, 3)
    model.eval()
    with ema.swapped_in():
        for name, param in model.named_parameters():
            assert torch.equal(param, ema.shadow[name])
        swapped_out = model(x)
    for name, param in model.named_parameters():
        assert torch.equal(param, raw[name])
    assert not torch.allclose(model(x), swapped_out)


def test_swapped_in_restores_raw_weights_after_an_exception():
    model = make_model()
    ema = WeightEMA(model, 0.5, warmup=False)
    set_params(model, 3.0)
    ema.update()
    with pytest.raises(RuntimeError, match="boom"), ema.swapped_in():
        assert not torch.all(model[0].weight == 3.0)
        raise RuntimeError("boom")
    assert all(torch.all(p == 3.0) for p in model.parameters())


def test_ema_state_round_trip(tmp_path):
    model = make_model()
    ema = WeightEMA(model, 0.9)
    for value in (1.0, 2.0, 3.0):
        set_params(model, value)
        ema.update()
    path = save_checkpoint(tmp_path, 3, {"ema": ema.state_dict()}, keep=1)
    state = load_checkpoint(path)["ema"]
    assert state["decay"] == 0.9 and state["updates"] == 3

    other_model = make_model()
    other = WeightEMA(other_model, 0.9)
    other.load_state_dict(state)
    assert other.updates == 3
    assert other.current_decay() == ema.current_decay()
    for name in ema.shadow:
        assert torch.equal(other.shadow[name], ema.shadow[name])
    # both continue identically
    set_params(model, 5.0)
    set_params(other_model, 5.0)
    ema.update()
    other.update()
    for name in ema.shadow:
        assert torch.equal(other.shadow[name], ema.shadow[name])


def test_ema_state_of_another_model_is_refused():
    ema = WeightEMA(make_model(), 0.9)
    other = WeightEMA(nn.Linear(3, 2), 0.9)
    with pytest.raises(ValueError, match="does not match the model"):
        other.load_state_dict(ema.state_dict())


# ----------------------------------------------------------------------------- RNG state
def draws() -> tuple:
    return (
        torch.rand(4),
        torch.randn(3),
        np.random.rand(3),
        np.random.randn(),  # exercises numpy's cached Gaussian
        random.random(),
        random.gauss(0.0, 1.0),  # and python's
        random.randint(0, 10**9),
    )


def assert_same_draws(a: tuple, b: tuple) -> None:
    for x, y in zip(a, b, strict=True):
        if isinstance(x, torch.Tensor):
            assert torch.equal(x, y)
        elif isinstance(x, np.ndarray):
            assert np.array_equal(x, y)
        else:
            assert x == y


@pytest.fixture
def global_rng_guard():
    """Leave the global RNGs as the test found them."""
    state = capture_rng_state()
    yield
    restore_rng_state(state)


def test_rng_capture_restore_reproduces_draws(global_rng_guard):
    torch.manual_seed(1)
    np.random.seed(1)
    random.seed(1)
    np.random.randn()  # leave a cached Gaussian behind
    random.gauss(0.0, 1.0)
    state = capture_rng_state()
    first = draws()
    restore_rng_state(state)
    assert_same_draws(first, draws())


def test_rng_state_survives_a_checkpoint(tmp_path, global_rng_guard):
    torch.manual_seed(2)
    np.random.seed(2)
    random.seed(2)
    np.random.randn()
    path = save_checkpoint(tmp_path, 1, {"rng": capture_rng_state()}, keep=1)
    first = draws()
    other = draws()
    restore_rng_state(load_checkpoint(path)["rng"])
    again = draws()
    assert_same_draws(first, again)
    assert not torch.equal(first[0], other[0])


# ----------------------------------------------------------------------------- checkpoints
def test_checkpoint_round_trip(tmp_path):
    model = make_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "data": {"epoch": 2, "position": 17},
    }
    path = save_checkpoint(tmp_path / "ckpt", 12, state, keep=3)
    assert path == checkpoint_path(tmp_path / "ckpt", 12)
    assert path.name == "step_00000012.pt"
    loaded = load_checkpoint(path)
    assert loaded["format"] == CHECKPOINT_FORMAT
    assert loaded["step"] == 12
    assert loaded["data"] == {"epoch": 2, "position": 17}
    for key, value in model.state_dict().items():
        assert torch.equal(loaded["model"][key], value)
    fresh = make_model()
    fresh_opt = torch.optim.Adam(fresh.parameters(), lr=0.1)
    fresh.load_state_dict(loaded["model"])
    fresh_opt.load_state_dict(loaded["optimizer"])
    exp_avg = fresh_opt.state_dict()["state"][0]["exp_avg"]
    assert torch.equal(exp_avg, optimizer.state_dict()["state"][0]["exp_avg"])


def test_save_prunes_to_keep(tmp_path):
    for step in (5, 10, 15, 20):
        save_checkpoint(tmp_path, step, {"x": torch.tensor(step)}, keep=2)
    assert [step for step, _ in list_checkpoints(tmp_path)] == [15, 20]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step_00000015.pt", "step_00000020.pt"]
    save_checkpoint(tmp_path, 25, {}, keep=1)
    assert [step for step, _ in list_checkpoints(tmp_path)] == [25]


def test_keep_zero_keeps_everything(tmp_path):
    for step in (1, 2, 3):
        save_checkpoint(tmp_path, step, {}, keep=0)
    assert [step for step, _ in list_checkpoints(tmp_path)] == [1, 2, 3]


def test_list_checkpoints_ignores_other_files(tmp_path):
    assert list_checkpoints(tmp_path / "missing") == []
    save_checkpoint(tmp_path, 100, {}, keep=5)
    save_checkpoint(tmp_path, 9, {}, keep=5)
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "step_abc.pt").write_text("x")
    (tmp_path / ".step_00000001.pt.tmp.pt").write_text("x")
    assert list_checkpoints(tmp_path) == [(9, tmp_path / "step_00000009.pt"),
                                          (100, tmp_path / "step_00000100.pt")]


def test_failed_save_leaves_previous_checkpoint_intact(tmp_path):
    path = save_checkpoint(tmp_path, 7, {"value": torch.tensor(1.0)}, keep=3)
    before = path.read_bytes()
    with pytest.raises(Exception):  # noqa: B017 - whatever pickling raises
        save_checkpoint(tmp_path, 7, {"value": lambda: None}, keep=3)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left
    assert load_checkpoint(path)["value"] == 1.0


def test_load_refuses_a_foreign_torch_file(tmp_path):
    path = tmp_path / "foreign.pt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, path)
    with pytest.raises(ValueError, match="is not a jukelite checkpoint"):
        load_checkpoint(path)
    torch.save([1, 2, 3], path)
    with pytest.raises(ValueError, match="is not a jukelite checkpoint"):
        load_checkpoint(path)


def test_load_refuses_a_truncated_file(tmp_path):
    path = save_checkpoint(tmp_path, 1, {"w": torch.randn(64)}, keep=1)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=f"checkpoint {path} cannot be read"):
        load_checkpoint(path)
    path.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ValueError, match="cannot be read"):
        load_checkpoint(path)


class _Payload:
    """Stands in for arbitrary pickled code that a weights-only load must not run."""

    def __reduce__(self):
        return (print, ("executed",))


def test_load_uses_weights_only(tmp_path, capsys):
    path = tmp_path / "step_00000001.pt"
    torch.save({"format": CHECKPOINT_FORMAT, "step": 1, "evil": _Payload()}, path)
    with pytest.raises(ValueError, match="cannot be read"):
        load_checkpoint(path)
    assert "executed" not in capsys.readouterr().out
