"""The generic trainer on a toy regression task: accumulation, schedule, EMA, export, failures."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

from jukelite.recipes import TrainSection
from jukelite.train.checkpoint import list_checkpoints, load_checkpoint
from jukelite.train.distributed import DistributedContext
from jukelite.train.trainer import StreamSampler, Trainer

TRUE_WEIGHT = torch.tensor([[1.5, -2.0, 0.5, 3.0]])


class Points(Dataset):
    """Item i is a fixed random point (a pure function of i) and its linear target."""

    def __len__(self) -> int:
        return 64

    def __getitem__(self, index: int) -> dict:
        x = torch.randn(4, generator=torch.Generator().manual_seed(index))
        return {"x": x, "y": TRUE_WEIGHT[0] @ x, "index": index}


class Regression:
    """A TrainingTask: fit a linear map; records what the trainer hands it."""

    name = "toy"

    def __init__(self, nan_at_step: int | None = None):
        torch.manual_seed(0)
        self.model = nn.Linear(4, 1, bias=False)
        self.seen: list[int] = []
        self.exports: list[tuple[int, torch.Tensor]] = []
        self.calls = 0
        self.nan_at_step = nan_at_step

    def train_dataset(self) -> Dataset:
        return Points()

    def valid_dataset(self) -> Dataset:
        return Points()

    def prepare(self, ctx, resuming: bool) -> None:
        pass

    def training_step(self, model, batch):
        self.calls += 1
        self.seen.extend(batch["index"].tolist())
        loss = (model(batch["x"]).squeeze(-1) - batch["y"]).pow(2).mean()
        if self.nan_at_step is not None and self.calls == self.nan_at_step:
            loss = loss * float("nan")
        return loss, {"abs_error": loss.detach().sqrt()}

    def evaluate(self, model, batches):
        errors = [(model(b["x"]).squeeze(-1) - b["y"]).pow(2).mean() for b in batches]
        return {"mse": float(torch.stack(errors).mean())}

    def log_media(self, writer, model, batch, step) -> None:
        pass

    def export(self, model, step, metrics) -> None:
        self.exports.append((step, model.weight.detach().clone()))


def train(tmp_path, task=None, **overrides):
    config = TrainSection(**{"steps": 6, "batch_size": 4, "lr": 0.1, "warmup": 0,
                             "save_every": 100, "eval_every": 100, "progress": False,
                             **overrides})
    task = task or Regression()
    trainer = Trainer(task, config, tmp_path / "run", DistributedContext())
    metrics = trainer.fit()
    return trainer, task, metrics


def test_it_learns_and_exports_at_the_end(tmp_path):
    trainer, task, metrics = train(tmp_path, steps=200, schedule="linear")
    assert metrics["mse"] < 1e-3
    assert task.exports[-1][0] == 200
    assert torch.allclose(task.exports[-1][1], TRUE_WEIGHT, atol=0.05)
    assert [step for step, _ in list_checkpoints(tmp_path / "run" / "checkpoints")] == [100, 200]
    assert (tmp_path / "run" / "metrics.jsonl").read_text().count("\n") == 2


def test_items_are_consumed_in_order_from_the_data_position(tmp_path):
    trainer, task, _ = train(tmp_path, steps=3)
    assert task.seen == list(range(12))
    assert trainer.data_position == 12


def test_gradient_accumulation_equals_the_larger_batch(tmp_path):
    big, _, _ = train(tmp_path / "a", batch_size=4, grad_accum=1)
    small, task, _ = train(tmp_path / "b", batch_size=2, grad_accum=2)
    assert task.calls == 12 and small.data_position == big.data_position == 24
    assert torch.allclose(big.model.weight, small.model.weight, atol=1e-6)


def test_schedule_reaches_zero_and_clip_limits_the_step(tmp_path):
    trainer, _, _ = train(tmp_path, steps=5, schedule="linear", warmup=1)
    assert trainer.scheduler.get_last_lr()[0] == pytest.approx(0.0, abs=1e-12)
    # The gradient left on the parameters is the clipped one.
    clipped, _, _ = train(tmp_path / "clip", steps=1, grad_clip=1e-8, lr=1e-3)
    assert clipped.model.weight.grad.norm() <= 1e-8 * 1.01


def test_ema_weights_are_exported_and_kept_apart(tmp_path):
    trainer, task, _ = train(tmp_path, steps=10, ema_decay=0.9)
    raw = trainer.model.weight.detach()
    exported = task.exports[-1][1]
    assert not torch.allclose(raw, exported)
    assert torch.allclose(exported, trainer.ema.shadow["weight"])
    state = load_checkpoint(list_checkpoints(tmp_path / "run" / "checkpoints")[-1][1])
    assert torch.equal(state["model"]["weight"], raw)
    assert torch.equal(state["ema"]["shadow"]["weight"], exported)


def test_a_nan_loss_stops_with_a_clear_error(tmp_path):
    with pytest.raises(FloatingPointError, match="loss became nan at step 3"):
        train(tmp_path, task=Regression(nan_at_step=3))


def test_stream_sampler_shards_ranks_without_overlap():
    ranks = [StreamSampler(position=10, rank=r, world_size=3) for r in range(3)]
    firsts = [list(itertools.islice(iter(s), 4)) for s in ranks]
    assert firsts == [[10, 13, 16, 19], [11, 14, 17, 20], [12, 15, 18, 21]]
    assert sorted(sum(firsts, [])) == list(range(10, 22))


def test_rate_of_warmup_is_linear(tmp_path):
    trainer, _, _ = train(tmp_path, steps=2, warmup=4, lr=1.0)
    assert trainer.scheduler.get_last_lr()[0] == pytest.approx(3 / 4)
    assert math.isfinite(float(trainer.model.weight.detach().sum()))


def test_training_time_is_recorded_and_carried_over_a_resume(tmp_path):
    trainer, task, _ = train(tmp_path, steps=4, save_every=2)
    first = trainer.train_seconds
    assert first > 0
    assert task.run_info["train_seconds"] == round(first, 1)
    assert task.run_info["device"].startswith("cpu: ") and task.run_info["world_size"] == 1
    config = TrainSection(steps=6, batch_size=4, lr=0.1, warmup=0, save_every=2, eval_every=100,
                          progress=False)
    resumed = Trainer(Regression(), config, tmp_path / "run", DistributedContext(), resume=True)
    assert resumed.train_seconds == pytest.approx(first)
    resumed.fit()
    assert resumed.train_seconds > first
