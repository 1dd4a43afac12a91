"""Quantiser recipe options: factorised (ViT-VQGAN) lookup and the usage restart rule.

Why: these options change what the codes are, so each promise is pinned here: the lookup picks the
max-cosine code, codes stay on the unit sphere, gradients reach the encoder, the usage rule keeps
regularly used codes that Jukebox's per-step rule would restart, configs and checkpoints round-trip,
and the defaults stay exactly Jukebox's (old bundles load unchanged).
"""

import json
import textwrap

import pytest
import torch
import torch.nn.functional as F

from jukelite.vqvae.config import VQVAEConfig
from jukelite.vqvae.model import LevelVQVAE
from jukelite.vqvae.quantizer import VectorQuantizer

from .test_quantizer import run_two_ranks

pytestmark = pytest.mark.usefixtures("single_thread")

NEW_KEYS = ("quantizer_lookup", "lookup_dim", "restart", "restart_horizon", "restart_max_fraction")


def as_latents(rows: torch.Tensor) -> torch.Tensor:
    """[T, D] rows -> latents [1, D, T]."""
    return rows.t().unsqueeze(0).contiguous()


def factorised(k: int = 16, d: int = 6, lookup_dim: int = 3, **kw) -> VectorQuantizer:
    return VectorQuantizer(k, d, lookup="factorised", lookup_dim=lookup_dim, **kw)


def small_config(**kw) -> VQVAEConfig:
    base = dict(sample_rate=16000, levels=2, downs_t=[1, 1], strides_t=[2, 2], width=[8, 8],
                depth=[1, 1],
                codebook_size=16, code_dim=8, linf_k=16)
    return VQVAEConfig(**{**base, **kw})


# ------------------------------------------------------------------------------- factorised


def test_factorised_shapes_and_state_keys():
    torch.manual_seed(0)
    q = factorised(k=16, d=6, lookup_dim=3).train()
    out = q(torch.randn(2, 6, 10))
    assert out.quantized.shape == (2, 6, 10)
    assert out.codes.shape == (2, 10) and out.codes.dtype == torch.long
    assert q.codebook.shape == (16, 3) and q.ema_sum.shape == (16, 3)
    assert q.decode(out.codes).shape == (2, 6, 10)
    assert set(q.state_dict()) == {
        "codebook", "ema_sum", "ema_count", "initialized",
        "project_in.weight", "project_in.bias", "project_out.weight", "project_out.bias",
    }
    assert "restarts" in out.metrics


def test_factorised_lookup_picks_max_cosine_code():
    torch.manual_seed(1)
    q = factorised(k=32, d=6, lookup_dim=4).eval()
    q.codebook.copy_(F.normalize(torch.randn(32, 4), dim=1))
    q.initialized.fill_(True)
    x = torch.randn(3, 6, 20)
    codes = q.encode(x)

    w, b = q.project_in.weight.detach(), q.project_in.bias.detach()
    for n in range(3):
        for t in range(20):
            z = w @ x[n, :, t] + b
            cosines = [float(torch.dot(z, c) / (z.norm() * c.norm())) for c in q.codebook]
            best = max(range(32), key=lambda j: cosines[j])
            assert int(codes[n, t]) == best
    # forward agrees with encode, and eval output is the projected-up chosen code
    out = q(x)
    assert torch.equal(out.codes, codes)
    expected = q.project_out(q.codebook[codes]).permute(0, 2, 1)
    torch.testing.assert_close(out.quantized, expected)


def test_factorised_codes_stay_l2_normalised_through_training_and_restarts():
    torch.manual_seed(2)
    for restart in ("jukebox", "usage"):
        q = factorised(k=16, d=6, lookup_dim=3, restart=restart, restart_horizon=1.0).train()
        for step in range(12):
            q(torch.randn(2, 6, 8) * (1 + step))
            torch.testing.assert_close(q.codebook.norm(dim=1), torch.ones(16))


def test_factorised_straight_through_gradient_reaches_encoder():
    torch.manual_seed(3)
    q = factorised(k=8, d=6, lookup_dim=3).train()
    q(torch.randn(2, 6, 16))  # initialise
    x = torch.randn(2, 6, 16, requires_grad=True)
    weights = torch.randn(2, 6, 16)
    (q(x).quantized * weights).sum().backward()

    # The gradient is that of x -> project_out(normalise(project_in(x))), the identity lookup.
    x2 = x.detach().clone().requires_grad_(True)
    z = F.normalize(q.project_in(x2.permute(0, 2, 1)), dim=-1)
    (q.project_out(z).permute(0, 2, 1) * weights).sum().backward()
    torch.testing.assert_close(x.grad, x2.grad)
    assert x.grad.abs().sum() > 0

    # In the whole model the loss reaches every encoder weight and both projections.
    torch.manual_seed(4)
    model = LevelVQVAE(small_config(quantizer_lookup="factorised", lookup_dim=4), level=1).train()
    _, loss, metrics = model(0.1 * torch.randn(2, 1, 64))
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert float(metrics["restarts"]) >= 0


# ------------------------------------------------------------------------------- usage restarts

CENTRES = torch.tensor([[0.0, 0], [10, 0], [0, 10], [10, 10], [50, 50]])


def preset(q: VectorQuantizer) -> VectorQuantizer:
    q.codebook.copy_(CENTRES)
    q.ema_sum.copy_(CENTRES)
    q.ema_count.fill_(1.0)
    q.initialized.fill_(True)
    return q


def regular_batch(step: int) -> torch.Tensor:
    """8 vectors: codes 0-2 every step; code 3 once every other step; code 4 never."""
    ids = [0, 1, 2, 0, 1, 2, 0, 3 if step % 2 == 0 else 1]
    return as_latents(CENTRES[ids] + 0.01 * torch.randn(8, 2))


def test_usage_rule_keeps_a_regularly_used_code_that_jukebox_restarts():
    torch.manual_seed(5)
    jukebox = preset(VectorQuantizer(5, 2, decay=0.99, restart_threshold=1.0).train())
    usage = preset(VectorQuantizer(5, 2, decay=0.99, restart="usage", restart_horizon=4.0,
                                   restart_max_fraction=0.2).train())
    jukebox_moved = 0
    usage_restarts = []
    for step in range(40):
        x = regular_batch(step)
        jukebox(x)
        jukebox_moved += int((jukebox.codebook[3] - CENTRES[3]).norm() > 1)
        out = usage(x)
        usage_restarts.append(int(out.metrics["restarts"]))
        # code 3 (used 1 vector in 16) never leaves its cluster under the usage rule
        assert (usage.codebook[3] - CENTRES[3]).norm() < 0.1, step
        assert float(usage.unused_for[3]) <= 8
    assert jukebox_moved > 0, "the jukebox rule should restart the rarely counted code 3"
    # code 4 is never chosen: dead once 4 * 5 = 20 vectors passed, i.e. at step 3 (24 vectors);
    # it is moved onto a current encoder output (one of the batch vectors).
    assert usage_restarts[:2] == [0, 0] and usage_restarts[2] == 1
    assert (usage.codebook[4] - CENTRES[4]).norm() > 10


def test_usage_restart_goes_to_far_vectors_with_fresh_statistics():
    torch.manual_seed(6)
    q = preset(VectorQuantizer(5, 2, restart="usage", restart_horizon=0.1).train())
    q.unused_for.fill_(0.0)
    # Every vector sits on code 0 except one outlier: the dead codes go to the outlier.
    rows = torch.zeros(8, 2)
    rows[5] = torch.tensor([-30.0, 7.0])
    out = q(as_latents(rows))
    assert int(out.metrics["restarts"]) == 1  # max(1, int(0.05 * 5)) per step
    j = int((q.codebook - torch.tensor([-30.0, 7.0])).norm(dim=1).argmin())
    torch.testing.assert_close(q.codebook[j], torch.tensor([-30.0, 7.0]))
    assert float(q.ema_count[j]) == 1.0 and float(q.unused_for[j]) == 0.0


def test_usage_restarts_at_most_a_fraction_per_step_longest_unused_first():
    q = VectorQuantizer(20, 2, restart="usage", restart_horizon=1.0,
                        restart_max_fraction=0.1).train()
    q.codebook.copy_(torch.arange(40.0).view(20, 2) * 100)
    q.ema_sum.copy_(q.codebook)
    q.ema_count.fill_(1.0)
    q.initialized.fill_(True)
    q.unused_for.copy_(torch.arange(20.0))  # code 19 unused longest
    out = q(as_latents(torch.zeros(30, 2)))  # 30 vectors, all on code 0: 19 codes are dead
    assert int(out.metrics["restarts"]) == 2
    torch.testing.assert_close(q.codebook[18:], torch.zeros(2, 2))  # restarted onto the data
    assert (q.codebook[1:18] != 0).all()


def test_usage_metric_and_restarts_zero_in_eval():
    q = preset(VectorQuantizer(5, 2, restart="usage").eval())
    out = q(regular_batch(0))
    assert float(out.metrics["restarts"]) == 0.0
    assert float(out.metrics["usage"]) == 1.0


# ------------------------------------------------------------------------------- config, state


def test_config_round_trips_through_json_and_old_configs_load_with_old_behaviour():
    config = small_config(quantizer_lookup="factorised", lookup_dim=16, restart="usage",
                          restart_horizon=8.0, restart_max_fraction=0.1)
    again = VQVAEConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config

    old = small_config().to_dict()
    for key in NEW_KEYS:
        del old[key]
    loaded = VQVAEConfig.from_dict(old)
    assert (loaded.quantizer_lookup, loaded.restart) == ("euclidean", "jukebox")
    model = LevelVQVAE(loaded, level=0)
    keys = {k for k in model.state_dict() if k.startswith("quantizer.")}
    assert keys == {"quantizer.codebook", "quantizer.ema_sum", "quantizer.ema_count",
                    "quantizer.initialized"}
    assert model.quantizer.lookup == "euclidean" and model.quantizer.restart == "jukebox"


def test_default_options_are_the_jukebox_quantiser_bit_for_bit():
    """Same RNG, same inputs: explicit defaults and a plain VectorQuantizer agree exactly."""
    outs = []
    for kw in ({}, {"lookup": "euclidean", "restart": "jukebox"}):
        torch.manual_seed(7)
        q = VectorQuantizer(8, 4, **kw).train()
        res = [q(3 * torch.randn(2, 4, 6)) for _ in range(3)]
        outs.append((res, q.state_dict()))
    (a, sa), (b, sb) = outs
    for ra, rb in zip(a, b, strict=True):
        assert torch.equal(ra.quantized, rb.quantized) and torch.equal(ra.codes, rb.codes)
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


@pytest.mark.parametrize("lookup,restart", [("factorised", "usage"), ("euclidean", "usage"),
                                            ("factorised", "jukebox")])
def test_state_dict_resumes_exactly(lookup, restart):
    torch.manual_seed(8)
    make = lambda: VectorQuantizer(8, 4, lookup=lookup, lookup_dim=3, restart=restart,  # noqa: E731
                                   restart_horizon=0.5).train()
    q = make()
    for _ in range(3):
        q(torch.randn(2, 4, 6))
    state = {k: v.clone() for k, v in q.state_dict().items()}
    if restart == "usage":
        assert "unused_for" in state
    rng = torch.get_rng_state()
    xs = [3 * torch.randn(2, 4, 6) for _ in range(3)]  # far from the codes: forces restarts
    first = [q(x) for x in xs]

    resumed = make()
    resumed.load_state_dict(state)
    torch.set_rng_state(rng)
    torch.randn(len(xs) * 2 * 4 * 6)  # the draws made for xs above
    second = [resumed(x) for x in xs]
    for a, b in zip(first, second, strict=True):
        assert torch.equal(a.codes, b.codes) and torch.equal(a.quantized, b.quantized)
        assert torch.equal(a.metrics["restarts"], b.metrics["restarts"])
    for k, v in resumed.state_dict().items():
        assert torch.equal(v, q.state_dict()[k]), k


@pytest.mark.parametrize("field,value", [
    ("quantizer_lookup", "cosine"), ("lookup_dim", 0), ("lookup_dim", 2.5), ("restart", "often"),
    ("restart_horizon", 0.0), ("restart_max_fraction", 0.0), ("restart_max_fraction", 1.5),
])
def test_bad_values_name_the_field(field, value):
    with pytest.raises(ValueError, match=f"VQVAEConfig.{field}"):
        small_config(**{field: value})


def test_quantizer_rejects_bad_options():
    with pytest.raises(ValueError, match="lookup"):
        VectorQuantizer(8, 4, lookup="cosine")
    with pytest.raises(ValueError, match="lookup_dim"):
        VectorQuantizer(8, 4, lookup="factorised", lookup_dim=0)
    with pytest.raises(ValueError, match="restart"):
        VectorQuantizer(8, 4, restart="often")


# ------------------------------------------------------------------------------- distributed

DDP_SCRIPT = textwrap.dedent(
    """
    import sys
    import torch
    import torch.distributed as dist
    import torch.multiprocessing as mp
    from jukelite.vqvae.quantizer import VectorQuantizer

    def make():
        torch.manual_seed(0)  # same projection weights on every rank (as DDP would broadcast)
        q = VectorQuantizer(4, 3, decay=0.5, lookup="factorised", lookup_dim=2,
                            restart="usage", restart_horizon=100.0).train()
        with torch.no_grad():
            q.codebook.copy_(torch.nn.functional.normalize(torch.randn(4, 2), dim=1))
        q.ema_sum.copy_(q.codebook)
        q.ema_count.fill_(1.0)
        q.initialized.fill_(True)
        return q

    def batch(rank):
        g = torch.Generator().manual_seed(rank)
        return torch.randn(1, 3, 6, generator=g)

    def worker(rank, init_file, out_file):
        dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
        q = make()
        q(batch(rank))
        torch.manual_seed(100 + rank)  # different RNG per rank: candidates must come from rank 0
        fresh = VectorQuantizer(4, 3, lookup="factorised", lookup_dim=2, restart="usage",
                                restart_horizon=0.1).train()
        fresh.project_in.load_state_dict(q.project_in.state_dict())
        for _ in range(3):
            fresh(batch(rank))  # init + usage restarts
        torch.save({"q": q.state_dict(), "fresh": fresh.state_dict()}, f"{out_file}.{rank}")
        dist.destroy_process_group()

    if __name__ == "__main__":
        init_file, out_file = sys.argv[1], sys.argv[2]
        mp.start_processes(worker, args=(init_file, out_file), nprocs=2, start_method="fork")
        single = make()
        single(torch.cat([batch(0), batch(1)], dim=2))
        torch.save(single.state_dict(), f"{out_file}.single")
    """
)


def test_distributed_new_modes_share_one_codebook(tmp_path):
    r0, r1, single = run_two_ranks(tmp_path, DDP_SCRIPT)
    for k in single:
        assert torch.equal(r0["q"][k], r1["q"][k]), k
        # All-reduced sums, counts and vectors seen == one process seeing both ranks' batches.
        torch.testing.assert_close(r0["q"][k].float(), single[k].float())
    for k in ("codebook", "ema_sum", "ema_count", "unused_for", "initialized"):
        assert torch.equal(r0["fresh"][k], r1["fresh"][k]), k
