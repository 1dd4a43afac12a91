"""Per-device training memory of a recipe, for `jukelite train RECIPE --dry-run`.

What one device holds while training, under `train.parallel: ddp` and `fsdp`, for N devices:

* **Static parts, exact** from the meta-device model (parameter shapes x dtype sizes): fp32
  master weights, fp32 gradients, AdamW's two fp32 moments, the fp32 EMA (`train.ema_decay`) and
  the buffers. Under FSDP2 (`jukelite.train.fsdp`: one unit per Transformer block, the rest in
  the root unit) every parameter is split on dim 0 and every rank stores ceil(dim0 / N) rows,
  the padded shard FSDP2 allocates; rank 0 holds the largest shard and is reported. Weights,
  gradients, moments and EMA are all sharded; buffers are replicated.
* **Per-mode transients, from the same shapes.** DDP (N > 1) keeps its gradient buckets, with
  `gradient_as_bucket_view=False` (DDP's default, kept by the trainer) a second copy of every
  gradient; under bf16 autocast (`train.precision: auto` on CUDA) autocast caches a bf16 copy
  of every Linear/Conv weight and bias for the whole forward, and without checkpointing the
  backward keeps the weight copies alive. FSDP gathers bf16 (fp32 with `precision: fp32`)
  copies: the root unit's for the whole step (FSDP2 does not reshard the root after
  forward), two copies of the largest block's (the one computing and the one prefetched),
  and the unsharded gradient of the largest unit in the compute dtype plus its fp32
  reduce-scatter input.
  A VQ-VAE is planned under DDP only: the recipe check refuses `fsdp` for it.
* **Activations, measured** by running forward + backward of reduced shapes of the same model
  on the CPU and counting the bytes of the unique storages autograd saves for backward
  (`torch.autograd.graph.saved_tensors_hooks`); parameters and casts of parameters are not
  activations and are left out. A prior is measured with one block of each attention type, at
  two short contexts (`PRIOR_CONTEXTS` music tokens) times two narrow widths (`PRIOR_WIDTHS`,
  with the conditioner's and lyrics encoder's widths scaled alike where they stay whole; heads,
  vocabularies, the lyric window and labels are the real ones). Every saved tensor's size is a
  product of one or none of the context and the width with sizes that do not change
  (attention runs in fused kernels, flash on the CPU as on CUDA, so nothing grows with a
  square), so each block type's bytes and the bytes outside blocks are extrapolated exactly by
  a + b n_ctx + c width + d n_ctx width, then multiplied by the layers of each type
  (tests/unit/test_memory_plan.py checks a 6 to 17 layer prior of width 256 and context 256
  predicted from widths and contexts 32 and 64 against measuring it whole: equal to the byte).
  With activation checkpointing a block keeps only its inputs, as the caller passed them
  (non-reentrant checkpoint saves them through the same hooks: checked in that test), and the
  backward recomputes one block at a time, so the largest block's own saved tensors are added
  once. A VQ-VAE is measured whole at two short lengths and extrapolated linearly to
  `data.sample_length`. Everything scales with the micro-batch (`train.batch_size`),
  measured at 1.
* **Precision.** The plan is for CUDA devices: `train.precision: auto` means bf16 autocast
  there. bf16 runs are measured under CPU bf16 autocast, which uses the CUDA lists for
  every op these models run in low precision (linear, conv, attention), except layer norm,
  which CUDA autocast runs in fp32: the measurement does the same. DDP's activations come from
  fp32 weights under autocast (an fp32 residual stream); FSDP's from bf16 weights with each
  block's inputs cast to bf16, as FSDP2's `MixedPrecisionPolicy` does.
* **Peaks.** A training step's peak is taken as the static parts plus the mode's transients
  plus the activations, all at once: an upper bound, since the backward frees activations as
  it allocates gradients. Two other moments can be higher and are checked too: the optimizer
  step (foreach AdamW allocates one fp32 scratch tensor the size of its largest parameter
  group) and evaluation with the EMA swapped in (a backup copy of the weights, while the last
  gradients are still held). `RESERVE_GIB` is added for the CUDA context, NCCL and allocator
  slack. Temporaries that live inside one op (a backward's scratch, a VQ-VAE's code distance
  matrix) are not counted. GPU memory is in GiB (2**30 bytes; an "80 GB" GPU has 80 GiB).

`python -m jukelite.train.memory_plan RECIPE... --world-sizes 8,64,512 --markdown` prints the
README's table.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import math
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

GIB = 1 << 30
RESERVE_GIB = 2.0  # CUDA context, NCCL buffers, allocator fragmentation: an allowance
FP32, BF16 = 4, 2
MODES = ("ddp", "fsdp")
# Music tokens of the two short contexts a prior's activations are measured at.
PRIOR_CONTEXTS = (64, 128)
# ... and widths (the real width, heads and every other size are kept).
PRIOR_WIDTHS = (128, 256)
# Autograd nodes that only view or cast their single input: a saved tensor reached from a
# parameter through these alone is a weight copy, not an activation.
_VIEW_OR_CAST = {
    "ToCopyBackward", "TBackward", "ViewBackward", "UnsafeViewBackward", "PermuteBackward",
    "TransposeBackward", "ExpandBackward", "SliceBackward", "SelectBackward", "AliasBackward",
    "UnsqueezeBackward", "SqueezeBackward", "AsStridedBackward", "ReshapeAliasBackward",
}
_CAST_MODULES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d,
                 nn.ConvTranspose2d, nn.ConvTranspose3d)


# ------------------------------------------------------------------------------ static parts
@dataclass(frozen=True)
class Param:
    """One trainable tensor: its shape, its FSDP unit ("" = root) and whether autocast casts it."""

    shape: tuple[int, ...]
    unit: str
    autocast: bool

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    def shard(self, world_size: int) -> int:
        """Elements FSDP2 stores on rank 0: ceil(dim0 / N) rows (0-dim tensors whole)."""
        if not self.shape:
            return 1
        return -(-self.shape[0] // world_size) * math.prod(self.shape[1:])


@dataclass(frozen=True)
class ModelTensors:
    """What the static plan needs from a model; read from a meta-device model in no time."""

    params: tuple[Param, ...]
    buffer_bytes: int

    @classmethod
    def of(cls, model: nn.Module) -> ModelTensors:
        """Tied tensors once; a tensor's unit is the Transformer block holding it, as
        `jukelite.train.fsdp.shard_model` wraps them."""
        from jukelite.prior.model import Block

        blocks = [name for name, module in model.named_modules() if isinstance(module, Block)]
        cast = {id(p) for m in model.modules() if isinstance(m, _CAST_MODULES)
                for p in m.parameters(recurse=False)}
        params = tuple(
            Param(tuple(p.shape), next((b for b in blocks if name.startswith(b + ".")), ""),
                  id(p) in cast)
            for name, p in model.named_parameters() if p.requires_grad
        )
        buffers = sum(b.numel() * b.element_size() for b in model.buffers())
        return cls(params, buffers)

    @property
    def numel(self) -> int:
        return sum(p.numel for p in self.params)

    def units(self) -> dict[str, int]:
        """Elements per FSDP unit (the root is "")."""
        sizes: Counter[str] = Counter()
        for p in self.params:
            sizes[p.unit] += p.numel
        return dict(sizes)

    def per_rank(self, world_size: int, sharded: bool, only: Callable[[Param], bool] | None = None
                 ) -> int:
        """Elements one rank stores: all of them (DDP) or rank 0's shards (FSDP)."""
        chosen = [p for p in self.params if only is None or only(p)]
        return sum(p.shard(world_size) if sharded else p.numel for p in chosen)


def static_bytes(tensors: ModelTensors, mode: str, world_size: int, bf16: bool, ema: bool
                 ) -> dict[str, int]:
    """Bytes per device of everything but activations, by line (see the module docstring)."""
    sharded = mode == "fsdp"
    elements = tensors.per_rank(world_size, sharded)
    lines = {
        "weights": FP32 * elements,
        "gradients": FP32 * elements,
        "optimizer": 2 * FP32 * elements,
        "ema": FP32 * elements if ema else 0,
        "buffers": tensors.buffer_bytes,
    }
    if mode == "ddp":
        lines["ddp_buckets"] = FP32 * elements if world_size > 1 else 0
        cast = tensors.per_rank(1, False, lambda p: p.autocast)
        lines["weight_copies"] = BF16 * cast if bf16 else 0
    else:
        units = tensors.units()
        root = units.pop("", 0)
        largest_block = max(units.values(), default=0)
        compute = BF16 if bf16 else FP32
        reduce = FP32 if bf16 else 0  # the fp32 reduce-scatter input next to a bf16 gradient
        lines["gathered"] = (compute * (root + 2 * largest_block)
                             + (compute + reduce) * max(root, largest_block))
    # foreach AdamW: one fp32 scratch (sqrt of the second moment) per parameter group at a time
    groups = (tensors.per_rank(world_size, sharded, lambda p: len(p.shape) >= 2),
              tensors.per_rank(world_size, sharded, lambda p: len(p.shape) < 2))
    lines["optimizer_step"] = FP32 * max(groups)
    lines["ema_swap"] = FP32 * elements if ema else 0
    return lines


# ------------------------------------------------------------------------------ activations
def _from_parameter(t: Tensor) -> bool:
    """True when `t` is a parameter seen through views and casts only (a weight copy)."""
    fn = t.grad_fn
    while fn is not None:
        name = type(fn).__name__.rstrip("0123456789")
        if name == "AccumulateGrad":
            return True
        if name not in _VIEW_OR_CAST or not fn.next_functions:
            return False
        fn = fn.next_functions[0][0]
    return False


class SavedTensorLedger:
    """Unique storages autograd saves for backward during a forward, by the block running.

    Parameters, buffers and weight copies are skipped. `owner` is the index (in `blocks`) of
    the block whose forward is running, None outside blocks; `inputs` holds each block's
    tensor arguments (storage -> bytes), which checkpointing keeps instead of the saved ones."""

    def __init__(self, model: nn.Module, blocks: Sequence[nn.Module]) -> None:
        self.skip = {t.untyped_storage().data_ptr()
                     for t in [*model.parameters(), *model.buffers()]}
        self.saved: dict[int, tuple[int, int | None]] = {}
        self.inputs: list[dict[int, int]] = [{} for _ in blocks]
        self.owner: int | None = None
        self._alive: list[Tensor] = []
        self._handles = []
        for index, block in enumerate(blocks):
            self._handles.append(block.register_forward_pre_hook(self._enter(index)))
            self._handles.append(block.register_forward_hook(self._leave))

    def _enter(self, index: int) -> Callable:
        def hook(_module: nn.Module, args: tuple) -> None:
            self.owner = index
            for arg in args:
                if isinstance(arg, Tensor):
                    storage = arg.untyped_storage()
                    self.inputs[index][storage.data_ptr()] = storage.nbytes()
                    self._alive.append(arg)  # no later tensor may reuse its address
        return hook

    def _leave(self, *_: Any) -> None:
        self.owner = None

    def pack(self, t: Tensor) -> Tensor:
        storage = t.untyped_storage()
        ptr = storage.data_ptr()
        if storage.nbytes() and ptr not in self.skip and ptr not in self.saved \
                and not _from_parameter(t):
            self.saved[ptr] = (storage.nbytes(), self.owner)
        return t

    def hooks(self) -> torch.autograd.graph.saved_tensors_hooks:
        return torch.autograd.graph.saved_tensors_hooks(self.pack, lambda t: t)

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._alive.clear()

    def owned(self, owner: int | None, exclude: Iterable[int] = ()) -> int:
        """Bytes saved while `owner` ran (None: outside every block), less `exclude` storages."""
        skip = set(exclude)
        return sum(n for ptr, (n, o) in self.saved.items() if o == owner and ptr not in skip)


def _fp32_layer_norm(module: nn.LayerNorm, x: Tensor) -> Tensor:
    """Layer norm as CUDA autocast runs it (in fp32, fp32 out); CPU autocast would keep bf16."""
    weight = None if module.weight is None else module.weight.float()
    bias = None if module.bias is None else module.bias.float()
    return F.layer_norm(x.float(), module.normalized_shape, weight, bias, module.eps)


def _cast_inputs_to_bf16(_module: nn.Module, args: tuple) -> tuple:
    """FSDP2 `MixedPrecisionPolicy(cast_forward_inputs=True)`: a unit's float inputs in bf16."""
    return tuple(a.to(torch.bfloat16) if isinstance(a, Tensor) and a.is_floating_point() else a
                 for a in args)


def measure(model: nn.Module, blocks: Sequence[nn.Module], step: Callable[[nn.Module], Tensor],
            bf16: bool, fsdp: bool) -> SavedTensorLedger:
    """Forward + backward of `step(model)` (a loss) with a ledger's hooks on, as training runs
    it in `fsdp` or DDP mode (see the module docstring); returns the ledger."""
    # The ledger's hooks first: a block's inputs are recorded as the caller passed them,
    # before FSDP's cast, as a checkpoint keeps them (FSDP2 casts inside the checkpoint).
    ledger = SavedTensorLedger(model, blocks)
    handles = []
    if fsdp:
        handles += [b.register_forward_pre_hook(_cast_inputs_to_bf16) for b in blocks]
    norms = [m for m in model.modules() if isinstance(m, nn.LayerNorm)] if bf16 else []
    for norm in norms:  # this run only: an instance attribute shadows the class's forward
        norm.forward = functools.partial(_fp32_layer_norm, norm)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else nullcontext()
    try:
        with ledger.hooks(), autocast:
            loss = step(model)
        loss.float().backward()
    finally:
        ledger.close()
        for handle in handles:
            handle.remove()
        for norm in norms:
            del norm.forward
    model.zero_grad(set_to_none=True)
    return ledger


@dataclass(frozen=True)
class Activations:
    """Activation bytes of one training sample (micro-batch 1); None: no checkpointing option."""

    full: int
    checkpointed: int | None


def layer_terms(ledger: SavedTensorLedger, kinds: Sequence[str]) -> dict[str, float]:
    """Bytes of one sample, from a run without checkpointing: saved outside blocks, saved per
    block type, and what checkpointing keeps instead: each Transformer's first block's input
    (its dtype can differ from the rest's: FSDP casts inside the block), any later block's, and
    the inputs several blocks share (the lyrics states), less what is saved outside anyway;
    `recompute:` is what a block's recomputation saves beyond its held inputs."""
    terms: dict[str, float] = {"outside": ledger.owned(None)}
    outside = {ptr for ptr, (_, owner) in ledger.saved.items() if owner is None}
    users: Counter[int] = Counter(ptr for block in ledger.inputs for ptr in block)
    sizes = {ptr: n for block in ledger.inputs for ptr, n in block.items()}
    shared = {ptr for ptr, count in users.items() if count > 1} - outside
    terms["shared_inputs"] = sum(sizes[ptr] for ptr in shared)
    own: dict[str, list[int]] = {}
    for index, kind in enumerate(kinds):
        terms[f"saved:{kind}"] = ledger.owned(index)
        terms[f"recompute:{kind}"] = ledger.owned(index, exclude=ledger.inputs[index])
        mine = set(ledger.inputs[index]) - shared - outside
        own.setdefault(_path(kind), []).append(sum(sizes[ptr] for ptr in mine))
    for path, inputs in own.items():
        terms[f"first_input:{path}"] = inputs[0]
        terms[f"input:{path}"] = inputs[min(1, len(inputs) - 1)]
    return terms


def _path(kind: str) -> str:
    """The Transformer of a block type key "<transformer path>/<attention type>"."""
    return kind.rsplit("/", 1)[0]


def combine(terms: dict[str, float], layers: Counter[str]) -> Activations:
    """Whole-model bytes from per-type terms and the number of layers of each type. With
    checkpointing: the blocks' inputs, and during the backward one block recomputed."""
    full = terms["outside"] + sum(n * terms[f"saved:{k}"] for k, n in layers.items())
    depth: Counter[str] = Counter()
    for kind, n in layers.items():
        depth[_path(kind)] += n
    inputs = sum(terms[f"first_input:{path}"] + (n - 1) * terms[f"input:{path}"]
                 for path, n in depth.items())
    recompute = max((terms[f"recompute:{k}"] for k in layers), default=0.0)
    checkpointed = terms["outside"] + terms["shared_inputs"] + inputs + recompute
    return Activations(round(full), round(checkpointed))


def _bilinear(points: dict[tuple[int, int], float], at: tuple[int, int]) -> float:
    """The function a + b t + c w + d t w through the measured (t, w) points, at `at`; a
    dimension measured at one value is taken as constant."""
    ts, ws = sorted({t for t, _ in points}), sorted({w for _, w in points})

    def line(values: list[int], x: int) -> list[tuple[int, float]]:
        if len(values) == 1:
            return [(values[0], 1.0)]
        (x1, x2), f = values, (x - values[0]) / (values[1] - values[0])
        return [(x1, 1.0 - f), (x2, f)]

    return sum(ft * fw * points[t, w] for t, ft in line(ts, at[0]) for w, fw in line(ws, at[1]))


# --------------------------------------------------------------------------- priors
def _schedules(model: nn.Module) -> dict[str, nn.Module]:
    """The prior's Transformers by path ("transformer", "lyrics_encoder.transformer")."""
    from jukelite.prior.model import Transformer

    return {name: m for name, m in model.named_modules() if isinstance(m, Transformer)}


def _kind(path: str, block: nn.Module) -> str:
    return f"{path}/{block.attn.attn_type.name}"


def prior_layers(model: nn.Module) -> Counter[str]:
    """Layers of the whole prior per block type key ("<transformer path>/<attention type>")."""
    return Counter(_kind(path, block) for path, transformer in _schedules(model).items()
                   for block in transformer.blocks)


def _whole_heads(width: int, heads: int, m_attn: float, m_mlp: float) -> bool:
    state = m_attn * width
    return state.is_integer() and state % heads == 0 and (m_mlp * width).is_integer()


def _narrow(config: Any, width: int, others: bool) -> dict[str, int] | None:
    """The sizes of `config` at `width` (`others`: the conditioner's and the lyrics encoder's
    widths scaled by the same factor), or None when some attention heads would not be whole
    or a scaled width not an integer."""
    c = config
    if not _whole_heads(width, c.heads, c.m_attn, c.m_mlp):
        return None
    sizes = {"width": width}
    if not others:
        return sizes
    if c.upsampler:
        if (c.cond_width * width) % c.width:
            return None
        sizes["cond_width"] = c.cond_width * width // c.width
    if c.lyrics == "encoder":
        lyrics = c.lyrics_width * width / c.width
        if not (lyrics.is_integer()
                and _whole_heads(int(lyrics), c.lyrics_heads, c.m_attn, c.m_mlp)):
            return None
        sizes["lyrics_width"] = int(lyrics)
    return sizes


def reduced_widths(config: Any, targets: Sequence[int] = PRIOR_WIDTHS) -> list[dict[str, int]]:
    """Two narrow shapes of `config`, as the `dataclasses.replace` sizes they change: widths
    near `targets` that keep every attention head whole, with the conditioner's and the lyrics
    encoder's widths scaled alike when they can be (else kept). The real width alone when it
    is no wider than the widest target or no two narrower shapes exist."""
    if config.width <= max(targets):
        return [{"width": config.width}]
    for others in (True, False):
        valid = [w for w in range(1, config.width) if _narrow(config, w, others)]
        picks = {max((w for w in valid if w <= t), default=valid[0] if valid else 0)
                 for t in targets} - {0}
        larger = [w for w in valid if w > max(picks, default=0)]
        if len(picks) == 1 and larger:
            picks.add(larger[0])
        if len(picks) >= 2:
            return [_narrow(config, w, others) for w in sorted(picks)[:2]]
    return [{"width": config.width}]


def reduced_contexts(config: Any, targets: Sequence[int] = PRIOR_CONTEXTS) -> list[int]:
    """Music-token counts near `targets` that an upsampler's ratio divides: the real n_ctx
    when it is no longer than the longest target."""
    ratio = config.cond_stride ** config.cond_down_t if config.upsampler else 1
    lengths = sorted({-(-n // ratio) * ratio for n in targets})
    return [config.n_ctx] if config.n_ctx <= lengths[-1] else lengths


def reduced_config(config: Any, n_ctx: int, sizes: dict[str, int]) -> Any:
    """`config` at `n_ctx` music tokens and the widths `sizes`, with a block count that divides
    the new sequence (several rows of several positions, so grid attention folds as at size)."""
    if n_ctx == config.n_ctx:
        return dataclasses.replace(config, **sizes, checkpoint_activations=False)
    prefix = config.seq_len - config.n_ctx
    blocks = next((b for b in (8, 4, 2) if (n_ctx + prefix) % b == 0 and n_ctx + prefix >= 2 * b),
                  1)
    return dataclasses.replace(config, n_ctx=n_ctx, blocks=blocks, **sizes,
                               checkpoint_activations=False)


def _covering_depth(attn_order: int, depth: int) -> int:
    """The fewest first layers of a schedule that hold every attention type it uses."""
    from jukelite.prior.attention import attention_schedule

    schedule = attention_schedule(attn_order, depth)
    return max((schedule.index(kind) + 1 for kind in set(schedule)), default=0)


def reduced_prior(config: Any, one_block_per_type: bool = True) -> nn.Module:
    """The prior of `config` on the CPU in training mode, by default with one block of each
    attention type per Transformer. Narrow models are built directly, as deep as it takes to
    reach every type; wide ones on the meta device, allocating only the blocks kept, with
    constant weights (what a forward saves does not depend on their values)."""
    from jukelite.prior.model import LevelPrior

    if one_block_per_type:
        config = dataclasses.replace(
            config, depth=_covering_depth(config.attn_order, config.depth),
            lyrics_depth=_covering_depth(config.lyrics_attn_order, config.lyrics_depth))
    narrow = config.width <= 4 * max(PRIOR_WIDTHS)
    with torch.random.fork_rng(devices=[]), torch.device("cpu" if narrow else "meta"):
        torch.manual_seed(0)
        model = LevelPrior(config)
    if one_block_per_type:
        for transformer in _schedules(model).values():
            seen: dict[Any, nn.Module] = {}
            for block in transformer.blocks:
                seen.setdefault(block.attn.attn_type, block)
            transformer.blocks = nn.ModuleList(seen.values())
    if not narrow:
        model.to_empty(device="cpu")
        with torch.no_grad():
            for p in model.parameters():
                p.fill_(0.02)
            for b in model.buffers():
                b.zero_()
    return model.train()


def prior_batch(config: Any, generator: torch.Generator) -> dict[str, Tensor | None]:
    """One random training window for `config`'s conditioning (micro-batch 1)."""
    from jukelite.data.labels import GENRE_PAD, label_vector

    batch: dict[str, Tensor | None] = {
        "codes": torch.randint(config.bins, (1, config.n_ctx), generator=generator),
        "y": None, "upper": None, "lyrics": None}
    if config.labels:
        total = int((config.min_duration + config.max_duration) / 2 * config.sample_rate)
        genres = [0] + [GENRE_PAD] * (config.max_bow_genre_size - 1)
        batch["y"] = label_vector(total, 0, max(total // 2, 1), 0, genres)[None]
    if config.upsampler:
        ratio = config.cond_stride ** config.cond_down_t
        batch["upper"] = torch.randint(config.bins, (1, config.n_ctx // ratio),
                                       generator=generator)
    if config.lyrics != "none":
        batch["lyrics"] = torch.randint(config.n_vocab, (1, config.n_tokens), generator=generator)
    return batch


def prior_blocks(model: nn.Module) -> tuple[list[nn.Module], list[str]]:
    """The prior's blocks in forward order, and their type keys."""
    from jukelite.prior.model import Block

    blocks = [m for m in model.modules() if isinstance(m, Block)]
    kinds = {id(b): _kind(path, b) for path, t in _schedules(model).items() for b in t.blocks}
    return blocks, [kinds[id(b)] for b in blocks]


def measure_prior(model: nn.Module, config: Any, bf16: bool, fsdp: bool) -> SavedTensorLedger:
    """One training step's forward + backward of a prior built from `config`."""
    batch = prior_batch(config, torch.Generator().manual_seed(0))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # a parallel decoder draws its training mask
        return measure(model, prior_blocks(model)[0], lambda m: m(**batch).loss, bf16, fsdp)


def prior_activations(config: Any, layers: Counter[str], bf16: bool,
                      contexts: Sequence[int] = PRIOR_CONTEXTS,
                      widths: Sequence[int] = PRIOR_WIDTHS) -> dict[str, Activations]:
    """Activation bytes per sample of the prior of `config` with `layers` layers per type, for
    DDP and FSDP: one block per type measured at short contexts and narrow widths (see
    `reduced_contexts`, `reduced_widths`), every term extrapolated to the real context and
    width with a + b n_ctx + c width + d n_ctx width: every saved tensor's size is the product
    of one or none of the context and a width (the model's, or the conditioner's or lyrics
    encoder's, scaled alike) with sizes that do not change (heads, vocabularies, lyrics)."""
    key = ("prior", repr(config), tuple(sorted(layers.items())), bf16, tuple(contexts),
           tuple(widths))
    if key not in _MEASURED:
        _MEASURED[key] = _measure_prior_activations(config, layers, bf16, contexts, widths)
    return _MEASURED[key]


# Measurements already made in this process, by what they depend on: they are deterministic and
# cost seconds, and one command (or test session) may plan the same recipe several times.
_MEASURED: dict[tuple, Any] = {}


def _measure_prior_activations(config: Any, layers: Counter[str], bf16: bool,
                               contexts: Sequence[int], widths: Sequence[int]
                               ) -> dict[str, Activations]:
    points: dict[str, dict[tuple[int, int], dict[str, float]]] = {"ddp": {}, "fsdp": {}}
    for n_ctx in reduced_contexts(config, contexts):
        for sizes in reduced_widths(config, widths):
            small = reduced_config(config, n_ctx, sizes)
            width = sizes["width"]
            model = reduced_prior(small)
            kinds = prior_blocks(model)[1]
            ledger = measure_prior(model, small, bf16, fsdp=False)
            points["ddp"][n_ctx, width] = layer_terms(ledger, kinds)
            if bf16:  # FSDP2 computes with bf16 weights and casts each block's inputs
                ledger = measure_prior(model.to(torch.bfloat16), small, bf16, fsdp=True)
            points["fsdp"][n_ctx, width] = layer_terms(ledger, kinds)
            del model, ledger
    result = {}
    for mode, measured in points.items():
        keys = next(iter(measured.values()))
        terms = {k: _bilinear({at: m[k] for at, m in measured.items()},
                              (config.n_ctx, config.width)) for k in keys}
        result[mode] = combine(terms, layers)
    return result


# --------------------------------------------------------------------------- VQ-VAE
def vqvae_lengths(config: Any, levels: list[int], sample_length: int) -> list[int]:
    """Two short window lengths (whole codes of every level, room for the longest STFT window
    and the linf top-k), or `sample_length` when it is short itself."""
    hop = max(config.hop_length(level) for level in levels)
    longest_window = max([*config.stft_n_fft, *config.stft_window], default=0)
    base = -(-max(4 * hop, 2 * longest_window, config.linf_k) // hop) * hop
    return [sample_length] if sample_length <= 2 * base else [base, 2 * base]


def vqvae_activations(config: Any, levels: list[int], channels: int, sample_length: int,
                      bf16: bool) -> Activations:
    """Activation bytes per sample of a VQ-VAE (the levels trained together): measured whole at
    two short lengths and extrapolated linearly to `sample_length` (measured at it when it is
    short). No checkpointing option."""
    key = ("vqvae", repr(config), tuple(levels), channels, sample_length, bf16)
    if key not in _MEASURED:
        _MEASURED[key] = _measure_vqvae_activations(config, levels, channels, sample_length,
                                                    bf16)
    return _MEASURED[key]


def _measure_vqvae_activations(config: Any, levels: list[int], channels: int,
                               sample_length: int, bf16: bool) -> Activations:
    from jukelite.vqvae.model import VQVAE

    lengths = vqvae_lengths(config, levels, sample_length)
    generator = torch.Generator().manual_seed(0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = VQVAE(config, levels).train()
        points = {}
        for length in lengths:
            audio = torch.randn(1, channels, length, generator=generator) * 0.3

            def step(vqvae: nn.Module, audio: Tensor = audio) -> Tensor:
                return vqvae(audio)[1]

            points[length, 0] = measure(model, [], step, bf16, fsdp=False).owned(None)
    return Activations(round(_bilinear(points, (sample_length, 0))), None)


# --------------------------------------------------------------------------- plans
@dataclass
class Profile:
    """Everything about a recipe's model that does not depend on the devices: its tensors, its
    activations per sample in each mode, and the training settings the plan reads."""

    kind: str
    tensors: ModelTensors
    activations: dict[str, Activations]  # by mode
    batch_size: int
    bf16: bool
    ema: bool
    parallel: str  # the recipe's train.parallel
    checkpointing: bool | None  # the recipe's model.checkpoint_activations (None: no option)
    notes: list[str] = field(default_factory=list)


@dataclass
class ModePlan:
    """One parallel mode's bytes per device and verdicts, with and without checkpointing."""

    lines: dict[str, int]
    activations: dict[str, int]  # "checkpointed" / "full": per micro-batch
    per_sample: dict[str, int]
    peaks: dict[str, int]
    fits: dict[str, bool]
    max_batch: dict[str, int]  # the largest micro-batch that fits (0: none)


@dataclass
class MemoryPlan:
    """Per-device memory of a recipe on `world_size` devices of `gpu_memory_gib` each."""

    kind: str
    world_size: int
    gpu_memory_gib: float
    batch_size: int
    bf16: bool
    parallel: str
    checkpointing: bool | None
    trainable: int
    modes: dict[str, ModePlan]
    notes: list[str]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def profile_prior(model: nn.Module, config: Any, train: Any) -> Profile:
    """`model`: the prior built on the meta device (its tensors); `config`: what it was built
    from; `train`: the recipe's train section."""
    bf16 = train.precision != "fp32"
    layers = prior_layers(model)
    activations = prior_activations(config, layers, bf16)
    contexts = "/".join(str(n) for n in reduced_contexts(config))
    widths = "/".join(str(w["width"]) for w in reduced_widths(config))
    note = (f"activations: measured on the CPU at n_ctx {contexts} x width {widths} with one "
            f"block per attention type, extrapolated to n_ctx {config.n_ctx}, width "
            f"{config.width}, {sum(layers.values())} blocks")
    return Profile("prior", ModelTensors.of(model), activations, train.batch_size, bf16,
                   bool(train.ema_decay), train.parallel, config.checkpoint_activations, [note])


def profile_vqvae(model: nn.Module, recipe: Any) -> Profile:
    """`model`: the recipe's VQ-VAE on the meta device. FSDP is not planned: the recipe check
    refuses it for a VQ-VAE (no Transformer blocks to shard, a few million weights)."""
    train, data = recipe.train, recipe.data
    bf16 = train.precision != "fp32"
    acts = vqvae_activations(recipe.model, recipe.levels(), data.channels, data.sample_length,
                             bf16)
    lengths = "/".join(str(n) for n in vqvae_lengths(recipe.model, recipe.levels(),
                                                      data.sample_length))
    notes = [f"activations: measured on the CPU at {lengths} samples, extrapolated to "
             f"data.sample_length {data.sample_length}",
             "fsdp: not planned for a VQ-VAE (train.parallel: fsdp is for priors)"]
    return Profile("vqvae", ModelTensors.of(model), {"ddp": acts}, train.batch_size, bf16,
                   bool(train.ema_decay), "ddp", None, notes)


def plan(profile: Profile, world_size: int = 1, gpu_memory_gib: float = 80.0) -> MemoryPlan:
    """The per-device plan of `profile` on `world_size` devices of `gpu_memory_gib` GiB."""
    if world_size < 1:
        raise ValueError(f"world size must be >= 1, got {world_size}")
    if not gpu_memory_gib > 0:
        raise ValueError(f"GPU memory must be > 0 GiB, got {gpu_memory_gib}")
    budget = gpu_memory_gib * GIB
    reserve = round(RESERVE_GIB * GIB)
    modes = {}
    for mode, acts in profile.activations.items():
        lines = static_bytes(profile.tensors, mode, world_size, profile.bf16, profile.ema)
        lines["reserve"] = reserve
        held = sum(v for k, v in lines.items() if k not in ("optimizer_step", "ema_swap",
                                                             "reserve"))
        base = {k: lines[k] for k in ("weights", "gradients", "optimizer", "ema", "buffers")}
        persistent = sum(base.values()) + lines.get("ddp_buckets", 0)
        other = persistent + max(lines["optimizer_step"], lines["ema_swap"])
        per_sample = {} if acts.checkpointed is None else {"checkpointed": acts.checkpointed}
        per_sample["full"] = acts.full
        activations = {k: v * profile.batch_size for k, v in per_sample.items()}
        peaks = {k: max(held + v, other) + reserve for k, v in activations.items()}
        fits = {k: v <= budget for k, v in peaks.items()}
        max_batch = {}
        for k, v in per_sample.items():
            room = budget - reserve - held
            ok = other + reserve <= budget and room >= v
            max_batch[k] = int(room // v) if ok and v > 0 else 0
        modes[mode] = ModePlan(lines, activations, per_sample, peaks, fits, max_batch)
    return MemoryPlan(profile.kind, world_size, gpu_memory_gib, profile.batch_size, profile.bf16,
                      profile.parallel, profile.checkpointing, profile.tensors.numel, modes,
                      list(profile.notes))


# --------------------------------------------------------------------------- output
LINE_LABELS = {
    "weights": "weights (fp32 masters)",
    "gradients": "gradients (fp32)",
    "optimizer": "AdamW moments (2 x fp32)",
    "ema": "EMA weights (fp32)",
    "buffers": "buffers",
    "ddp_buckets": "DDP gradient buckets",
    "weight_copies": "autocast bf16 weight copies",
    "gathered": "FSDP gathered weights + gradients",
    "act:checkpointed": "activations, checkpointed",
    "act:full": "activations, not checkpointed",
    "optimizer_step": "optimizer step scratch",
    "ema_swap": "EMA swap-in copy at evaluation",
    "reserve": "CUDA/NCCL runtime reserve",
}
CASES = {"checkpointed": "checkpointed", "full": "not checkpointed"}


MIB = 1 << 20


def verdict(modes: ModePlan, case: str, gpu_memory_gib: float) -> str:
    """`63.1 GiB, fits (micro-batch <= 3)` or `... does not fit in 80 GiB`."""
    peak = f"{modes.peaks[case] / GIB:.1f} GiB"
    if not modes.fits[case]:
        return f"{peak}, does not fit in {gpu_memory_gib:g} GiB"
    return f"{peak}, fits (micro-batch <= {modes.max_batch[case]})"


def format_plan(p: MemoryPlan) -> str:
    """The readable table `jukelite train RECIPE --dry-run` prints."""
    precision = "bf16 autocast (as on CUDA)" if p.bf16 else "fp32"
    checkpoint = {None: "", True: ", model.checkpoint_activations=true",
                  False: ", model.checkpoint_activations=false"}[p.checkpointing]
    rows: dict[str, list[int | None]] = {}
    for key in LINE_LABELS:
        act = key[4:] if key.startswith("act:") else None
        values = [plan.activations.get(act) if act else plan.lines.get(key)
                  for plan in p.modes.values()]
        if any(v is not None for v in values):
            rows[key] = values
    largest = max((v for k, vs in rows.items() if k != "reserve" for v in vs if v), default=0)
    unit, size = next((u, n) for u, n in (("GiB", GIB), ("MiB", MIB), ("KiB", 1024))
                      if largest >= n or u == "KiB")
    out = [f"memory per device, {unit}: {p.world_size} device{'s' * (p.world_size > 1)} of "
           f"{p.gpu_memory_gib:g} GiB, micro-batch {p.batch_size} (train.batch_size), "
           f"{precision}; the recipe: train.parallel={p.parallel}{checkpoint}"]
    out.append(f"  {'':36}" + "".join(f"{m:>10}" for m in p.modes))
    for key, values in rows.items():
        cells = "".join(f"{'-' if v is None else f'{v / size:.2f}':>10}" for v in values)
        out.append(f"  {LINE_LABELS[key]:36}{cells}")
    for mode, plan in p.modes.items():
        for case in plan.peaks:
            chosen = mode == p.parallel and (p.checkpointing is None
                                             or p.checkpointing == (case == "checkpointed"))
            out.append(f"{mode}, {CASES[case]}: {verdict(plan, case, p.gpu_memory_gib)}"
                       + ("  <- the recipe's" if chosen else ""))
    out += [f"note: {n}" for n in p.notes]
    return "\n".join(out)


def _cell(plan: ModePlan | None, case: str) -> str:
    if plan is None or case not in plan.peaks:
        return "n/a"
    peak = f"{plan.peaks[case] / GIB:.1f}"
    return f"{peak} ✓ (≤{plan.max_batch[case]})" if plan.fits[case] else f"{peak} ✗"


def markdown_rows(name: str, plans: Sequence[MemoryPlan]) -> list[str]:
    """Table rows: peak GiB per device, ✓ with the largest micro-batch that fits, or ✗."""
    rows = []
    for p in plans:
        cells = [_cell(p.modes.get(m), c) for m in MODES for c in CASES]
        count = (f"{p.trainable / 1e9:.2f} B" if p.trainable >= 1e8 else
                 f"{p.trainable / 1e6:.2f} M" if p.trainable >= 1e5 else f"{p.trainable:,}")
        rows.append(f"| {name} | {count} | {p.world_size} | "
                    + " | ".join(cells) + " |")
    return rows


MARKDOWN_HEADER = [
    "| recipe | parameters | devices | DDP, checkpointed | DDP, not checkpointed "
    "| FSDP, checkpointed | FSDP, not checkpointed |",
    "|---|---|---|---|---|---|---|",
]


def dry_run_prior_config(recipe: Any) -> tuple[Any, list[str]]:
    """The prior config a dry run builds (and plans the memory of), and notes on where its
    sizes come from.

    Sizes that training reads from the bundle or the data are taken from the bundle when it
    exists; otherwise the recipe's values stand, and vocabularies sized from the data count 1.
    """
    config = recipe.model
    notes = []
    if recipe.train.init_from:
        from jukelite.bundle import Bundle

        config = Bundle.open(recipe.train.init_from).prior_configs.get(recipe.level, config)
        notes.append(f"the model is the level {recipe.level} prior of {recipe.train.init_from}")
    values: dict[str, Any] = {"level": recipe.level}
    bundle = Path(recipe.output.bundle)
    if (bundle / "jukelite.json").is_file():
        from jukelite.bundle import read_manifest

        entry = read_manifest(bundle)["vqvae"].get(str(recipe.level))
        if entry is not None:
            values["bins"] = entry["config"]["codebook_size"]
    if config.labels:
        for key in ("artist_bins", "genre_bins"):
            if not getattr(config, key):
                values[key] = 1
                notes.append(f"model.{key} is sized from the manifest at training time")
    return dataclasses.replace(config, **values), notes


def profile_recipe(recipe: Any) -> Profile:
    """The profile of the model a recipe trains (sizes resolved as `--dry-run` resolves them)."""
    from jukelite.recipes import PriorRecipe, VQVAERecipe

    if isinstance(recipe, PriorRecipe):
        from jukelite.prior.model import LevelPrior

        config, _notes = dry_run_prior_config(recipe)
        with torch.device("meta"):
            model = LevelPrior(config)
        return profile_prior(model, config, recipe.train)
    if isinstance(recipe, VQVAERecipe):
        from jukelite.vqvae.model import VQVAE

        with torch.device("meta"):
            model = VQVAE(recipe.model, recipe.levels())
        return profile_vqvae(model, recipe)
    raise ValueError(f"no memory plan for recipe kind {getattr(recipe, 'kind', '?')!r}")


def main(argv: Sequence[str] | None = None) -> int:
    """Print the README table (or each plan) for recipes at several world sizes."""

    from jukelite.recipes import load_recipe

    parser = argparse.ArgumentParser(prog="python -m jukelite.train.memory_plan",
                                     description=main.__doc__)
    parser.add_argument("recipes", nargs="+")
    parser.add_argument("--world-sizes", default="8,64,512")
    parser.add_argument("--gpu-memory", type=float, default=80.0, help="GiB per device")
    parser.add_argument("--markdown", action="store_true", help="one table row per world size")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.world_sizes.split(",")]
    if args.markdown:
        print("\n".join(MARKDOWN_HEADER))
    for path in args.recipes:
        profile = profile_recipe(load_recipe(path, []))
        plans = [plan(profile, n, args.gpu_memory) for n in sizes]
        if args.markdown:
            print("\n".join(markdown_rows(f"`{Path(path).stem}`", plans)))
        else:
            for p in plans:
                print(f"{path}\n{format_plan(p)}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
