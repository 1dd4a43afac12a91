"""VQ-VAE topology: hops, encode/decode shapes, the Jukebox parameter count, config checks."""

import dataclasses
import json

import pytest
import torch

from jukelite.vqvae import VQVAE, LevelVQVAE, VQVAEConfig, count_parameters
from jukelite.vqvae.blocks import dilations

# Tiny tensors: intra-op threads only add overhead (fixture in tests/conftest.py).
pytestmark = pytest.mark.usefixtures("single_thread")


def released_config() -> VQVAEConfig:
    """The released Jukebox VQ-VAE (reference §2.1)."""
    return VQVAEConfig(sample_rate=44100)


def small_config(**overrides) -> VQVAEConfig:
    """Three levels with hops 4 / 8 / 32, kept tiny so forward passes take milliseconds."""
    base = dict(
        sample_rate=8000,
        channels=1,
        levels=3,
        downs_t=[2, 1, 1],
        strides_t=[2, 2, 4],
        width=[8, 8, 8],
        depth=[2, 1, 1],
        codebook_size=16,
        code_dim=8,
    )
    base.update(overrides)
    return VQVAEConfig(**base)


def test_hop_lengths():
    assert released_config().hop_lengths == [8, 32, 128]
    small_vqvae = VQVAEConfig(
        levels=2, downs_t=[5, 3], strides_t=[2, 2], width=[32] * 2, depth=[4] * 2
    )
    assert small_vqvae.hop_lengths == [32, 256]
    assert small_config().hop_lengths == [4, 8, 32]
    with pytest.raises(ValueError, match="level"):
        released_config().hop_length(3)


def test_stft_resolutions_scale_with_sample_rate():
    assert released_config().stft_resolutions() == [
        (2048, 240, 1200),
        (1024, 120, 600),
        (512, 50, 240),
    ]
    assert VQVAEConfig(sample_rate=22050).stft_resolutions() == [
        (1024, 120, 600),
        (512, 60, 300),
        (256, 25, 120),
    ]
    # 8 kHz: hop 43.5 -> 44 (half up), n_fft 371.5 -> 512, window 217.7 -> 218.
    assert small_config().stft_resolutions()[0] == (512, 44, 218)


def test_dilations_grow_and_reverse():
    assert dilations(4, 3, None, reverse=False) == [1, 3, 9, 27]
    assert dilations(4, 3, None, reverse=True) == [27, 9, 3, 1]
    assert dilations(5, 2, 2, reverse=False) == [1, 2, 1, 2, 1]


def test_released_parameter_count():
    model = VQVAE(released_config())
    assert count_parameters(model) == 1_485_763
    encoders = [count_parameters(model.level(L).encoder) for L in range(3)]
    decoders = [count_parameters(model.level(L).decoder) for L in range(3)]
    assert encoders == [441_856, 116_384, 168_224]
    assert decoders == [458_177, 124_641, 176_481]
    # Codebooks are buffers, not parameters: 3 x 2048 x 64 values, not counted above.
    assert all(model.level(L).quantizer.codebook.shape == (2048, 64) for L in range(3))


def test_jukebox_state_dict_layout():
    # Same key suffixes as Jukebox's encoders.{L}.* / decoders.{L}.*, so an importer only renames.
    keys = VQVAE(released_config(), levels=[0]).state_dict().keys()
    assert "levels.0.encoder.level_blocks.0.model.0.1.model.7.model.1.weight" in keys
    assert "levels.0.encoder.level_blocks.0.model.3.weight" in keys
    assert "levels.0.decoder.level_blocks.0.model.3.1.weight" in keys
    assert "levels.0.decoder.out.weight" in keys
    assert "levels.0.quantizer.codebook" in keys


def test_meta_device_build():
    with torch.device("meta"):
        model = VQVAE(released_config())
    assert count_parameters(model) == 1_485_763
    assert all(p.device.type == "meta" for p in model.parameters())


@pytest.mark.parametrize("level", [0, 1, 2])
def test_encode_decode_shapes_awkward_lengths(level):
    torch.manual_seed(0)
    model = LevelVQVAE(small_config(channels=2), level).eval()
    hop = model.hop_length
    for length in (1, hop - 1, hop, 3 * hop, 3 * hop + 1):
        audio = torch.randn(2, 2, length)
        codes = model.encode(audio)
        n_codes = -(-length // hop)
        assert codes.shape == (2, n_codes) and codes.dtype == torch.long
        assert int(codes.min()) >= 0 and int(codes.max()) < 16
        out = model.decode(codes)
        assert out.shape == (2, 2, n_codes * hop)


def test_forward_shapes_loss_and_metrics():
    torch.manual_seed(0)
    model = VQVAE(small_config())
    audio = 0.1 * torch.randn(3, 1, 64)
    recons, loss, metrics = model(audio)
    assert sorted(recons) == [0, 1, 2]
    assert all(r.shape == audio.shape for r in recons.values())
    assert loss.ndim == 0 and torch.isfinite(loss)
    level_loss = sum(metrics[f"level_{L}/loss"] for L in range(3))
    torch.testing.assert_close(loss.detach(), level_loss)
    names = ["l2", "linf", "multispectral", "commit", "spectral_convergence_db", "usage"]
    names += ["used_current", "entropy", "perplexity", "fit", "codebook_change"]
    for name in names:
        value = metrics[f"level_2/{name}"]
        assert value.ndim == 0 and not value.requires_grad
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())


def test_loss_weights_and_normalisers():
    torch.manual_seed(0)
    cfg = small_config(levels=1, downs_t=[2], strides_t=[2], width=[8], depth=[1])
    model = LevelVQVAE(cfg, 0)
    model.set_data_statistics(l2=0.5, spec=4.0)
    _, loss, m = model(0.1 * torch.randn(2, 1, 32))
    expected = (
        cfg.l2_weight * m["l2"] / 0.5
        + cfg.linf_weight * m["linf"] / 0.5
        + cfg.multispectral_weight * m["multispectral"] / 4.0
        + cfg.commit * m["commit"]
    )
    torch.testing.assert_close(loss.detach(), expected)
    assert "norm_l2" in model.state_dict() and float(model.state_dict()["norm_spec"]) == 4.0
    with pytest.raises(ValueError, match="positive"):
        model.set_data_statistics(l2=0.0, spec=1.0)


def test_subset_of_levels():
    model = VQVAE(small_config(), levels=[2])
    assert model.level_ids == [2]
    with pytest.raises(KeyError, match="holds levels"):
        model.level(0)


def test_input_errors():
    model = LevelVQVAE(small_config(), 1)  # hop 8
    with pytest.raises(ValueError, match="multiple of its hop 8"):
        model(torch.randn(1, 1, 9))
    with pytest.raises(ValueError, match="multiple of 32"):
        VQVAE(small_config())(torch.randn(1, 1, 16))
    with pytest.raises(ValueError, match="1 channel"):
        model.encode(torch.randn(1, 2, 16))
    with pytest.raises(ValueError, match=r"\[batch, channels, samples\]"):
        model.encode(torch.randn(16))
    with pytest.raises(ValueError, match="no samples"):
        model.encode(torch.randn(1, 1, 0))
    with pytest.raises(ValueError, match="integer codes"):
        model.decode(torch.zeros(1, 4))
    with pytest.raises(ValueError, match=r"codes must be in \[0, 15\]"):
        model.decode(torch.full((1, 4), 16))
    with pytest.raises(ValueError, match="level must be in"):
        LevelVQVAE(small_config(), 3)


def test_config_json_round_trip():
    cfg = small_config(dilation_cycle=2)
    d = json.loads(json.dumps(dataclasses.asdict(cfg)))
    assert VQVAEConfig.from_dict(d) == cfg
    assert VQVAEConfig.from_dict({"downs_t": (3, 2, 2)}).downs_t == [3, 2, 2]


@pytest.mark.parametrize(
    "overrides, field",
    [
        (dict(width=[64, 32]), "width"),
        (dict(depth=[8, 4, 0]), "depth"),
        (dict(downs_t=[3, 2]), "downs_t"),
        (dict(strides_t=[2, 3, 2]), "strides_t"),
        (dict(levels=0), "levels"),
        (dict(codebook_size=0), "codebook_size"),
        (dict(ema_decay=1.5), "ema_decay"),
        (dict(commit=-1.0), "commit"),
        (dict(dilation_cycle=0), "dilation_cycle"),
        (dict(stft_hop=[240, 120]), "stft_hop"),
    ],
)
def test_config_validation_names_the_field(overrides, field):
    with pytest.raises(ValueError, match=field):
        VQVAEConfig(**overrides)


def test_config_rejects_unknown_keys_listing_valid_ones():
    with pytest.raises(ValueError, match="unknown.*'emb_width'.*valid keys are:.*code_dim"):
        VQVAEConfig.from_dict({"emb_width": 64})
