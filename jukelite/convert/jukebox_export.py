"""jukelite weights in Jukebox's checkpoint format: the importer's inverse.

It makes Jukebox-format checkpoints without Jukebox's code: for tests and benchmarks of the
importer at released sizes (random weights), and to hand a jukelite-trained model to tools that
read Jukebox files. Written rule by rule from the reference key tables, independently of
`jukebox_keys`, so a wrong rule on either side fails a round trip.
"""

from __future__ import annotations

import re

import torch

_LINEAR = re.compile(r"(.*\.(?:c_attn|c_proj|c_enc_kv|c_fc))\.(weight|bias)$")


def _block_key(prefix: str, rest: str, tensor: torch.Tensor) -> tuple[str, torch.Tensor]:
    match = _LINEAR.fullmatch(rest)
    if match:
        if match.group(2) == "weight":
            return f"{prefix}{match.group(1)}.w", tensor.t().contiguous()
        return f"{prefix}{match.group(1)}.b", tensor
    return prefix + rest, tensor


def _transformer_key(key: str, tensor: torch.Tensor, source: str, target: str
                     ) -> tuple[str, torch.Tensor] | None:
    """What the music prior and the lyrics encoder share: token and position embeddings, the
    start token and the blocks (`source`: jukelite prefix, `target`: Jukebox prefix)."""
    if key == f"{source}embedding.x_emb.weight":
        return f"{target}x_emb.weight", tensor
    if key == f"{source}embedding.pos_emb":
        return f"{target}pos_emb.pos_emb", tensor
    if key == f"{source}start_token":
        return f"{target}start_token", tensor.reshape(1, -1)
    blocks = f"{source}transformer.blocks."
    if key.startswith(blocks):
        layer, rest = key[len(blocks):].split(".", 1)
        return _block_key(f"{target}transformer._attn_mods.{layer}.", rest, tensor)
    return None


def prior_to_jukebox(state: dict[str, torch.Tensor], tied: bool) -> dict[str, torch.Tensor]:
    """A jukelite prior state dict (x_out included) as Jukebox's SimplePrior names it."""
    out: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        shared = (_transformer_key(key, tensor, "", "prior.")
                  or _transformer_key(key, tensor, "lyrics_encoder.", "prime_prior."))
        if shared is not None:
            out[shared[0]] = shared[1]
            if tied and key == "embedding.x_emb.weight":
                out["prior.x_out.weight"] = tensor  # Jukebox stores a tied head twice
        elif key == "x_out.weight":
            if not tied:
                out["prior.x_out.weight"] = tensor
        elif key in ("y_emb.artist_emb.weight", "y_emb.bow_genre_emb.weight"):
            out[key.replace(".weight", ".emb.weight")] = tensor
        elif key.startswith("y_emb."):
            out[key] = tensor
        elif key.startswith("conditioner.cond."):
            # the released conditioners were built with checkpoint_res=1: `.blocks.`
            name = re.sub(r"^conditioner\.cond\.model\.(\d+)\.0\.model\.",
                          r"conditioner_blocks.0.cond.model.\1.0.blocks.", key)
            out[name.replace("conditioner.cond.", "conditioner_blocks.0.cond.")] = tensor
        elif key.startswith("conditioner."):
            out[key.replace("conditioner.", "conditioner_blocks.0.", 1)] = tensor
        elif key == "lyrics_encoder.proj.weight":
            out["prime_state_proj.w"] = tensor.t().contiguous()
        elif key == "lyrics_encoder.proj.bias":
            out["prime_state_proj.b"] = tensor
        elif key.startswith("lyrics_encoder.ln."):
            out[key.replace("lyrics_encoder.ln.", "prime_state_ln.")] = tensor
        elif key == "lyrics_encoder.x_out.weight":
            out["prime_x_out.weight"] = tensor
        else:
            raise KeyError(f"no Jukebox name for {key}")
    return out


def vqvae_to_jukebox(levels: dict[int, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """jukelite VQ-VAE levels' state dicts as one Jukebox VQVAE state dict."""
    out: dict[str, torch.Tensor] = {}
    for level, state in levels.items():
        for key, tensor in state.items():
            if key.startswith("encoder."):
                out[f"encoders.{level}.{key[len('encoder.'):]}"] = tensor
            elif key.startswith("decoder."):
                out[f"decoders.{level}.{key[len('decoder.'):]}"] = tensor
            elif key == "quantizer.codebook":
                out[f"bottleneck.level_blocks.{level}.k"] = tensor
    return out


def save_jukebox_checkpoint(path, model: dict[str, torch.Tensor], hps: dict | None = None,
                            legacy: bool = True) -> None:
    """As Jukebox's save_checkpoint writes it (torch 1.4 wrote the legacy, non-zip format)."""
    torch.save({"hps": hps or {}, "model": model, "opt": None, "step": 7}, path,
               _use_new_zipfile_serialization=not legacy)
