"""One training loop for every component: VQ-VAE levels and priors.

What is trained is described by a `TrainingTask`: its model, datasets, loss, evaluation and how
the result is exported into a bundle. The trainer owns everything else: AdamW, the LR schedule,
gradient clipping and accumulation, bf16 autocast on CUDA, weight EMA, DDP under torchrun,
TensorBoard, the progress bar, and checkpoints that resume exactly.

Exact resume rests on one rule: training item `i` of a dataset is a pure function of the recipe
seed and `i`. The trainer only needs to remember how many items it has consumed (the data
position) plus the model, optimizer, scheduler and RNG states.

A resumed run continues the recipe its checkpoint was written with: only the keys of
`recipes.SAFE_ON_RESUME` may differ, and those changes are recorded in the checkpoints and the
bundle's provenance, so what a run reports is what it trained.
"""

from __future__ import annotations

import json
import math
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm.auto import tqdm

import jukelite.train.fsdp as fsdp
from jukelite.bundle import device_name
from jukelite.logs import get_logger
from jukelite.recipes import ABSENT, SAFE_ON_RESUME, TrainSection, recipe_differences
from jukelite.train.checkpoint import (
    ResumePoint,
    RunDirectoryError,
    capture_rng_state,
    latest_checkpoint_step,
    list_checkpoints,
    newest_readable_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from jukelite.train.distributed import DistributedContext
from jukelite.train.ema import WeightEMA
from jukelite.train.schedule import build_scheduler

log = get_logger(__name__)


class TrainingTask(Protocol):
    """What the trainer needs to know about the thing being trained."""

    model: nn.Module
    run_info: dict[str, Any]  # set by the trainer before export: training time, device

    def train_dataset(self) -> Dataset: ...

    def valid_dataset(self) -> Dataset | None: ...

    def prepare(self, ctx: DistributedContext, resuming: bool) -> None:
        """One-off work before the first step (data statistics, caches); skipped state on resume
        comes back from the checkpoint."""

    def training_step(self, model: nn.Module, batch: dict) -> tuple[torch.Tensor, dict]:
        """Loss (scalar) and detached metrics for one micro-batch already on the device."""

    def evaluate(self, model: nn.Module, batches: Iterator[dict]) -> dict[str, float]: ...

    def log_media(self, writer: Any, model: nn.Module, batch: dict, step: int) -> None: ...

    def export(self, model: nn.Module, step: int, metrics: dict[str, float]) -> None:
        """Write the (EMA, if enabled) weights into the bundle."""


class StreamSampler(Sampler[int]):
    """Endless item indices for one rank, starting at a global data position.

    Rank `r` of `w` takes items `position + r, position + r + w, ...`, so ranks never overlap and
    a resumed run continues with exactly the items the interrupted one would have seen next.
    """

    def __init__(self, position: int, rank: int = 0, world_size: int = 1):
        self.position, self.rank, self.world_size = position, rank, world_size

    def __iter__(self) -> Iterator[int]:
        index = self.position + self.rank
        while True:
            yield index
            index += self.world_size


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM) ended training before its last step. A KeyboardInterrupt, so it
    ends a command like any Ctrl-C; its message says where the run stands."""

    def __init__(self, step: int, checkpoint_step: int | None):
        self.step, self.checkpoint_step = step, checkpoint_step
        if checkpoint_step is None:
            where = f"at step {step}, before the first checkpoint"
        elif checkpoint_step == step:
            where = f"at step {step}"
        else:
            where = f"at step {step} (the last checkpoint is step {checkpoint_step})"
        super().__init__(where)


def _show(value: Any) -> str:
    """A recipe value as it would be written in YAML or an override (null, true, "text")."""
    return json.dumps(value) if value is not ABSENT else ABSENT


def open_resume_point(run_dir: str | Path, recipe: dict | None) -> ResumePoint:
    """The checkpoint a resume of `run_dir` starts from, with `recipe` (the one given now)
    checked against the one that checkpoint was trained with.

    Any change outside `SAFE_ON_RESUME` is refused with every changed key listed; the safe
    ones come back as {step, key, old, new} records in `changes`. A checkpoint that stores no
    recipe (written by a bare Trainer) is not compared."""
    run_dir = Path(run_dir)
    point = newest_readable_checkpoint(run_dir)
    stored = point.state.get("recipe") or {}
    if not (stored and recipe):
        return point
    differences = recipe_differences(stored, recipe)
    refused = [d for d in differences if d[0] not in SAFE_ON_RESUME]
    if refused:
        lines = [
            f"  {key}: was {_show(old)} in this run, the recipe now says {_show(new)}"
            for key, old, new in refused
        ]
        raise RunDirectoryError(
            f"cannot resume {run_dir} (step {point.step} in {point.path.name}): the recipe "
            "changed since the run started\n" + "\n".join(lines) + "\nonly "
            f"{', '.join(SAFE_ON_RESUME)} may change on resume; undo the other changes, or "
            "train them as a new run (another output.dir)"
        )
    steps = recipe.get("train", {}).get("steps")
    if isinstance(steps, int) and steps < point.step:
        raise RunDirectoryError(
            f"cannot resume {run_dir}: train.steps is {steps} but the run already reached step "
            f"{point.step} ({point.path.name}); give train.steps={point.step} or more"
        )
    point.changes = [
        {"step": point.step, "key": key, "old": None if old is ABSENT else old,
         "new": None if new is ABSENT else new}
        for key, old, new in differences
    ]
    return point


def _to_device(batch: dict, device: torch.device) -> dict:
    return {
        k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()
    }


def _mean_metrics(records: list[dict]) -> dict[str, float]:
    keys = records[0].keys() if records else []
    return {k: float(sum(float(r[k]) for r in records) / len(records)) for k in keys}


def _state_mismatch(model: nn.Module, saved: dict[str, torch.Tensor], limit: int = 10
                    ) -> list[str]:
    """One line per tensor that differs between `model` and saved weights: load_state_dict's
    own error is a wall of text naming the model class, not what changed."""
    own = model.state_dict()
    lines = [
        f"{key}: {list(saved[key].shape)} in the checkpoint, {list(own[key].shape)} in the model"
        for key in own
        if key in saved and saved[key].shape != own[key].shape
    ]
    lines += [f"{key}: only in the model" for key in own if key not in saved]
    lines += [f"{key}: only in the checkpoint" for key in saved if key not in own]
    if len(lines) > limit:
        lines = [*lines[:limit], f"... and {len(lines) - limit} more"]
    return lines


def _unfit(path: Path, what: str, exc: Exception) -> RunDirectoryError:
    """A checkpoint whose state torch refused to load into the model: `what` does not fit,
    and the first line of torch's reason (its full messages run to pages)."""
    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return RunDirectoryError(f"cannot resume from {path}: {what} ({first})")


class Trainer:
    """Trains `task.model` for `config.steps` optimizer steps into `run_dir`.

    `resume` is True (find the checkpoint with `open_resume_point`) or a `ResumePoint` the
    caller opened before building the task, so a refusal comes before any slow preparation.
    """

    def __init__(
        self,
        task: TrainingTask,
        config: TrainSection,
        run_dir: str | Path,
        ctx: DistributedContext,
        resume: bool | ResumePoint = False,
        recipe: dict | None = None,
    ):
        self.task, self.config, self.ctx = task, config, ctx
        self.run_dir = Path(run_dir)
        self.checkpoint_dir = self.run_dir / "checkpoints"
        self.recipe = recipe or {}
        self.step = 0
        self.data_position = 0
        self.train_seconds = 0.0  # wall time spent in training steps, summed over resumes
        self.callbacks: list[Callable[[Trainer], None]] = []
        self.writer: Any = None  # TensorBoard, on rank 0 while fit() runs
        # Safe recipe changes made on resumes, oldest first: {step, key, old, new}.
        self.recipe_changes: list[dict[str, Any]] = []
        self._stop_requested = False
        self._interrupted = False  # a signal (not a callback) asked to stop

        existing = list_checkpoints(self.checkpoint_dir)
        if existing and resume is False:
            raise RunDirectoryError(
                f"{self.run_dir} already holds checkpoints (latest: step {existing[-1][0]}); "
                "pass --resume to continue that run, or set output.dir to a new directory"
            )
        point = None
        if resume:
            point = resume if isinstance(resume, ResumePoint) else open_resume_point(
                self.run_dir, self.recipe
            )
            self.recipe_changes = [*point.state.get("recipe_changes", []), *point.changes]
            self._report_resume_point(point)

        torch.manual_seed(config.seed)
        task.prepare(ctx, resuming=point is not None)
        self.autocast_dtype = self._autocast_dtype()
        self.sharded = config.parallel == "fsdp"
        if self.sharded:  # before the optimizer and EMA, which then hold only this rank's shards
            self.model = fsdp.shard_model(task.model, ctx, bf16=self.autocast_dtype is not None)
        else:
            self.model = task.model.to(ctx.device)
        decay, no_decay = [], []
        for param in self.model.parameters():
            if param.requires_grad:
                (decay if param.ndim >= 2 else no_decay).append(param)
        self.optimizer = torch.optim.AdamW(
            [
                {"params": decay, "weight_decay": config.weight_decay},
                {"params": no_decay, "weight_decay": 0.0},
            ],
            lr=config.lr,
            betas=tuple(config.betas),
        )
        self.scheduler = build_scheduler(
            self.optimizer, config.steps, config.warmup, config.schedule
        )
        self.ema = WeightEMA(self.model, config.ema_decay) if config.ema_decay else None
        if point is not None:
            self._load(point)
        self.wrapped: nn.Module = self.model
        if ctx.enabled and not self.sharded:
            device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
            self.wrapped = DistributedDataParallel(self.model, device_ids=device_ids)

    # ------------------------------------------------------------------ setup helpers
    def _autocast_dtype(self) -> torch.dtype | None:
        precision, device = self.config.precision, self.ctx.device
        if precision == "fp32" or (precision == "auto" and device.type != "cuda"):
            return None
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            if precision == "bf16":
                raise ValueError(f"train.precision=bf16 but {device} does not support bfloat16")
            return None
        return torch.bfloat16

    def _autocast(self):
        if self.autocast_dtype is None:
            return nullcontext()
        return torch.autocast(device_type=self.ctx.device.type, dtype=self.autocast_dtype)

    def _loader(self, dataset: Dataset, sampler: Sampler | None) -> DataLoader:
        # An explicit generator keeps DataLoader start-up from drawing on the global RNG,
        # which would make a resumed run diverge from an uninterrupted one.
        return DataLoader(
            dataset,
            batch_size=self.config.batch_size,
            sampler=sampler,
            shuffle=False,
            num_workers=getattr(self.task, "num_workers", 0),
            generator=torch.Generator(),
            pin_memory=self.ctx.device.type == "cuda",
            drop_last=False,
        )

    # ------------------------------------------------------------------ checkpoints
    def _state(self) -> dict[str, Any]:
        """Everything a checkpoint holds; sharded runs keep the tensors of the model, the
        optimizer and the EMA apart (`fsdp.save_sharded_checkpoint`) and the EMA's count here."""
        if self.sharded:
            tensors: dict[str, Any] = {"ema_updates": self.ema.updates if self.ema else None}
        else:
            tensors = {
                "model": self.model.state_dict(),
                "ema": self.ema.state_dict() if self.ema else None,
                "optimizer": self.optimizer.state_dict(),
            }
        return {
            "data_position": self.data_position,
            "train_seconds": self.train_seconds,
            **tensors,
            "scheduler": self.scheduler.state_dict(),
            "rng": capture_rng_state(),
            "world_size": self.ctx.world_size,
            "recipe": self.recipe,
            "recipe_changes": self.recipe_changes,
        }

    def _report_resume_point(self, point: ResumePoint) -> None:
        """Say which checkpoints were skipped and which recipe changes apply (rank 0), and
        set the skipped files aside so they can no longer pass for the newest checkpoints."""
        if not self.ctx.is_main:
            return
        for path, reason, target in point.set_aside_skipped():
            renamed = f"; renamed it to {target.name}" if target else ""
            log.warning("skipped unreadable checkpoint %s (%s)%s", path, reason, renamed)
        if point.skipped:
            log.warning("resuming from %s (step %d), the newest readable checkpoint",
                        point.path.name, point.step)
        for change in point.changes:
            log.info(
                "%s: was %s in this run, now %s (may change on resume; recorded in the run)",
                change["key"], _show(change["old"]), _show(change["new"]),
            )

    def _load(self, point: ResumePoint) -> None:
        state, path = point.state, point.path
        if bool(state.get("sharded")) != self.sharded:
            raise RunDirectoryError(
                f"cannot resume from {path}: it was written by a "
                f"{'sharded' if state.get('sharded') else 'replicated'} run and this one is "
                f"{'sharded' if self.sharded else 'replicated'} (train.parallel)"
            )
        if self.sharded:
            self._load_sharded(point)
        else:
            self._load_whole(point)
        restore_rng_state(state["rng"])
        self.step = int(state["step"])
        self.data_position = int(state["data_position"])
        self.train_seconds = float(state.get("train_seconds", 0.0))
        if state.get("world_size", 1) != self.ctx.world_size and self.ctx.is_main:
            log.warning(
                "%s was written with %s processes, resuming with %s; the data order changes",
                path, state.get("world_size"), self.ctx.world_size,
            )
        if self.ctx.is_main:
            log.info("resumed from %s at step %d", path, self.step)

    def _load_sharded(self, point: ResumePoint) -> None:
        try:
            fsdp.load_sharded_tensors(point.path, self.model, self.optimizer,
                                      self.ema.shadow if self.ema else None)
            self.scheduler.load_state_dict(point.state["scheduler"])
        except (ValueError, KeyError, RuntimeError) as exc:
            raise _unfit(point.path, "its sharded state does not fit the model the recipe builds",
                         exc) from exc
        if self.ema is not None:
            self.ema.updates = int(point.state["ema_updates"])

    def _load_whole(self, point: ResumePoint) -> None:
        state, path = point.state, point.path
        mismatch = _state_mismatch(self.model, state["model"])
        if mismatch:
            raise RunDirectoryError(
                f"cannot resume from {path}: its weights do not fit the model the recipe "
                "builds\n  " + "\n  ".join(mismatch)
            )
        self.model.load_state_dict(state["model"])
        try:
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
        except (ValueError, KeyError, RuntimeError) as exc:
            raise _unfit(path, "its optimizer state does not fit this model", exc) from exc
        if self.ema is not None:
            if state.get("ema") is None:
                raise RunDirectoryError(f"{path} has no EMA weights but train.ema_decay is set")
            self.ema.load_state_dict(state["ema"])

    def save(self) -> Path | None:
        path = None
        if self.sharded:
            return fsdp.save_sharded_checkpoint(
                self.checkpoint_dir, self.step, self.model, self.optimizer,
                self.ema.shadow if self.ema else None, self._state(),
                self.config.keep_checkpoints,
            )
        if self.ctx.is_main:
            path = save_checkpoint(
                self.checkpoint_dir, self.step, self._state(), self.config.keep_checkpoints
            )
        self.ctx.barrier()
        return path

    # ------------------------------------------------------------------ stop requests
    def request_stop(self) -> None:
        """Finish the current step, checkpoint and return (Ctrl-C, SIGTERM or a callback)."""
        self._stop_requested = True

    def _install_signal_handlers(self) -> dict:
        previous = {}

        def handler(signum, frame):
            if self._stop_requested:  # a second Ctrl-C stops at once
                raise KeyboardInterrupt
            log.warning(
                "stop requested: finishing this step and saving a checkpoint "
                "(press Ctrl-C again to abort without saving)"
            )
            self._interrupted = True
            self.request_stop()

        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                previous[sig] = signal.signal(sig, handler)
            except ValueError:  # not the main thread: leave signals alone
                pass
        return previous

    def _agree_on_stop(self) -> None:
        """A signal may reach only some ranks; all ranks must stop at the same step."""
        if self.ctx.enabled:
            flag = torch.tensor([float(self._stop_requested)], device=self.ctx.device)
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
            self._stop_requested = bool(flag.item())

    # ------------------------------------------------------------------ evaluation and export
    def _eval_context(self):
        return self.ema.swapped_in() if self.ema else nullcontext()

    def evaluate(self) -> dict[str, float]:
        """Validation metrics with the weights that would be exported (EMA when enabled)."""
        metrics: dict[str, float] = {}
        # A sharded model's forward is collective: every rank evaluates, rank 0 reports.
        if self.ctx.is_main or self.sharded:
            dataset = self.task.valid_dataset()
            if dataset is not None and len(dataset) > 0:
                loader = self._loader(dataset, sampler=None)
                self.model.eval()
                with torch.no_grad(), self._eval_context(), self._autocast():
                    batches = (_to_device(b, self.ctx.device) for b in loader)
                    metrics = self.task.evaluate(self.model, batches)
                    if self.writer is not None:
                        first = _to_device(next(iter(loader)), self.ctx.device)
                        self.task.log_media(self.writer, self.model, first, self.step)
                    if self.sharded:
                        fsdp.release_gathered(self.model)
                self.model.train()
                for key, value in metrics.items():
                    if self.writer is not None:
                        self.writer.add_scalar(f"valid/{key}", value, self.step)
                if self.ctx.is_main:
                    with open(self.run_dir / "metrics.jsonl", "a") as log:
                        log.write(json.dumps({"step": self.step, **metrics}) + "\n")
        self.ctx.barrier()
        return metrics

    def export(self, metrics: dict[str, float]) -> None:
        model = self.model
        if self.sharded:  # gathered whole onto rank 0 (every rank takes part)
            with self._eval_context():
                model = fsdp.unsharded_copy(self.model)
        if self.ctx.is_main:
            model.eval()
            # What the bundle records about how its weights were made (tasks read it on export).
            self.task.run_info = {
                "train_seconds": round(self.train_seconds, 1),
                "device": f"{self.ctx.device.type}: {device_name(self.ctx.device)}",
                "threads": torch.get_num_threads(),
                "world_size": self.ctx.world_size,
            }
            if self.recipe_changes:
                self.task.run_info["recipe_changes"] = self.recipe_changes
            with nullcontext() if self.sharded else self._eval_context():
                self.task.export(model, self.step, metrics)
            self.model.train()
        self.ctx.barrier()

    # ------------------------------------------------------------------ the loop
    def _train_step(self, batches: Iterator[dict]) -> tuple[dict[str, float], float, int]:
        """One optimizer step over `grad_accum` micro-batches; returns metrics, grad norm, items."""
        cfg = self.config
        self.optimizer.zero_grad(set_to_none=True)
        records, items = [], 0
        for micro in range(cfg.grad_accum):
            batch = _to_device(next(batches), self.ctx.device)
            sync = micro == cfg.grad_accum - 1 or not self.ctx.enabled
            if self.sharded:
                fsdp.set_gradient_sync(self.model, sync)
            skip_sync = nullcontext() if sync or self.sharded else self.wrapped.no_sync()
            with skip_sync, self._autocast():
                loss, metrics = self.task.training_step(self.wrapped, batch)
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"loss became {loss.item()} at step {self.step + 1}; the last good checkpoint "
                    f"is in {self.checkpoint_dir} (try a lower train.lr or a longer warm-up)"
                )
            (loss / cfg.grad_accum).backward()
            records.append({"loss": loss.detach(), **metrics})
            items += next(iter(v.shape[0] for v in batch.values() if torch.is_tensor(v)))
        grad_norm = fsdp.full_norm(
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        )
        self.optimizer.step()
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update()
        return _mean_metrics(records), float(grad_norm), items

    def fit(self) -> dict[str, float]:
        """Train to `config.steps` (or until a stop is requested); returns the last eval metrics.

        A stop asked for by Ctrl-C or SIGTERM saves a checkpoint and then raises
        `TrainingInterrupted`, so the command ends as interrupted rather than as finished; a
        stop asked for by a callback (`request_stop`) returns normally."""
        cfg, ctx = self.config, self.ctx
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if ctx.is_main:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.run_dir / "logs"), purge_step=self.step or None)
        sampler = StreamSampler(self.data_position, ctx.rank, ctx.world_size)
        batches = iter(self._loader(self.task.train_dataset(), sampler))
        previous_handlers = self._install_signal_handlers()
        seconds_per_item = getattr(self.task, "seconds_per_item", None)
        metrics: dict[str, float] = {}
        bar = tqdm(
            total=cfg.steps,
            initial=self.step,
            disable=not (cfg.progress and ctx.is_main),
            desc=getattr(self.task, "name", "train"),
            dynamic_ncols=True,
        )
        self.model.train()
        try:
            window_start, window_items = time.perf_counter(), 0
            while self.step < cfg.steps and not self._stop_requested:
                step_start = time.perf_counter()
                step_metrics, grad_norm, items = self._train_step(batches)
                self.train_seconds += time.perf_counter() - step_start
                self.step += 1
                self.data_position += items * ctx.world_size
                window_items += items * ctx.world_size
                elapsed = time.perf_counter() - window_start
                rate = window_items / elapsed if elapsed > 0 else math.nan
                postfix = {"loss": f"{step_metrics['loss']:.4g}", "items/s": f"{rate:.1f}"}
                if seconds_per_item:
                    postfix["audio s/s"] = f"{rate * seconds_per_item:.1f}"
                bar.set_postfix(postfix, refresh=False)
                bar.update(1)
                if self.writer is not None and self.step % cfg.log_every == 0:
                    for key, value in step_metrics.items():
                        self.writer.add_scalar(f"train/{key}", value, self.step)
                    self.writer.add_scalar("train/lr", self.scheduler.get_last_lr()[0], self.step)
                    self.writer.add_scalar("train/grad_norm", grad_norm, self.step)
                    self.writer.add_scalar("train/items_per_second", rate, self.step)
                    window_start, window_items = time.perf_counter(), 0
                for callback in self.callbacks:
                    callback(self)
                self._agree_on_stop()
                finished = self.step >= cfg.steps
                if self.step % cfg.eval_every == 0 or finished:
                    metrics = self.evaluate()
                if self.step % cfg.save_every == 0 or finished or self._stop_requested:
                    self.save()
                    self.export(metrics)
        finally:
            bar.close()
            for sig, handler in previous_handlers.items():
                signal.signal(sig, handler)
            if self.writer is not None:
                self.writer.close()
        if self._stop_requested and self.step < cfg.steps:
            if self._interrupted:
                raise TrainingInterrupted(self.step, latest_checkpoint_step(self.checkpoint_dir))
            if ctx.is_main:
                log.warning("stopped at step %d/%d; continue with --resume", self.step, cfg.steps)
        return metrics
