"""Jukebox state-dict names -> jukelite's, and the checks that prove a checkpoint fits a config.

The tensors correspond one to one; only names and three layouts differ: Jukebox's `Conv1D.w` is
stored (in, out), transposed against `nn.Linear.weight`; its start tokens are (1, W) where ours
are (1, 1, W); a tied output head is stored twice by Jukebox and once here. A residual stack
built with `checkpoint_res=1` (the released upsampler conditioners) is named `.blocks.` instead
of `.model.`.

Before any tensor is converted, the checkpoint's shapes are compared with the model the hparams
describe: first the sizes the tensors reveal (width, depth, vocabularies, context, codebook), one
line per hparam that disagrees; then every key, listing all unmapped, missing and mis-shaped ones.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch

from jukelite.convert import ConvertError

# (pattern, replacement, layout) in order; the first match wins. Layouts: "" as is,
# "T" Conv1D weight (in, out) -> (out, in), "start" (1, W) -> (1, 1, W), "tied" dropped.
Rule = tuple[str, str, str]

_BLOCK: list[Rule] = [
    (r"ln_([01])\.(weight|bias)", r"ln_\1.\2", ""),
    (r"(attn\.c_attn|attn\.c_proj|attn\.c_enc_kv|mlp\.c_fc|mlp\.c_proj)\.w", r"\1.weight", "T"),
    (r"(attn\.c_attn|attn\.c_proj|attn\.c_enc_kv|mlp\.c_fc|mlp\.c_proj)\.b", r"\1.bias", ""),
]


def _renumber(rules: list[Rule]) -> list[Rule]:
    """Shift the block rules' groups by one (the layer index is group 1)."""
    out = []
    for pattern, replacement, layout in rules:
        shifted = re.sub(r"\\(\d)", lambda m: "\\" + str(int(m.group(1)) + 1), replacement)
        out.append((pattern, shifted, layout))
    return out


PRIOR_RULES: list[Rule] = [
    (r"prior\.x_emb\.weight", "embedding.x_emb.weight", ""),
    (r"prior\.pos_emb\.pos_emb", "embedding.pos_emb", ""),
    (r"prior\.start_token", "start_token", "start"),
    (r"prior\.x_out\.weight", "x_out.weight", ""),
    *[(rf"prior\.transformer\._attn_mods\.(\d+)\.{p}", rf"transformer.blocks.\1.{r}", layout)
      for p, r, layout in _renumber(_BLOCK)],
    (r"y_emb\.(artist_emb|bow_genre_emb)\.emb\.weight", r"y_emb.\1.weight", ""),
    (r"y_emb\.(total_length_emb|absolute_pos_emb|relative_pos_emb)\.emb\.weight",
     r"y_emb.\1.emb.weight", ""),
    (r"conditioner_blocks\.0\.(x_emb|ln)\.(weight|bias)", r"conditioner.\1.\2", ""),
    (r"conditioner_blocks\.0\.cond\.(.+)", r"conditioner.cond.\1", ""),
    (r"prime_prior\.x_emb\.weight", "lyrics_encoder.embedding.x_emb.weight", ""),
    (r"prime_prior\.pos_emb\.pos_emb", "lyrics_encoder.embedding.pos_emb", ""),
    (r"prime_prior\.start_token", "lyrics_encoder.start_token", "start"),
    *[(rf"prime_prior\.transformer\._attn_mods\.(\d+)\.{p}",
       rf"lyrics_encoder.transformer.blocks.\1.{r}", layout) for p, r, layout in
      _renumber(_BLOCK)],
    (r"prime_state_proj\.w", "lyrics_encoder.proj.weight", "T"),
    (r"prime_state_proj\.b", "lyrics_encoder.proj.bias", ""),
    (r"prime_state_ln\.(weight|bias)", r"lyrics_encoder.ln.\1", ""),
    (r"prime_x_out\.weight", "lyrics_encoder.x_out.weight", ""),
]


def vqvae_rules(level: int) -> list[Rule]:
    """One level's autoencoder and codebook out of Jukebox's all-levels VQ-VAE."""
    return [
        (rf"encoders\.{level}\.(.+)", r"encoder.\1", ""),
        (rf"decoders\.{level}\.(.+)", r"decoder.\1", ""),
        (rf"bottleneck\.level_blocks\.{level}\.k", "quantizer.codebook", ""),
    ]


def _jukelite_name(key: str, rules: list[Rule]) -> tuple[str, str] | None:
    for pattern, replacement, layout in rules:
        match = re.fullmatch(pattern, key)
        if match:
            name = match.expand(replacement)
            # a residual stack built with checkpoint_res=1 is `.blocks.` in Jukebox
            if not name.startswith(("transformer.", "lyrics_encoder.transformer.")):
                name = name.replace(".blocks.", ".model.")
            return name, layout
    return None


def jukebox_shape(shape: tuple[int, ...], layout: str) -> tuple[int, ...]:
    """A jukelite tensor shape in Jukebox's layout (for messages and meta-device checks)."""
    if layout == "T":
        return tuple(reversed(shape))
    if layout == "start":
        return tuple(shape[1:])
    return tuple(shape)


def to_jukelite(tensor: torch.Tensor, layout: str) -> torch.Tensor:
    if layout == "T":
        return tensor.t().contiguous()
    if layout == "start":
        return tensor.reshape(1, *tensor.shape)
    return tensor


@dataclass
class KeyMap:
    """How each Jukebox key of one component becomes a jukelite key."""

    names: dict[str, tuple[str, str]]  # jukebox key -> (jukelite key, layout)
    skipped: list[str]  # jukebox keys that carry nothing new (a tied head's second copy)


class MappingError(ConvertError):
    """A checkpoint that does not fit the model its hparams describe; lists every problem."""


def map_keys(
    source: dict[str, tuple[int, ...]],
    expected: dict[str, tuple[int, ...]],
    rules: list[Rule],
    what: str,
    filled: Iterable[str] = (),
    tied_head: bool = False,
) -> KeyMap:
    """Map `source` (Jukebox key -> shape) onto `expected` (jukelite key -> shape), or raise a
    `MappingError` listing every unmapped key, missing key and wrong shape. `filled` names the
    jukelite tensors with no Jukebox counterpart, which the importer makes itself."""
    filled = set(filled)
    names, skipped, unmapped, shapes = {}, [], [], []
    for key, shape in source.items():
        mapped = _jukelite_name(key, rules)
        if mapped is None:
            unmapped.append(key)
            continue
        name, layout = mapped
        if tied_head and name == "x_out.weight":
            skipped.append(key)
            continue
        if name not in expected:
            unmapped.append(key)
            continue
        want = jukebox_shape(expected[name], layout)
        if tuple(shape) != want:
            shapes.append(f"{key}: expected {want}, found {tuple(shape)}")
        names[key] = (name, layout)
    produced = {name for name, _ in names.values()}
    missing = sorted(k for k in expected if k not in produced and k not in filled)
    problems = []
    if shapes:
        problems.append(f"{len(shapes)} tensor(s) of the wrong shape:\n  " + "\n  ".join(shapes))
    if unmapped:
        problems.append(f"{len(unmapped)} key(s) the hparams' model has no place for:\n  "
                        + "\n  ".join(sorted(unmapped)))
    if missing:
        problems.append(f"{len(missing)} tensor(s) the hparams' model needs but the checkpoint "
                        "lacks (jukelite names):\n  " + "\n  ".join(missing))
    if problems:
        raise MappingError(f"{what}: " + "\n".join(problems))
    return KeyMap(names, skipped)


# ---------------------------------------------------------------------- sizes the tensors reveal
Reveal = Callable[[dict[str, tuple[int, ...]]], "tuple[object, str] | None"]


def _dim(key: str, axis: int) -> Reveal:
    def reveal(shapes: dict[str, tuple[int, ...]]):
        return (shapes[key][axis], key) if key in shapes else None
    return reveal


def _count(prefix: str) -> Reveal:
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")

    def reveal(shapes: dict[str, tuple[int, ...]]):
        found = {int(m.group(1)) for k in shapes if (m := pattern.match(k))}
        return (max(found) + 1, prefix + "N") if found else None
    return reveal


def _y_bins(shapes: dict[str, tuple[int, ...]]):
    genre, artist = "y_emb.bow_genre_emb.emb.weight", "y_emb.artist_emb.emb.weight"
    if genre in shapes and artist in shapes:
        return (shapes[genre][0], shapes[artist][0]), f"{genre}, {artist}"
    return None


PRIOR_REVEALS: dict[str, Reveal] = {
    "prior_width": _dim("prior.x_emb.weight", 1),
    "prior_depth": _count("prior.transformer._attn_mods."),
    "bins (l_bins [+ n_vocab])": _dim("prior.x_emb.weight", 0),
    "n_ctx [+ n_tokens]": _dim("prior.pos_emb.pos_emb", 0),
    "y_bins (genres, artists)": _y_bins,
    "t_bins": _dim("y_emb.total_length_emb.emb.weight", 0),
    "cond_width": _dim("conditioner_blocks.0.cond.model.0.weight", 0),
    "prime_width": _dim("prime_prior.x_emb.weight", 1),
    "prime_depth": _count("prime_prior.transformer._attn_mods."),
    "n_tokens": _dim("prime_prior.pos_emb.pos_emb", 0),
    "n_vocab": _dim("prime_x_out.weight", 0),
}


def prior_sizes(config) -> dict[str, object]:
    """What `PRIOR_REVEALS` should find for a prior config."""
    c = config
    sizes: dict[str, object] = {
        "prior_width": c.width, "prior_depth": c.depth, "bins (l_bins [+ n_vocab])": c.vocab,
        "n_ctx [+ n_tokens]": c.seq_len,
    }
    if c.labels:
        sizes["y_bins (genres, artists)"] = (c.genre_bins, c.artist_bins)
        if c.timing:
            sizes["t_bins"] = c.t_bins
    if c.upsampler:
        sizes["cond_width"] = c.cond_width
    if c.lyrics == "encoder":
        sizes.update({"prime_width": c.lyrics_width, "prime_depth": c.lyrics_depth,
                      "n_tokens": c.n_tokens, "n_vocab": c.n_vocab})
    return sizes


def vqvae_reveals(level: int) -> dict[str, Reveal]:
    return {
        "l_bins": _dim(f"bottleneck.level_blocks.{level}.k", 0),
        "emb_width": _dim(f"bottleneck.level_blocks.{level}.k", 1),
        f"width of level {level} (width x hvqvae_multipliers)":
            _dim(f"encoders.{level}.level_blocks.0.model.0.0.weight", 0),
        "levels": _count("encoders."),
    }


def vqvae_sizes(config, level: int) -> dict[str, object]:
    return {"l_bins": config.codebook_size, "emb_width": config.code_dim,
            f"width of level {level} (width x hvqvae_multipliers)": config.width[level],
            "levels": config.levels}


def check_revealed(
    shapes: dict[str, tuple[int, ...]], reveals: dict[str, Reveal], sizes: dict[str, object],
    what: str,
) -> None:
    """One line per hparam whose value the tensors contradict (or reveal where none is set)."""
    lines = []
    for name, reveal in reveals.items():
        found = reveal(shapes)
        want = sizes.get(name)
        if found is None and want is None:
            continue
        if found is None:
            lines.append(f"{name}: the hparams say {want}, the checkpoint has no such tensors")
        elif want is None:
            lines.append(f"{name}: the checkpoint has {found[0]} ({found[1]}), the hparams "
                         "describe a model without it")
        elif found[0] != want:
            lines.append(f"{name}: the hparams say {want}, the checkpoint has {found[0]} "
                         f"({found[1]})")
    if lines:
        raise MappingError(f"{what} does not match its hparams (fix --preset/--hps):\n  "
                           + "\n  ".join(lines))
