"""jukelite's import of Jukebox checkpoints against the original Jukebox code, on the CPU.

Reduced models with the released structure (tests/parity/cases.py) are randomised, saved in the
released checkpoint format, restored and run by Jukebox itself; jukelite imports the same files
and must give the same codes, audio (1e-5) and per-token log-probabilities (1e-4). Run with
`JUKEBOX_SRC=/path/to/jukebox-export python -m pytest -q -s tests/parity` (the table of
differences is printed at the end), or `python -m tests.parity.report`.
"""

from __future__ import annotations

import zipfile

import pytest
import torch

from tests.parity.jukebox_reference import skip_reason

if skip_reason():
    pytest.skip(skip_reason(), allow_module_level=True)

from tests.parity import compare  # noqa: E402
from tests.parity import jukebox_reference as ref  # noqa: E402
from tests.parity.cases import (  # noqa: E402
    MODEL_SETS,
    OFFSET,
    PRIOR_CASES,
    SR,
    TOTAL_LENGTH,
    PriorReference,
)

# (model set, prior): every prior in the bundle of a released set; the 1b_lyrics set puts the
# v2-labelled upsamplers beside its v3 top prior, as released.
SCORED = [(s, p) for s, presets in MODEL_SETS.items() for p in presets
          if s != "5b_lyrics" or p == "prior_5b_lyrics"]
CACHED = [("5b", "upsampler_level_0"), ("5b", "upsampler_level_1"), ("5b", "prior_5b"),
          ("5b_lyrics", "prior_5b_lyrics"), ("1b_lyrics", "prior_1b_lyrics")]


def _ids(params: list[tuple[str, str]]) -> list[str]:
    return [f"{s}-{p}" for s, p in params]


def _check(rows: list[compare.Row]) -> None:
    bad = [str(r) for r in rows if not r.ok]
    assert not bad, "parity broken:\n" + compare.HEADER + "\n" + "\n".join(bad)


# ---------------------------------------------------------------------- the Jukebox side
def test_checkpoints_are_in_the_released_format(references):
    """Legacy (non-zip) torch pickles of {hps, model, opt, step}, loadable with weights_only,
    float16 Conv1D weights exactly when fp16_params, nothing left at zero, and the model
    Jukebox restored from each file holds exactly its tensors."""
    models = {references.vqvae.checkpoint: (references.vqvae.model, references.vqvae.hps)}
    models.update({r.checkpoint: (r.model, r.hps) for r in references.priors.values()})
    for path, (model, hps) in models.items():
        assert not zipfile.is_zipfile(path), path
        data = torch.load(path, map_location="cpu", weights_only=True)
        assert set(data) == {"hps", "model", "opt", "step"}, path
        assert data["opt"] is None and data["step"] == ref.CHECKPOINT_STEP
        assert data["hps"] == dict(hps)
        restored = model.state_dict()
        assert list(data["model"]) == list(restored), path
        for key, tensor in data["model"].items():
            assert torch.equal(tensor, restored[key]), f"{path.name}: {key}"
            conv1d = key.endswith(".w")
            expected = torch.float16 if conv1d and hps.get("fp16_params") else torch.float32
            assert tensor.dtype == expected, f"{path.name}: {key} is {tensor.dtype}"
            assert tensor.float().abs().max() > 0, f"{path.name}: {key} is all zero"
    fp16 = [r for r in references.priors.values() if r.hps.fp16_params]
    assert {r.case.preset for r in fp16} == {"prior_5b", "prior_5b_lyrics"}
    for preset in ("upsampler_level_0", "upsampler_level_1"):  # cond_c_res=1 names
        keys = references.priors[preset].model.state_dict()
        assert "conditioner_blocks.0.cond.model.1.0.blocks.0.model.1.weight" in keys


def _changed(r: PriorReference, y=None, upper=None) -> float:
    log_probs = ref.prior_log_probs(r.model, r.codes, r.y if y is None else y,
                                    r.upper if upper is None else upper)
    return float((log_probs - r.log_probs).abs().max())


@pytest.mark.parametrize("preset", list(PRIOR_CASES))
def test_jukebox_reference_is_informative(references, preset):
    """Jukebox's outputs are O(1) and depend on every conditioning input, so equal numbers on
    the jukelite side mean a faithful mapping, not a degenerate model."""
    r = references.priors[preset]
    assert 0.3 < float(r.logits.std()) < 5.0
    assert torch.isfinite(r.log_probs).all() and float(r.log_probs.min()) > -30
    artist = r.y.clone()
    artist[0, 3] = 1
    assert _changed(r, y=artist) > 1e-3
    if r.case.level == 2:  # timing: it changes inside the window, and between windows
        with ref.cpu_shims():
            _, timing = r.model.y_emb(r.y[:, : r.n_label])
        assert (timing[0, 0] - timing[0, -1]).abs().max() > 1e-3
        later = r.y.clone()
        later[0, 1] += 60 * SR // 128 * 128
        assert _changed(r, y=later) > 1e-3
    else:
        assert _changed(r, upper=r.upper.roll(1, dims=1)) > 1e-3
    if r.model.n_tokens:
        lyrics = r.y.clone()
        lyrics[0, r.n_label:] = lyrics[0, r.n_label:].roll(1)
        assert _changed(r, y=lyrics) > 1e-3


def test_jukebox_vqvae_reference(references):
    v = references.vqvae
    for codes, decoded in zip(v.codes, v.decoded, strict=True):
        assert codes.unique().numel() >= min(32, codes.numel() // 4)
        assert torch.isfinite(decoded).all() and 0.02 < float(decoded.std()) < 3.0


def test_jukebox_label_vectors(references):
    """Jukebox's Labeller read the real id files: v2 bag of genre words, v3 whole names."""
    for preset, r in references.priors.items():
        hop = 128 if r.case.level == 2 else 4 ** r.case.level * 8
        head = [TOTAL_LENGTH, OFFSET, int(r.hps.n_ctx) * hop]
        if r.hps.labels_v3:
            head += [559, 282]  # "guns n' roses", "blues rock"
        else:
            head += [993, 2, 8, -1, -1, -1]  # guns_n_roses, [blues, rock]
        assert r.y[0, : r.n_label].tolist() == head, preset
        assert r.y.shape[1] == r.n_label + int(r.model.n_tokens)
        assert (r.y[0, r.n_label:] > 0).all(), f"{preset}: a padded lyric window"


# ---------------------------------------------------------------------- jukelite against it
def test_vqvae_parity(references, bundles, record):
    _check(record(compare.vqvae_rows(references, bundles("5b"))))


@pytest.mark.parametrize(("model_set", "preset"), SCORED, ids=_ids(SCORED))
def test_prior_parity(references, bundles, record, model_set, preset):
    _check(record(compare.prior_rows(references, preset, bundles(model_set), model_set)))


@pytest.mark.parametrize(("model_set", "preset"), CACHED, ids=_ids(CACHED))
def test_cached_sampling_matches_teacher_forcing(references, bundles, record, model_set,
                                                 preset):
    _check(record(compare.cached_rows(references, preset, bundles(model_set), model_set)))


def test_cpu_shims_stay_inside_jukebox(references):
    """After Jukebox ran: torch's own CUDA types, `.cuda()` and the import system are as before;
    only Jukebox's modules see the CPU proxy."""
    import sys

    long = torch.zeros(1, dtype=torch.long)
    assert not isinstance(long, torch.cuda.LongTensor)
    assert torch.Tensor.cuda is not ref._identity and torch.nn.Module.cuda is not ref._identity
    assert sys.modules.get("apex", 0) is not None and sys.modules.get("mpi4py", 0) is not None
    jb = ref.jukebox_modules()
    assert jb.prior.t is not torch and isinstance(long, jb.prior.t.cuda.LongTensor)
