"""Jukebox hyperparameters -> jukelite model configs.

A VQ-VAE's hparams give every level's `VQVAEConfig`; a prior's hparams, together with its VQ-VAE's
(codebook size, sample rate, strides of the level above), give its `PriorConfig`. Hparams that
jukelite does not implement (they are unused by every released model) are refused by name
instead of being silently ignored.
"""

from __future__ import annotations

import math
from typing import Any

from jukelite.convert.jukebox_hparams import HparamsError
from jukelite.prior.model import PriorConfig
from jukelite.vqvae.config import VQVAEConfig

# hparam -> the only value jukelite implements (anything else changes the maths).
_VQVAE_FIXED = {"use_bottleneck": True}
_PRIOR_FIXED = {
    "spread": None, "res_scale": False, "pos_init": False, "y_cond_as_bias": False,
    "copy_input": False, "cond_levels": None, "cond_m_conv": 1.0, "prime_spread": None,
    "prime_res_scale": False, "prime_pos_init": False,
}


def _check_fixed(component: str, hps: dict[str, Any], fixed: dict[str, Any]) -> None:
    bad = [f"{k}={hps[k]!r} (supported: {v!r})" for k, v in fixed.items() if hps.get(k) != v]
    if bad:
        raise HparamsError(f"{component}: jukelite does not implement " + ", ".join(bad))


def _per_level(value: Any, levels: int, name: str) -> list[int]:
    values = list(value) if isinstance(value, (list, tuple)) else [value] * levels
    if len(values) != levels:
        raise HparamsError(f"vqvae: {name}={value!r} needs {levels} entries (levels={levels})")
    return [int(v) for v in values]


def vqvae_config(hps: dict[str, Any]) -> VQVAEConfig:
    """The VQ-VAE config of Jukebox hparams (all levels; `hvqvae_multipliers` scale a level's
    width and depth, as Jukebox does)."""
    _check_fixed("vqvae", hps, _VQVAE_FIXED)
    levels = int(hps["levels"])
    multipliers = _per_level(hps["hvqvae_multipliers"] or 1, levels, "hvqvae_multipliers")
    loss = hps["loss_fn"]
    l2, linf = {"l2": (1.0, 0.0), "linf": (0.0, 1.0),
                "lmix": (hps["lmix_l2"], hps["lmix_linf"])}.get(loss, (None, None))
    if l2 is None:
        raise HparamsError(f"vqvae: loss_fn={loss!r} is not implemented (l2, linf, lmix are)")
    try:
        return VQVAEConfig(
            sample_rate=int(hps["sr"]), channels=1, levels=levels,
            downs_t=_per_level(hps["downs_t"], levels, "downs_t"),
            strides_t=_per_level(hps["strides_t"], levels, "strides_t"),
            width=[int(hps["width"]) * m for m in multipliers],
            depth=[int(hps["depth"]) * m for m in multipliers],
            m_conv=float(hps["m_conv"]), dilation_growth_rate=int(hps["dilation_growth_rate"]),
            dilation_cycle=hps["dilation_cycle"],
            reverse_decoder_dilation=bool(hps["vqvae_reverse_decoder_dilation"]),
            codebook_size=int(hps["l_bins"]), code_dim=int(hps["emb_width"]),
            ema_decay=float(hps["l_mu"]), restart_threshold=float(hps["revival_threshold"]),
            commit=float(hps["commit"]), l2_weight=float(l2), linf_weight=float(linf),
            linf_k=int(hps["linf_k"]), multispectral_weight=float(hps["multispectral"]),
            stft_n_fft=list(hps["multispec_loss_n_fft"]),
            stft_hop=list(hps["multispec_loss_hop_length"]),
            stft_window=list(hps["multispec_loss_window_size"]),
        )
    except (ValueError, TypeError) as exc:
        raise HparamsError(f"vqvae: {exc}") from None


def lyrics_mode(hps: dict[str, Any]) -> str:
    if not (hps["use_tokens"] and hps["n_tokens"] > 0):
        return "none"
    return "single" if hps["single_enc_dec"] else "encoder"


def prior_config(component: str, hps: dict[str, Any], vqvae: VQVAEConfig) -> PriorConfig:
    """The config of prior `component` ("prior_level_L") from its hparams and its VQ-VAE's."""
    _check_fixed(component, hps, _PRIOR_FIXED)
    level = int(hps["level"])
    if not 0 <= level < vqvae.levels:
        raise HparamsError(f"{component}: level {level} is not a level of the VQ-VAE "
                           f"(levels={vqvae.levels})")
    top = level == vqvae.levels - 1
    lyrics = lyrics_mode(hps)
    labels = bool(hps["labels"])
    fields: dict[str, Any] = dict(
        level=level, bins=vqvae.codebook_size, n_ctx=int(hps["n_ctx"]),
        width=int(hps["prior_width"]), depth=int(hps["prior_depth"]), heads=int(hps["heads"]),
        attn_order=int(hps["attn_order"]), blocks=int(hps["blocks"] or 1),
        m_attn=float(hps["m_attn"]), m_mlp=float(hps["m_mlp"]),
        init_scale=float(hps["init_scale"]), merged_decoder=bool(hps["merged_decoder"]),
        labels=labels, timing=labels and top, sample_rate=vqvae.sample_rate,
        upsampler=not top, lyrics=lyrics,
    )
    if labels:
        y_bins = hps["y_bins"]
        if not (isinstance(y_bins, (list, tuple)) and len(y_bins) == 2):
            raise HparamsError(f"{component}: a labelled prior needs y_bins = (genres, "
                               f"artists), got {y_bins!r} (set labels: false if it has none)")
        fields.update(genre_bins=int(y_bins[0]), artist_bins=int(y_bins[1]),
                      max_bow_genre_size=int(hps["max_bow_genre_size"] or 1),
                      t_bins=int(hps["t_bins"]))
        if top:
            if hps["min_duration"] is None or hps["max_duration"] is None:
                raise HparamsError(f"{component}: a labelled top prior needs min_duration and "
                                   "max_duration (its timing range, in seconds)")
            fields.update(min_duration=float(hps["min_duration"]),
                          max_duration=float(hps["max_duration"]))
    if not top:
        fields.update(
            cond_down_t=vqvae.downs_t[level + 1], cond_stride=vqvae.strides_t[level + 1],
            cond_width=int(hps["cond_width"]), cond_depth=int(hps["cond_depth"]),
            cond_dilation_growth_rate=int(hps["cond_dilation_growth_rate"]),
            cond_dilation_cycle=hps["cond_dilation_cycle"],
            cond_res_scale=1 / math.sqrt(int(hps["cond_depth"])) if hps["cond_res_scale"] else 1.0,
            cond_init_scale=float(hps["init_scale"]),
        )
    if lyrics != "none":
        fields.update(n_tokens=int(hps["n_tokens"]), n_vocab=int(hps["n_vocab"]),
                      prime_loss_fraction=float(hps["prime_loss_fraction"]))
    if lyrics == "encoder":
        for key in ("m_attn", "m_mlp"):
            if hps[f"prime_{key}"] != hps[key]:
                raise HparamsError(f"{component}: prime_{key}={hps[f'prime_{key}']} differs from "
                                   f"{key}={hps[key]}; jukelite shares them")
        fields.update(
            lyrics_width=int(hps["prime_width"]), lyrics_depth=int(hps["prime_depth"]),
            lyrics_heads=int(hps["prime_heads"]), lyrics_attn_order=int(hps["prime_attn_order"]),
            lyrics_blocks=int(hps["prime_blocks"] or 1),
            lyrics_init_scale=float(hps["prime_init_scale"]),
        )
    if hps["alignment_layer"] is not None:
        fields.update(alignment_layer=int(hps["alignment_layer"]),
                      alignment_head=int(hps["alignment_head"] or 0))
    try:
        return PriorConfig(**fields)
    except (ValueError, TypeError) as exc:
        raise HparamsError(f"{component}: {exc}") from None
