"""EMA vector quantiser: hand-computed updates, restarts, eval mode, gradients, metrics, DDP."""

import math
import subprocess
import sys
import textwrap

import pytest
import torch

from jukelite.vqvae.quantizer import VectorQuantizer

# Tiny tensors: intra-op threads only add overhead (fixture in tests/conftest.py).
pytestmark = pytest.mark.usefixtures("single_thread")


def preset(q: VectorQuantizer, codebook, counts) -> VectorQuantizer:
    """Put the quantiser in a known, already-initialised state (ema_sum = code * count)."""
    codebook = torch.tensor(codebook, dtype=torch.float32)
    counts = torch.tensor(counts, dtype=torch.float32)
    q.codebook.copy_(codebook)
    q.ema_sum.copy_(codebook * counts[:, None])
    q.ema_count.copy_(counts)
    q.initialized.fill_(True)
    return q


def as_latents(vectors) -> torch.Tensor:
    """[[v0], [v1], ...] -> latents [1, D, T] with one time step per vector."""
    return torch.tensor(vectors, dtype=torch.float32).t().unsqueeze(0)


def test_ema_update_matches_hand_computation():
    q = VectorQuantizer(3, 2, decay=0.5, restart_threshold=0.1).train()
    preset(q, [[0, 0], [10, 0], [0, 10]], [1, 1, 1])
    x = as_latents([[1, 1], [-1, 0], [9, 1], [11, -1]])

    out = q(x)

    assert out.codes.tolist() == [[0, 0, 1, 1]]
    # sums (0,1) (20,0) (0,0), counts 2 2 0; decay 0.5
    torch.testing.assert_close(q.ema_sum, torch.tensor([[0, 0.5], [15, 0], [0, 5]]))
    torch.testing.assert_close(q.ema_count, torch.tensor([1.5, 1.5, 0.5]))
    torch.testing.assert_close(q.codebook, torch.tensor([[0, 1 / 3], [10, 0], [0, 10]]))
    # The output uses the codebook as it was before this step's update.
    torch.testing.assert_close(out.quantized, as_latents([[0, 0], [0, 0], [10, 0], [10, 0]]))
    torch.testing.assert_close(out.commit_loss, torch.tensor(7 / 8))  # (2 + 1 + 2 + 2) / 8
    m = out.metrics
    torch.testing.assert_close(m["fit"], torch.tensor(7 / 4))
    torch.testing.assert_close(m["entropy"], torch.tensor(1.0))
    torch.testing.assert_close(m["perplexity"], torch.tensor(2.0))
    torch.testing.assert_close(m["used_current"], torch.tensor(2.0))
    torch.testing.assert_close(m["usage"], torch.tensor(1.0))
    torch.testing.assert_close(m["codebook_change"], torch.tensor(math.sqrt((1 / 9) / 6)))


@pytest.mark.parametrize("lookup", ["euclidean", "factorised"])
def test_ema_update_equals_the_one_hot_formula(lookup):
    """Sums and counts added onto each code (no [M, K] one-hot) give what the dense one-hot
    product gave: a random codebook, random latents, some codes never chosen."""
    torch.manual_seed(0)
    k, d, m = 64, 8, 3000
    q = VectorQuantizer(k, d, decay=0.9, restart_threshold=0.0, lookup=lookup,
                        lookup_dim=4).train()
    dim = q.space_dim
    preset(q, torch.randn(k, dim).tolist(), (torch.rand(k) + 0.5).tolist())
    x = torch.randn(m, dim) * 3
    codes = torch.randint(0, k - 5, (m,))  # the last five codes get nothing
    old_sum, old_count = q.ema_sum.clone(), q.ema_count.clone()

    counts, restarts = q._ema_update(x, codes, torch.rand(m))

    onehot = torch.nn.functional.one_hot(codes, k).float()
    expected_sums, expected_counts = onehot.t() @ x, onehot.sum(dim=0)
    assert torch.equal(counts, expected_counts) and counts[-5:].sum() == 0
    torch.testing.assert_close(q.ema_sum, 0.9 * old_sum + 0.1 * expected_sums,
                               atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(q.ema_count, 0.9 * old_count + 0.1 * expected_counts)
    assert restarts == 0


def test_dead_codes_restart_to_current_encoder_outputs():
    torch.manual_seed(0)
    q = VectorQuantizer(4, 3, decay=0.99, restart_threshold=1.0).train()
    far = [100.0, 100.0, 100.0]
    preset(q, [[1, 0, 0], [0, 1, 0], far, [-100, -100, -100]], [1, 1, 1, 1])
    x = torch.eye(3)[:2].repeat(16, 1) + 0.01 * torch.randn(32, 3)  # all near codes 0 and 1
    out = q(as_latents(x.tolist()))

    assert set(out.codes.flatten().tolist()) == {0, 1}
    torch.testing.assert_close(q.ema_count[2:], torch.tensor([0.99, 0.99]))  # below 1 -> dead
    for j in (2, 3):
        row_distance = (x - q.codebook[j]).pow(2).sum(dim=1)
        assert float(row_distance.min()) == 0.0, "restarted code is not a current encoder output"
    # Live codes are the EMA means; dead codes' statistics are left to accumulate.
    torch.testing.assert_close(q.codebook[:2], q.ema_sum[:2] / q.ema_count[:2, None])
    torch.testing.assert_close(q.ema_sum[2], 0.99 * torch.tensor(far))
    torch.testing.assert_close(out.metrics["usage"], torch.tensor(0.5))


def test_first_training_call_initialises_from_encoder_outputs():
    x = torch.randn(2, 4, 20)  # 40 vectors >= 8 codes: rows are copied exactly
    flat = x.permute(0, 2, 1).reshape(-1, 4)

    torch.manual_seed(1)
    q = VectorQuantizer(8, 4, decay=1.0).train()  # decay 1 freezes the codebook after init
    q(x)
    assert bool(q.initialized)
    distances = torch.cdist(q.codebook, flat)
    assert (distances.min(dim=1).values == 0).all()
    assert len({tuple(row.tolist()) for row in q.codebook}) == 8  # distinct rows
    torch.testing.assert_close(q.ema_count, torch.ones(8))

    torch.manual_seed(1)  # same global RNG state -> same codebook (resumable runs)
    q2 = VectorQuantizer(8, 4, decay=1.0).train()
    q2(x)
    assert torch.equal(q.codebook, q2.codebook)


def test_initialisation_tiles_small_batches_with_noise():
    torch.manual_seed(0)
    x = torch.randn(1, 4, 3)  # only 3 vectors for 16 codes
    q = VectorQuantizer(16, 4, decay=1.0).train()
    q(x)
    flat = x[0].t()
    nearest = torch.cdist(q.codebook, flat).min(dim=1).values
    assert (nearest < 0.05).all()  # noise std 0.01 / sqrt(4)
    assert len({tuple(row.tolist()) for row in q.codebook}) == 16  # jitter separates the copies


def test_eval_mode_changes_no_buffers_and_detaches():
    torch.manual_seed(0)
    q = VectorQuantizer(8, 4).train()
    q(torch.randn(2, 4, 16))
    before = {k: v.clone() for k, v in q.state_dict().items()}
    q.eval()
    x = torch.randn(2, 4, 16, requires_grad=True)
    out = q(x)
    for k, v in q.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert not out.quantized.requires_grad
    assert float(out.metrics["codebook_change"]) == 0.0
    # Eval output is exactly the code vectors, and encode/decode agree with forward.
    assert torch.equal(out.codes, q.encode(x))
    assert torch.equal(out.quantized, q.decode(out.codes))


def test_straight_through_gradient_reaches_input():
    torch.manual_seed(0)
    q = VectorQuantizer(8, 4).train()
    x = torch.randn(2, 4, 16, requires_grad=True)
    out = q(x)
    out.quantized.sum().backward()
    torch.testing.assert_close(x.grad, torch.ones_like(x))

    x.grad = None
    out = q(x)
    out.commit_loss.backward()
    expected = 2 * (x - out.quantized).detach() / x.numel()
    torch.testing.assert_close(x.grad, expected)


def test_usage_and_entropy_on_hand_made_assignment():
    q = VectorQuantizer(4, 2, restart_threshold=1.0).eval()
    preset(q, [[0, 0], [10, 0], [0, 10], [10, 10]], [2.0, 0.5, 1.0, 0.0])
    out = q(as_latents([[0, 1], [1, 0], [9, 0], [0, 9]]))  # histogram 2, 1, 1, 0
    assert out.codes.tolist() == [[0, 0, 1, 2]]
    m = out.metrics
    torch.testing.assert_close(m["usage"], torch.tensor(0.5))  # counts >= 1: codes 0 and 2
    torch.testing.assert_close(m["used_current"], torch.tensor(3.0))
    torch.testing.assert_close(m["entropy"], torch.tensor(1.5))
    torch.testing.assert_close(m["perplexity"], torch.tensor(2**1.5))


def test_checkpoint_buffers_resume_exactly():
    torch.manual_seed(0)
    q = VectorQuantizer(8, 4).train()
    q(torch.randn(2, 4, 16))
    state = {k: v.clone() for k, v in q.state_dict().items()}
    assert set(state) == {"codebook", "ema_sum", "ema_count", "initialized"}
    rng = torch.get_rng_state()
    x = 3 * torch.randn(2, 4, 16)  # far from the codebook: forces restarts (random choices)
    q(x)

    resumed = VectorQuantizer(8, 4).train()
    resumed.load_state_dict(state)
    torch.set_rng_state(rng)
    resumed(x)
    for k, v in resumed.state_dict().items():
        assert torch.equal(v, q.state_dict()[k]), k


def test_rejects_wrong_latent_shape():
    q = VectorQuantizer(8, 4)
    with pytest.raises(ValueError, match=r"\[batch, 4, time\]"):
        q(torch.randn(2, 3, 16))


DDP_SCRIPT = textwrap.dedent(
    """
    import sys
    import torch
    import torch.distributed as dist
    import torch.multiprocessing as mp
    from jukelite.vqvae.quantizer import VectorQuantizer

    def make(threshold):
        q = VectorQuantizer(4, 2, decay=0.5, restart_threshold=threshold).train()
        q.codebook.copy_(torch.tensor([[0.0, 0], [10, 0], [0, 10], [50, 50]]))
        q.ema_sum.copy_(q.codebook)
        q.ema_count.fill_(1.0)
        q.initialized.fill_(True)
        return q

    def batch(rank):
        g = torch.Generator().manual_seed(rank)
        return torch.randn(1, 2, 6, generator=g) + torch.tensor([[[0.0], [10 * rank]]])

    def worker(rank, init_file, out_file):
        dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
        torch.manual_seed(100 + rank)  # different RNG per rank: candidates must come from rank 0
        q = make(0.1)
        q(batch(rank))
        fresh = VectorQuantizer(4, 2).train()
        fresh(batch(rank))  # init + restarts
        torch.save({"ema": q.state_dict(), "fresh": fresh.codebook}, f"{out_file}.{rank}")
        dist.destroy_process_group()

    if __name__ == "__main__":
        init_file, out_file = sys.argv[1], sys.argv[2]
        # fork: the ranks reuse this process's torch import (seconds saved on a small machine).
        mp.start_processes(worker, args=(init_file, out_file), nprocs=2, start_method="fork")
        single = make(0.1)
        single(torch.cat([batch(0), batch(1)], dim=2))
        torch.save(single.state_dict(), f"{out_file}.single")
    """
)


def run_two_ranks(tmp_path, script_text: str) -> tuple[dict, dict, dict]:
    """Run a two-rank gloo script (argv: init file, output prefix) and load what rank 0, rank 1
    and the single-process reference saved."""
    script = tmp_path / "ddp_script.py"
    script.write_text(script_text)
    out = tmp_path / "result"
    subprocess.run(
        [sys.executable, str(script), str(tmp_path / "init"), str(out)], check=True, timeout=120
    )
    r0, r1 = (torch.load(f"{out}.{rank}") for rank in (0, 1))
    return r0, r1, torch.load(f"{out}.single")


def test_distributed_ranks_share_one_codebook(tmp_path):
    r0, r1, single = run_two_ranks(tmp_path, DDP_SCRIPT)
    for k in single:
        assert torch.equal(r0["ema"][k], r1["ema"][k]), k
        # All-reduced EMA update == one process seeing both ranks' batches.
        torch.testing.assert_close(r0["ema"][k].float(), single[k].float())
    assert torch.equal(r0["fresh"], r1["fresh"])
