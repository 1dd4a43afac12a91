"""Jukebox's hyperparameter presets, as data, and how a user's choice of them is resolved.

A Jukebox checkpoint does not say how its model was built (the loader ignores the stored `hps`):
the architecture comes from the presets of Jukebox's hparams.py, merged over its defaults. The
values below are those presets (facts read off openai/jukebox, keys named exactly as there),
limited to what decides a model's structure and the bundle's metadata.

An import resolves one hparam dict per component: `vqvae`, `prior_level_0`, `prior_level_1`,
`prior_level_2`. `--preset a,b` applies named presets in order (a model set such as `1b_lyrics`
names every component; `vqvae`/`small_vqvae` apply to the VQ-VAE; the other presets apply to
every prior being imported), then `--hps FILE` overrides per component.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from jukelite.convert import ConvertError

VQVAE = "vqvae"
COMPONENTS = (VQVAE, "prior_level_0", "prior_level_1", "prior_level_2")

#: Jukebox's DEFAULTS for the keys that shape a VQ-VAE (one flat namespace in Jukebox).
VQVAE_DEFAULTS: dict[str, Any] = {
    "sr": 44100, "levels": 2, "downs_t": (1, 1), "strides_t": (2, 2),
    "hvqvae_multipliers": None, "revival_threshold": 1.0, "emb_width": 64, "l_bins": 512,
    "l_mu": 0.99, "commit": 1.0, "spectral": 0.0, "multispectral": 1.0, "loss_fn": "l2",
    "linf_k": 2048, "lmix_l1": 0.0, "lmix_l2": 0.0, "lmix_linf": 0.0, "use_bottleneck": True,
    "depth": 3, "width": 128, "m_conv": 1.0, "dilation_growth_rate": 1, "dilation_cycle": None,
    "vqvae_reverse_decoder_dilation": True, "sample_length": 0,
    "multispec_loss_n_fft": (2048, 1024, 512), "multispec_loss_hop_length": (240, 120, 50),
    "multispec_loss_window_size": (1200, 600, 240),
}

#: Jukebox's DEFAULTS for the keys that shape a prior.
PRIOR_DEFAULTS: dict[str, Any] = {
    "level": 0, "labels": True, "labels_v3": False, "y_bins": 0, "t_bins": 64,
    "max_bow_genre_size": None, "min_duration": None, "max_duration": None,
    "cond_levels": None, "y_cond_as_bias": False, "copy_input": False,
    "merged_decoder": False, "single_enc_dec": False,
    "alignment_layer": None, "alignment_head": None,
    "n_ctx": 1024, "prior_depth": 3, "prior_width": 128, "heads": 1, "attn_order": 0,
    "blocks": None, "spread": None, "zero_out": False, "res_scale": False, "pos_init": False,
    "init_scale": 1.0, "m_attn": 0.25, "m_mlp": 1.0, "c_res": 0,
    "attn_dropout": 0.0, "resid_dropout": 0.0, "emb_dropout": 0.0,
    "cond_depth": 3, "cond_width": 128, "cond_m_conv": 1.0, "cond_zero_out": False,
    "cond_res_scale": False, "cond_dilation_growth_rate": 1, "cond_dilation_cycle": None,
    "cond_c_res": 0,
    "use_tokens": False, "n_tokens": 0, "n_vocab": 0, "prime_loss_fraction": 0.1,
    "prime_depth": 3, "prime_width": 128, "prime_heads": 1, "prime_attn_order": 0,
    "prime_blocks": None, "prime_spread": None, "prime_zero_out": False,
    "prime_res_scale": False, "prime_pos_init": False, "prime_init_scale": 1.0,
    "prime_m_attn": 0.25, "prime_m_mlp": 1.0, "prime_c_res": 0,
    "fp16_params": False,
}

_LABELS_V2 = {"y_bins": (120, 4111), "t_bins": 128, "max_bow_genre_size": 5, "n_vocab": 80}
_LABELS_V3 = {"y_bins": (604, 7898), "t_bins": 64, "max_bow_genre_size": 1, "n_vocab": 79}
_UPSAMPLER = {
    "n_ctx": 8192, "prior_width": 1920, "prior_depth": 72, "heads": 1, "attn_order": 2,
    "blocks": 128, "init_scale": 0.4, "c_res": 1, "cond_width": 1024, "cond_depth": 16,
    "cond_dilation_growth_rate": 3, "cond_dilation_cycle": 8, "cond_c_res": 1,
    "use_tokens": False, "prime_loss_fraction": 0.0, "fp16_params": False, **_LABELS_V2,
}
_SMALL_LABELS = {
    "labels": True, "labels_v3": True, "y_bins": (10, 100), "max_bow_genre_size": 1,
    "min_duration": 60.0, "max_duration": 600.0, "t_bins": 64,
}
_SMALL_PRIOR = {
    "n_ctx": 8192, "prior_width": 1024, "prior_depth": 48, "heads": 1, "c_res": 1,
    "attn_order": 2, "blocks": 64, "init_scale": 0.7,
}

#: Component presets: which component kind each applies to, and its values.
VQVAE_PRESETS: dict[str, dict[str, Any]] = {
    "vqvae": {
        "levels": 3, "downs_t": (3, 2, 2), "strides_t": (2, 2, 2), "emb_width": 64,
        "l_bins": 2048, "l_mu": 0.99, "commit": 0.02, "spectral": 0.0, "multispectral": 1.0,
        "hvqvae_multipliers": (2, 1, 1), "loss_fn": "lmix", "lmix_l2": 1.0, "lmix_linf": 0.02,
        "width": 32, "depth": 4, "m_conv": 1.0, "dilation_growth_rate": 3,
    },
    "small_vqvae": {
        "sr": 22050, "levels": 2, "downs_t": (5, 3), "strides_t": (2, 2), "emb_width": 64,
        "l_bins": 1024, "l_mu": 0.99, "commit": 0.02, "spectral": 0.0, "multispectral": 1.0,
        "loss_fn": "l2", "width": 32, "depth": 4, "m_conv": 1.0, "dilation_growth_rate": 3,
    },
}
PRIOR_PRESETS: dict[str, dict[str, Any]] = {
    "upsampler_level_0": {"level": 0, **_UPSAMPLER},
    "upsampler_level_1": {"level": 1, "cond_res_scale": True, **_UPSAMPLER},
    "prior_5b": {
        "level": 2, "n_ctx": 8192, "prior_width": 4800, "prior_depth": 72, "heads": 8,
        "attn_order": 2, "blocks": 128, "init_scale": 0.1, "c_res": 1, "min_duration": 60.0,
        "max_duration": 600.0, "use_tokens": False, "n_tokens": 0, "prime_loss_fraction": 0.0,
        "merged_decoder": True, "fp16_params": True, **_LABELS_V2,
    },
    "prior_5b_lyrics": {
        "level": 2, "n_ctx": 8192, "prior_width": 4800, "prior_depth": 79, "heads": 8,
        "attn_order": 10, "blocks": 128, "init_scale": 0.1, "c_res": 1, "prime_width": 1280,
        "prime_depth": 18, "prime_heads": 4, "prime_attn_order": 2, "prime_blocks": 32,
        "prime_init_scale": 0.7, "prime_c_res": 1, "min_duration": 23.8, "max_duration": 600.0,
        "use_tokens": True, "n_tokens": 512, "prime_loss_fraction": 0.4,
        "merged_decoder": True, "fp16_params": True, "alignment_layer": 68,
        "alignment_head": 2, **_LABELS_V2,
    },
    "prior_1b_lyrics": {
        "level": 2, "n_ctx": 6144, "prior_width": 2048, "prior_depth": 72, "heads": 2,
        "attn_order": 12, "blocks": 64, "init_scale": 0.2, "c_res": 1, "labels_v3": True,
        "min_duration": 17.84, "max_duration": 600.0, "use_tokens": True, "n_tokens": 384,
        "prime_loss_fraction": 0.4, "single_enc_dec": True, "fp16_params": False,
        "alignment_layer": 63, "alignment_head": 0, **_LABELS_V3,
    },
    "small_prior": dict(_SMALL_PRIOR),
    "small_labelled_prior": {**_SMALL_LABELS, **_SMALL_PRIOR},
    "small_single_enc_dec_prior": {
        "n_ctx": 6144, "prior_width": 1024, "prior_depth": 48, "heads": 2, "attn_order": 12,
        "blocks": 64, "init_scale": 0.7, "c_res": 1, "prime_loss_fraction": 0.4,
        "single_enc_dec": True, **_SMALL_LABELS, "use_tokens": True, "n_tokens": 384,
        "n_vocab": 79,
    },
    "small_sep_enc_dec_prior": {
        "n_ctx": 6144, "prior_width": 1024, "prior_depth": 50, "heads": 2, "attn_order": 8,
        "blocks": 64, "init_scale": 0.7, "c_res": 1, "prime_width": 256, "prime_depth": 9,
        "prime_heads": 2, "prime_attn_order": 2, "prime_blocks": 32, "prime_init_scale": 0.7,
        "prime_c_res": 1, "prime_loss_fraction": 0.4, **_SMALL_LABELS, "use_tokens": True,
        "n_tokens": 384, "n_vocab": 79,
    },
    "small_upsampler": {
        "n_ctx": 8192, "prior_width": 1024, "prior_depth": 48, "heads": 1, "c_res": 1,
        "attn_order": 2, "blocks": 64, "init_scale": 0.7, "cond_width": 512, "cond_depth": 16,
        "cond_dilation_growth_rate": 3, "cond_dilation_cycle": 8, "cond_c_res": 1,
    },
    # Jukebox's training-precision preset: only fp16_params changes what is on disk.
    "all_fp16": {"fp16_params": True},
}

#: Released model sets (Jukebox's make_models.MODELS): one preset per component.
MODEL_SETS: dict[str, dict[str, str]] = {
    name: {VQVAE: "vqvae", "prior_level_0": "upsampler_level_0",
           "prior_level_1": "upsampler_level_1", "prior_level_2": top}
    for name, top in (("5b", "prior_5b"), ("5b_lyrics", "prior_5b_lyrics"),
                      ("1b_lyrics", "prior_1b_lyrics"))
}

PRESET_NAMES = sorted({*MODEL_SETS, *VQVAE_PRESETS, *PRIOR_PRESETS})


class HparamsError(ConvertError):
    """A preset or hparams file that cannot describe the checkpoints; says what to fix."""


def prior_component(level: int) -> str:
    return f"prior_level_{level}"


def resolve_hparams(
    components: list[str],
    preset: str | None = None,
    overrides: dict[str, dict[str, Any]] | None = None,
) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Each requested component's full hparams: Jukebox's defaults, then the presets named in
    `preset` (comma-separated, applied in order), then `overrides`. Returns the hparams and the
    preset chosen per component, for provenance."""
    overrides = overrides or {}
    unknown = sorted(set(overrides) - set(COMPONENTS))
    if unknown:
        raise HparamsError(f"hparams components {unknown} are unknown; valid: {list(COMPONENTS)}")
    names = [n.strip() for n in (preset or "").split(",") if n.strip()]
    bad = [n for n in names if n not in PRESET_NAMES]
    if bad:
        raise HparamsError(f"unknown preset(s) {bad}; valid: {', '.join(PRESET_NAMES)}")
    if not names and not overrides:
        raise HparamsError("give --preset NAME or --hps FILE: a Jukebox checkpoint does not "
                           "record its architecture")
    resolved, applied = {}, {c: [] for c in components}
    for component in components:
        is_vqvae = component == VQVAE
        hps = dict(VQVAE_DEFAULTS if is_vqvae else PRIOR_DEFAULTS)
        for name in names:
            chosen = MODEL_SETS.get(name, {}).get(component, name)
            table = VQVAE_PRESETS if is_vqvae else PRIOR_PRESETS
            if chosen in table:
                hps.update(table[chosen])
                applied[component].append(chosen)
        own = overrides.get(component, {})
        invalid = sorted(set(own) - set(hps))
        if invalid:
            raise HparamsError(f"hparams for {component}: unknown key(s) {invalid} (names as in "
                               "Jukebox's hparams.py)")
        hps.update(own)
        if not is_vqvae:
            level = int(component.rsplit("_", 1)[1])
            named = own.get("level", next((PRIOR_PRESETS[p]["level"] for p in applied[component]
                                           if "level" in PRIOR_PRESETS[p]), level))
            if named != level:
                raise HparamsError(f"{component}: its hparams are for level {named} "
                                   f"({'+'.join(applied[component]) or 'hps file'})")
            hps["level"] = level
        resolved[component] = hps
    return resolved, [f"{c}: {'+'.join(p) or 'defaults'}" for c, p in applied.items()]


def read_hparams_file(path: str | Path) -> dict[str, dict[str, Any]]:
    """`{component: {hparam: value}}` from a JSON or YAML file."""
    path = Path(path)
    if not path.is_file():
        raise HparamsError(f"{path}: no such hparams file")
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(path.read_text())
        else:
            data = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    except Exception as exc:  # JSON and YAML parsers raise their own error types
        raise HparamsError(f"{path}: not valid JSON/YAML ({exc})") from None
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise HparamsError(f"{path}: expected {{component: {{hparam: value}}}} with components "
                           f"{list(COMPONENTS)}")
    return {str(k): dict(v) for k, v in data.items()}
