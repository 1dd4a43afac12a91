"""The upsampler conditioner: Jukebox's parameter count, shapes and causal reach."""

from __future__ import annotations

import pytest
import torch

from jukelite.prior.conditioning import UpsamplerConditioner
from jukelite.vqvae.model import count_parameters

pytestmark = pytest.mark.usefixtures("single_thread")


def test_released_upsampler_conditioner_has_jukebox_parameter_count():
    with torch.device("meta"):
        conditioner = UpsamplerConditioner(bins=2048, out_width=1920, down_t=2, stride=2,
                                           width=1024, depth=16, dilation_cycle=8)
    assert count_parameters(conditioner) == 156_180_096


@pytest.mark.parametrize("down_t", [1, 2])
def test_stretches_upper_codes_to_the_lower_token_rate(down_t):
    torch.manual_seed(0)
    conditioner = UpsamplerConditioner(bins=16, out_width=12, down_t=down_t, stride=2, width=8,
                                       depth=2, dilation_cycle=1)
    codes = torch.randint(0, 16, (3, 5))
    out = conditioner(codes)
    assert out.shape == (3, 5 * 2**down_t, 12)
    # LayerNorm output: zero mean, unit variance over the width at every position.
    torch.testing.assert_close(out.mean(-1), torch.zeros(3, 5 * 2**down_t), atol=1e-5, rtol=0)


def test_res_scale_scales_the_residual_branch():
    torch.manual_seed(0)
    full = UpsamplerConditioner(bins=8, out_width=6, down_t=1, stride=2, width=4, depth=2)
    torch.manual_seed(0)
    scaled = UpsamplerConditioner(bins=8, out_width=6, down_t=1, stride=2, width=4, depth=2,
                                  res_scale=0.0)
    codes = torch.randint(0, 8, (2, 4))
    assert not torch.allclose(full(codes), scaled(codes))
    block = scaled.cond.model[1][0].model[0]
    assert block.res_scale == 0.0


def test_rejects_codes_without_a_batch_dimension():
    conditioner = UpsamplerConditioner(bins=8, out_width=6, down_t=1, stride=2, width=4, depth=1)
    with pytest.raises(ValueError, match=r"\[batch, tokens\]"):
        conditioner(torch.zeros(4, dtype=torch.long))
