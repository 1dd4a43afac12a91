"""Run OpenAI Jukebox's own code on the CPU as the reference for jukelite's importer.

Jukebox is imported from the export named by the environment variable JUKEBOX_SRC (a checkout
of github.com/openai/jukebox: the folder that holds the `jukebox` package). It was written for
CUDA, apex and MPI; the CPU shims it needs all live here, one line each below. They change
Jukebox's own modules only, except the import blockers (only while Jukebox imports) and the
`.cuda()` and stdout ones (only inside `cpu_shims()`):

- `apex`, `mpi4py`: blocked in sys.modules while Jukebox imports (ops.py falls back to torch's
  LayerNorm; MPI is only imported by functions never called here); restored afterwards.
- `t.cuda.LongTensor` / `FloatTensor` isinstance asserts: each Jukebox module's `torch`/`t`
  global is a proxy whose `cuda.LongTensor` accepts any tensor of that dtype (CPU included).
- `device='cuda'` in factories (RangeEmbedding's `t.arange`, prior_preprocess' `t.zeros`, the
  Labeller's `t.tensor`): the same proxy maps the device to CPU.
- `dist_adapter.is_available`: False in Jukebox's adapter, so rank 0 / world size 1 without a
  process group.
- `Tensor.cuda()` / `Module.cuda()` (bottleneck codebook init, lyric encoder moves): identity,
  only inside `cpu_shims()`.
- Jukebox's progress prints go to a buffer inside `cpu_shims()` (stdout stays readable).

Every public function here enters `cpu_shims()` itself. Nothing outside tests/parity imports
this module or Jukebox.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import math
import os
import sys
import types
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

ENV_VAR = "JUKEBOX_SRC"
CHECKPOINT_STEP = 123

# Jukebox modules the reference uses; imported eagerly so that every one is proxied.
_MODULES = (
    "jukebox.hparams",
    "jukebox.utils.dist_adapter",
    "jukebox.utils.dist_utils",
    "jukebox.utils.torch_utils",
    "jukebox.utils.checkpoint",
    "jukebox.transformer.ops",
    "jukebox.transformer.factored_attention",
    "jukebox.transformer.transformer",
    "jukebox.vqvae.resnet",
    "jukebox.vqvae.encdec",
    "jukebox.vqvae.bottleneck",
    "jukebox.vqvae.vqvae",
    "jukebox.prior.autoregressive",
    "jukebox.prior.conditioners",
    "jukebox.prior.prior",
    "jukebox.data.text_processor",
    "jukebox.data.artist_genre_processor",
    "jukebox.data.labels",
    "jukebox.make_models",
)
_FACTORIES = frozenset(
    {"arange", "zeros", "ones", "empty", "full", "tensor", "as_tensor", "randn", "rand",
     "randint", "zeros_like", "ones_like", "empty_like", "randn_like"}
)


def jukebox_src() -> Path | None:
    """The Jukebox export named by JUKEBOX_SRC, or None when unset or not an export."""
    value = os.environ.get(ENV_VAR)
    if not value:
        return None
    path = Path(value).expanduser()
    return path if (path / "jukebox" / "hparams.py").is_file() else None


def skip_reason() -> str | None:
    """Why the parity suite cannot run here (None when it can)."""
    value = os.environ.get(ENV_VAR)
    if not value:
        return f"{ENV_VAR} is not set (point it at an export of github.com/openai/jukebox)"
    if jukebox_src() is None:
        return f"{ENV_VAR}={value} holds no jukebox/hparams.py"
    return None


# ---------------------------------------------------------------------- shims
def _cpu_device(device: Any) -> Any:
    """'cuda', 'cuda:0' or torch.device('cuda') -> 'cpu'; anything else unchanged."""
    if device is not None and str(device).startswith("cuda"):
        return "cpu"
    return device


def _factory(function: Any) -> Any:
    def cpu_factory(*args: Any, **kwargs: Any) -> Any:
        if "device" in kwargs:
            kwargs["device"] = _cpu_device(kwargs["device"])
        return function(*args, **kwargs)

    return cpu_factory


class _TensorTypeMeta(type):
    """isinstance(x, cuda.LongTensor) is true for any tensor of the type's dtype."""

    dtype: torch.dtype

    def __instancecheck__(cls, obj: object) -> bool:
        return isinstance(obj, Tensor) and obj.dtype == cls.dtype


class _CpuLongTensor(metaclass=_TensorTypeMeta):
    dtype = torch.long


class _CpuFloatTensor(metaclass=_TensorTypeMeta):
    dtype = torch.float32


class _CudaProxy(types.ModuleType):
    """torch.cuda as Jukebox sees it: CPU tensor types, no-op cache flushes."""

    LongTensor = _CpuLongTensor
    FloatTensor = _CpuFloatTensor

    def __init__(self) -> None:
        super().__init__("torch.cuda")

    @staticmethod
    def empty_cache() -> None:
        return None

    @staticmethod
    def is_available() -> bool:
        return False

    def __getattr__(self, name: str) -> Any:
        return getattr(torch.cuda, name)


class _TorchProxy(types.ModuleType):
    """torch as Jukebox's modules see it: factories made on the CPU, CPU `cuda` tensor types."""

    def __init__(self) -> None:
        super().__init__("torch")
        self.cuda = _CudaProxy()

    def __getattr__(self, name: str) -> Any:
        value = getattr(torch, name)
        return _factory(value) if name in _FACTORIES else value


_PROXY = _TorchProxy()
_IMPORTED: dict[str, types.ModuleType] = {}


def _identity(self: Any, *args: Any, **kwargs: Any) -> Any:
    return self


@contextlib.contextmanager
def cpu_shims(quiet: bool = True) -> Iterator[None]:
    """Run Jukebox code on the CPU: `.cuda()` is the identity and Jukebox's prints are captured
    while inside; everything is restored on exit."""
    saved = (torch.Tensor.cuda, nn.Module.cuda)
    torch.Tensor.cuda = _identity  # type: ignore[method-assign]
    nn.Module.cuda = _identity  # type: ignore[method-assign]
    try:
        with contextlib.redirect_stdout(io.StringIO()) if quiet else contextlib.nullcontext():
            yield
    finally:
        torch.Tensor.cuda, nn.Module.cuda = saved  # type: ignore[method-assign]


def jukebox_modules() -> types.SimpleNamespace:
    """Jukebox's modules, imported once from JUKEBOX_SRC with the CPU shims in place:
    `hparams`, `make_models`, `vqvae`, `prior`, `ops`, `labels`, ..."""
    if not _IMPORTED:
        src = jukebox_src()
        if src is None:
            raise RuntimeError(skip_reason())
        blocked = {name: sys.modules.get(name, _MISSING) for name in ("apex", "mpi4py")}
        sys.path.insert(0, str(src))
        try:
            for name in blocked:
                sys.modules[name] = None  # type: ignore[assignment]  # import raises ImportError
            with cpu_shims(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Python 3.12 / torch 2 notes on 2020 code
                for name in _MODULES:
                    _IMPORTED[name] = importlib.import_module(name)
        finally:
            sys.path.remove(str(src))
            for name, module in blocked.items():
                if module is _MISSING:
                    sys.modules.pop(name, None)
                else:
                    sys.modules[name] = module
        _IMPORTED["jukebox.utils.dist_adapter"].is_available = lambda: False
        for name, module in sys.modules.items():
            if name == "jukebox" or name.startswith("jukebox."):
                for attr, value in list(vars(module).items()):
                    if value is torch:
                        setattr(module, attr, _PROXY)
    m = _IMPORTED
    return types.SimpleNamespace(
        hparams=m["jukebox.hparams"], make_models=m["jukebox.make_models"],
        vqvae=m["jukebox.vqvae.vqvae"], prior=m["jukebox.prior.prior"],
        ops=m["jukebox.transformer.ops"], labels=m["jukebox.data.labels"],
        transformer=m["jukebox.transformer.transformer"],
        attention=m["jukebox.transformer.factored_attention"],
    )


_MISSING = object()


# ---------------------------------------------------------------------- models
def make_hps(presets: str, **overrides: Any) -> Any:
    """Jukebox's `setup_hparams(presets, overrides)` for evaluation: nothing restored, train
    False, CPU-sized via `overrides` (Jukebox hparam names)."""
    jb = jukebox_modules()
    values = {"restore_vqvae": "", "restore_prior": "", "train": False, **overrides}
    with cpu_shims():
        return jb.hparams.setup_hparams(presets, values)


def build_vqvae(hps: Any, checkpoint: str | Path | None = None) -> nn.Module:
    """Jukebox's VQVAE via `make_vqvae` on the CPU, restored from `checkpoint` by Jukebox's own
    loader when given (else default-initialised: all-zero codebooks)."""
    jb = jukebox_modules()
    hps = jb.hparams.Hyperparams({**hps, "restore_vqvae": str(checkpoint or "")})
    with cpu_shims():
        return jb.make_models.make_vqvae(hps, device="cpu")


def build_prior(hps: Any, vqvae: nn.Module, checkpoint: str | Path | None = None) -> nn.Module:
    """Jukebox's SimplePrior via `make_prior` on the CPU (Conv1D weights in float16 when
    hps.fp16_params, as Jukebox does), restored from `checkpoint` by Jukebox's own loader."""
    jb = jukebox_modules()
    hps = jb.hparams.Hyperparams({**hps, "restore_prior": str(checkpoint or "")})
    with cpu_shims():
        return jb.make_models.make_prior(hps, vqvae, device="cpu")


def _fan_in(module: nn.Module, name: str, shape: torch.Size) -> int:
    """Inputs summed into one output of the weight `name` of `module`."""
    if isinstance(module, nn.ConvTranspose1d):  # (in, out, k), stride s: in * k / s taps
        return max(1, shape[0] * shape[2] // module.stride[0])
    if isinstance(module, nn.Conv1d):
        return shape[1] * shape[2]
    if isinstance(module, nn.Linear):
        return shape[1]
    if name == "w":  # Jukebox's Conv1D stores (n_in, n_out)
        return shape[0]
    return 0


@torch.no_grad()
def randomise_(model: nn.Module, seed: int, gain: float = 1.0, embedding_std: float = 0.15,
               bias_std: float = 0.05) -> nn.Module:
    """Overwrite every parameter and buffer of a Jukebox model from one seeded generator.

    Weights get N(0, (gain / sqrt(fan_in))^2), the std clipped to 0.02..0.2, and the last
    projection of every residual branch (a Transformer's attn.c_proj and mlp.c_proj, a res
    block's 1x1 conv) a further 1/sqrt(depth), so activations and logits stay O(1) however
    deep; zero-initialised projections become random too. LayerNorm weights are
    1 + 0.1 N(0,1), biases N(0, bias_std^2), embeddings, position tables and start tokens
    N(0, embedding_std^2). A float16 tensor (fp16_params) receives the rounded value. VQ
    codebooks (`k` buffers) are left to `spread_codebooks_`.
    """
    generator = torch.Generator().manual_seed(seed)
    residual = {}  # residual branches' last projections: scaled by 1/sqrt(depth)
    for module in model.modules():
        blocks = getattr(module, "_attn_mods", None)  # Transformer
        for block in blocks or ():
            for projection in (block.attn.c_proj, block.mlp.c_proj):
                residual[id(projection.w)] = 1 / math.sqrt(len(blocks))
        if type(module).__name__ == "Resnet1D":  # .model or .blocks of ResConv1DBlock
            blocks = getattr(module, "blocks", None) or module.model
            for block in blocks:
                residual[id(block.model[-1].weight)] = 1 / math.sqrt(len(blocks))
    done: set[int] = set()
    for _, module in sorted(model.named_modules(), key=lambda item: item[0]):
        tensors = [*module.named_parameters(recurse=False), *module.named_buffers(recurse=False)]
        for name, tensor in tensors:
            if id(tensor) in done or name == "k":
                continue
            done.add(id(tensor))
            noise = torch.randn(tensor.shape, generator=generator, dtype=torch.float32)
            if isinstance(module, nn.LayerNorm):
                value = 1 + 0.1 * noise if name == "weight" else 0.1 * noise
            elif name in ("b", "bias"):
                value = bias_std * noise
            elif (fan_in := _fan_in(module, name, tensor.shape)) > 0:
                std = min(0.2, max(0.02, gain / math.sqrt(fan_in)))
                value = noise * std * residual.get(id(tensor), 1.0)
            else:  # embeddings, position tables, start tokens
                value = embedding_std * noise
            tensor.copy_(value.to(tensor.dtype))
    return model


@torch.no_grad()
def spread_codebooks_(vqvae: nn.Module, audio: Tensor, seed: int) -> nn.Module:
    """Random codebooks (`bottleneck.level_blocks.{L}.k`) drawn around each level's encoder
    latents of `audio` [N, T, 1] (per-dimension mean and std), so that codes are varied."""
    generator = torch.Generator().manual_seed(seed)
    with cpu_shims():
        x = vqvae.preprocess(audio)
        for encoder, block in zip(vqvae.encoders, vqvae.bottleneck.level_blocks, strict=True):
            latents = encoder(x)[-1].permute(0, 2, 1).reshape(-1, block.emb_width)
            mean, std = latents.mean(0), latents.std(0)
            noise = torch.randn(block.k.shape, generator=generator)
            block.k.copy_(mean + std * noise)
    return vqvae


def save_checkpoint(model: nn.Module, hps: Any, path: str | Path) -> Path:
    """Write a checkpoint the way the released files are: torch's legacy (non-zip) format,
    {'hps', 'model', 'opt', 'step'}; Conv1D `.w` keeps its dtype (float16 with fp16_params)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = model.state_dict()
    if hps.get("fp16_params"):
        jb = jukebox_modules()
        for name, module in model.named_modules():
            if isinstance(module, jb.ops.Conv1D):
                assert state[f"{name}.w" if name else "w"].dtype == torch.float16, name
    torch.save({"hps": dict(hps), "model": state, "opt": None, "step": CHECKPOINT_STEP}, path,
               _use_new_zipfile_serialization=False)
    return path


# ---------------------------------------------------------------------- references
@torch.no_grad()
def vqvae_reference(vqvae: nn.Module, audio: Tensor) -> tuple[list[Tensor], list[Tensor]]:
    """Jukebox's codes of every level for `audio` [N, T, 1] (`vqvae.encode`), and each level's
    decoded audio [N, T, 1] (`vqvae.decode(zs[L:], start_level=L)`), in float32."""
    with cpu_shims():
        zs = vqvae.encode(audio.float())
        decoded = [vqvae.decode(zs[level:], start_level=level) for level in range(len(zs))]
    return [z.clone() for z in zs], decoded


def label_vector(prior: nn.Module, artist: str, genre: str, lyrics: str, total_length: int,
                 offset: int) -> Tensor:
    """Jukebox's `y` [1, 4 + G + n_tokens] for a window of `prior` starting at `offset` (in
    samples), from names and raw lyrics through its Labeller (id files, text cleaning, the
    linear lyric window)."""
    with cpu_shims():
        label = prior.labeller.get_label(artist, genre, lyrics, total_length, offset)
    return torch.from_numpy(label["y"]).long()[None]


@torch.no_grad()
def prior_logits(prior: nn.Module, codes: Tensor, y: Tensor,
                 upper: Tensor | None = None) -> Tensor:
    """Jukebox's teacher-forced logits [N, seq, vocab] in float32: `z_forward(z, z_conds, y,
    get_preds=True)`, conditioning built by SimplePrior itself (labels, timing, lyric encoder
    or lyric prefix, upper-level conditioner)."""
    z_conds = [] if upper is None else [upper.long()]
    with cpu_shims():
        _, metrics = prior.z_forward(z=codes.long(), z_conds=z_conds, y=y.long(), fp16=False,
                                     get_preds=True)
    return metrics["preds"].float()


def prior_log_probs(prior: nn.Module, codes: Tensor, y: Tensor,
                    upper: Tensor | None = None) -> Tensor:
    """Per-token log-probabilities [N, n_ctx] of `codes` under Jukebox's prior (log_softmax over
    its whole output vocabulary, music positions only: after the lyric prefix of a
    single-stack prior, whose music ids are shifted by the lyric vocabulary)."""
    logits = prior_logits(prior, codes, y, upper)
    shift = 0
    if prior.single_enc_dec:
        logits = logits[:, prior.n_tokens:]
        shift = int(prior.prior_bins_shift[1])
    return logits.log_softmax(-1).gather(-1, (codes.long() + shift)[..., None])[..., 0]

