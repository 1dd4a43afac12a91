"""The sampling step as a GPU would run it, checked on the CPU: one compiled graph that never
recompiles, no value read back to the host, generators on the sampling device, the attention
backend decided once, and CUDA-only switches refused elsewhere with a clear message."""

from __future__ import annotations

import builtins

import pytest
import torch

from jukelite.inference import window as window_mod
from jukelite.inference.options import check_cuda_graphs
from jukelite.inference.run import tf32_matmuls
from jukelite.inference.schedule import window_generator
from jukelite.inference.window import STEP_KINDS, sample_window, step_kind
from jukelite.prior import attention as attn_mod

from .test_prior_model import build

pytestmark = pytest.mark.usefixtures("single_thread")


def window_setup(kind: str) -> tuple:
    """A tiny prior, its conditioning, a prefix of half a window and its token sequence."""
    prior, codes, inputs = build(kind)
    with torch.no_grad():
        cond = prior.condition(**inputs)
    tokens = prior.sequence(codes, inputs.get("lyrics"))
    return prior, cond, tokens, tokens[:, : prior.config.seq_len // 2 + 3]


# "encoder": labels, timing and a lyrics encoder (encoder-decoder layers); "upsampler": codes
# of the level above; "single": the lyric prefix (prime attention).
@pytest.mark.parametrize("kind", ["encoder", "upsampler", "single"])
def test_the_one_token_step_compiles_to_one_graph_and_never_recompiles(kind):
    prior, cond, tokens, _ = window_setup(kind)
    graphs = []

    def counting_backend(graph_module: torch.fx.GraphModule, example_inputs: list) -> object:
        graphs.append(graph_module)
        return graph_module.forward

    torch._dynamo.reset()
    # fullgraph=True: any graph break (a host sync, a data-dependent branch) is an error
    step = torch.compile(prior.logits_step, backend=counting_backend, fullgraph=True,
                         dynamic=False)
    compiled_caches = prior.init_caches(2, encoder_kv=cond.encoder_kv)
    eager_caches = prior.init_caches(2, encoder_kv=cond.encoder_kv)
    position = torch.tensor(0)
    previous = tokens[:, 0].clone()
    for index in range(4):  # crosses the first row of the grid at block_ctx 4
        got = step(previous, position, compiled_caches, cond)
        expected = prior.logits_step(previous, position, eager_caches, cond)
        torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-6)
        previous.copy_(tokens[:, index])
        position.add_(1)
    assert len(graphs) == 1  # the first call compiled; the next three reused its graph
    torch._dynamo.reset()


def test_an_encoder_decoder_cache_is_filled_when_it_is_made():
    prior, cond, _, _ = window_setup("encoder")
    caches = prior.init_caches(2, encoder_kv=cond.encoder_kv)
    kinds = [block.attn.attn_type for block in prior.transformer.blocks]
    filled = [cache.key is not None for cache in caches]
    assert filled == [True] * len(kinds)
    lazy = prior.init_caches(2)
    assert [cache.key is None for cache in lazy] == [k == attn_mod.AttnType.ENC_DEC
                                                   for k in kinds]


@pytest.fixture
def no_host_reads(monkeypatch):
    """Any read of a tensor's value into Python (`.item()`, `.tolist()`, `bool()`, `int()`,
    `float()`, using a tensor as an index) raises: each would be a GPU -> host sync."""
    def refuse(self, *args, **kwargs):
        raise AssertionError("a tensor value was read back to the host")

    for name in ("item", "tolist", "__bool__", "__int__", "__float__", "__index__"):
        monkeypatch.setattr(torch.Tensor, name, refuse)


@pytest.mark.parametrize("kind", ["encoder", "upsampler", "single"])
def test_a_window_is_sampled_without_reading_a_value_back(kind, request):
    from jukelite.inference.options import SamplingSettings

    prior, cond, _, prefix = window_setup(kind)
    settings = SamplingSettings(temperature=0.9, top_k=5, top_p=0.9)
    expected = sample_window(prior, cond, prefix, settings, torch.Generator().manual_seed(3),
                             step="static")
    request.getfixturevalue("no_host_reads")
    with pytest.raises(AssertionError, match="read back"):
        torch.ones(1).item()  # the guard is on
    got = sample_window(prior, cond, prefix, settings, torch.Generator().manual_seed(3),
                        step="static")
    assert torch.equal(got, expected)
    assert torch.equal(got[:, : prefix.shape[1]], prefix)


def test_the_window_stream_is_made_on_the_sampling_device():
    default = window_generator(7, 2, 3, 1)
    on_cpu = window_generator(7, 2, 3, 1, device=torch.device("cpu"))
    assert default.device == on_cpu.device == torch.device("cpu")
    assert default.initial_seed() == on_cpu.initial_seed()
    assert window_generator(7, 2, 4, 1).initial_seed() != default.initial_seed()
    assert torch.equal(torch.rand(5, generator=default), torch.rand(5, generator=on_cpu))


def test_the_xformers_import_is_tried_once(monkeypatch):
    tries = []
    real_import = builtins.__import__

    def counting_import(name, *args, **kwargs):
        if name.startswith("xformers"):
            tries.append(name)
            raise ImportError("no xformers here")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(attn_mod, "_XFORMERS", None)
    monkeypatch.setattr(builtins, "__import__", counting_import)
    cuda = torch.device("cuda")  # only the device's type is read: no GPU needed
    assert [attn_mod.attention_backend(cuda) for _ in range(5)] == ["sdpa"] * 5
    assert tries == ["xformers.ops"]
    assert attn_mod.attention_backend(torch.device("cpu")) == "sdpa"


def test_step_kinds_of_the_api_switches():
    assert [step_kind(compile, graphs) for compile in (False, True) for graphs in (False, True)
            ] == ["cached", "graphed", "compiled", "compiled-graphed"]
    assert set(STEP_KINDS) >= {"cached", "static", "compiled", "graphed", "compiled-graphed"}


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal without CUDA")
def test_cuda_graphs_are_refused_without_a_cuda_device(tmp_path, capsys, monkeypatch):
    from jukelite.api import Jukebox
    from jukelite.cli import main
    from jukelite.inference.run import Sampler

    with pytest.raises(ValueError, match="cuda_graphs=True needs a CUDA device; got cpu"):
        check_cuda_graphs(True, torch.device("cpu"))
    check_cuda_graphs(False, torch.device("cpu"))  # off: nothing to check
    # refused before the bundle is read (the path does not exist)
    with pytest.raises(ValueError, match="cuda_graphs=True needs a CUDA device"):
        Jukebox(tmp_path / "no-bundle", "cpu", cuda_graphs=True)
    with pytest.raises(ValueError, match="needs a CUDA device"):
        Sampler(None, torch.device("cpu"), step="graphed")
    code = main(["sample", "--cuda-graphs", "--artist", "a", "-o", str(tmp_path / "out"),
                 "--quiet"])
    assert code == 2
    err = capsys.readouterr().err
    assert "--cuda-graphs needs a CUDA device; got cpu" in err
    assert not (tmp_path / "out").exists()


def matmul_precision() -> tuple:
    return torch.backends.cuda.matmul.allow_tf32, torch.backends.mkldnn.matmul.fp32_precision


def test_tf32_is_switched_on_for_cuda_sampling_only():
    before = matmul_precision()
    with tf32_matmuls(torch.device("cpu")):
        assert matmul_precision() == before  # the CPU's matmuls stay exactly as they were
    with tf32_matmuls(torch.device("cuda")):  # sets the CUDA flag only (no GPU needed)
        assert torch.backends.cuda.matmul.allow_tf32 is True
        assert torch.backends.mkldnn.matmul.fp32_precision == before[1]
    assert matmul_precision() == before  # put back after the run


def test_graphed_steps_record_once_per_window(monkeypatch):
    """The graphed loop on the CPU, with recording stood in by a counter: it samples what the
    static step samples (same buffers, advanced in place) and records once per window."""
    prior, cond, _, prefix = window_setup("encoder")
    recorded = []

    def fake_capture(run, device):
        recorded.append(device)
        return run

    monkeypatch.setattr(window_mod, "capture_step", fake_capture)
    draw = [sample_window(prior, cond, prefix, generator=torch.Generator().manual_seed(2),
                          step=step) for step in ("graphed", "static", "cached")]
    assert torch.equal(draw[0], draw[1]) and torch.equal(draw[1], draw[2])
    assert recorded == [torch.device("cpu")]
