"""Chunked encode/decode and the encode/decode/reconstruct file commands on a tiny bundle."""

import json

import pytest
import torch

from jukelite.audio import audio_info, load_audio, save_audio
from jukelite.bundle import BundleError, load_vqvae_level
from jukelite.inference.codec import decode_file, encode_file, load_bundle_audio, reconstruct_file
from jukelite.inference.codes import CodesError, load_codes, save_codes
from jukelite.vqvae.chunked import _chunked, decode_codes, encode_audio
from jukelite.vqvae.losses import reconstruction_metrics

pytestmark = pytest.mark.usefixtures("single_thread")

RATE = 8000
LENGTH = 1001  # not a multiple of either hop (4, 8)


def random_audio(batch: int = 1, length: int = LENGTH, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, 1, length, generator=generator) * 0.3).clamp(-1, 1)


@pytest.fixture
def wav(tmp_path):
    path = tmp_path / "song.wav"
    save_audio(path, random_audio()[0], RATE)
    return path


# ----------------------------------------------------------------------------- chunking
@pytest.mark.parametrize(("tokens", "chunk", "context", "scale"),
                         [(10, 3, 0, 1), (10, 3, 2, 1), (10, 4, 1, 5), (7, 7, 3, 2), (5, 9, 1, 1),
                          (6, 0, 0, 1)])
def test_chunked_stitches_each_chunk_in_place(tokens, chunk, context, scale):
    calls = []

    def run(lo: int, hi: int) -> torch.Tensor:
        calls.append((lo, hi))
        return torch.arange(lo * scale, hi * scale).view(1, -1)

    joined = _chunked(tokens, chunk, context, run, scale, "test", progress=False)
    assert torch.equal(joined, torch.arange(tokens * scale).view(1, -1))
    step = max(1, chunk)
    assert len(calls) == -(-tokens // step)
    for start, (lo, hi) in zip(range(0, tokens, step), calls, strict=True):
        assert lo == max(0, start - context)
        assert hi == min(tokens, start + step + context)


def test_one_chunk_equals_the_whole_model_pass(tiny_level):
    for level in (0, 1):
        model = tiny_level(level)
        audio = random_audio(batch=2)
        codes = encode_audio(model, audio)  # default chunk (20 s) covers everything
        assert torch.equal(codes, model.encode(audio))
        assert codes.shape == (2, -(-LENGTH // model.hop_length))
        assert codes.unique().numel() > 2
        audio_out = decode_codes(model, codes)
        assert torch.equal(audio_out, model.decode(codes))
        assert audio_out.shape == (2, 1, codes.shape[1] * model.hop_length)


@pytest.mark.parametrize("level", [0, 1])
def test_several_chunks_shapes(tiny_level, level):
    model = tiny_level(level)
    hop = model.hop_length
    audio = random_audio(batch=2)
    # 0.01 s = 80 samples: 20 or 10 tokens per chunk, so about a dozen or more chunks
    codes = encode_audio(model, audio, chunk_seconds=0.01, context_seconds=0.0)
    assert codes.shape == (2, -(-LENGTH // hop))
    assert codes.dtype == torch.int64
    decoded = decode_codes(model, codes, chunk_seconds=0.01, context_seconds=0.0)
    assert decoded.shape == (2, 1, codes.shape[1] * hop)


@pytest.mark.parametrize("level", [0, 1])
def test_several_chunks_with_enough_context_match_a_whole_pass(tiny_level, level):
    model = tiny_level(level)
    audio = random_audio(batch=2)
    whole_codes = model.encode(audio)
    codes = encode_audio(model, audio, chunk_seconds=0.01, context_seconds=0.03)
    assert torch.equal(codes, whole_codes)
    decoded = decode_codes(model, whole_codes, chunk_seconds=0.01, context_seconds=0.03)
    assert torch.allclose(decoded, model.decode(whole_codes), atol=1e-5)


# ----------------------------------------------------------------------------- files
def test_load_bundle_audio_resamples_to_the_bundle_rate(tiny_bundle, tmp_path):
    path = tmp_path / "fast.wav"
    save_audio(path, random_audio(length=1600)[0], 16000)
    audio = load_bundle_audio(path, tiny_bundle)
    assert audio.shape == (1, 1, 800)


def test_encode_file(tiny_bundle, wav, tmp_path):
    path = encode_file(wav, tiny_bundle, tmp_path / "codes", progress=False)
    assert path == tmp_path / "codes.safetensors"
    codes, info = load_codes(path)
    assert sorted(codes) == [0, 1]
    assert codes[0].shape == (1, 251) and codes[1].shape == (1, 126)
    assert info["sample_rate"] == RATE and info["channels"] == 1
    assert info["hop_lengths"] == {"0": 4, "1": 8}
    assert info["audio_samples"] == LENGTH
    assert info["source"] == str(wav)
    audio = load_bundle_audio(wav, tiny_bundle)
    assert torch.equal(codes[0], load_vqvae_level(tiny_bundle, 0).encode(audio))


def test_encode_file_chosen_levels(tiny_bundle, wav, tmp_path):
    codes, info = load_codes(encode_file(wav, tiny_bundle, tmp_path / "c.safetensors", levels=[1],
                                         progress=False))
    assert sorted(codes) == [1]
    assert info["hop_lengths"] == {"1": 8}
    with pytest.raises(BundleError, match=r"has no VQ-VAE level \[3\]"):
        encode_file(wav, tiny_bundle, tmp_path / "d.safetensors", levels=[0, 3], progress=False)
    assert not (tmp_path / "d.safetensors").exists()


@pytest.mark.parametrize("level", [None, 0, 1])
def test_decode_file_restores_the_input_length(tiny_bundle, wav, tmp_path, level):
    codes_path = encode_file(wav, tiny_bundle, tmp_path / "c", progress=False)
    out = decode_file(codes_path, tiny_bundle, tmp_path / "out.wav", level=level, progress=False)
    assert out == tmp_path / "out.wav"
    info = audio_info(out)
    assert info.frames == LENGTH
    assert info.sample_rate == RATE and info.channels == 1
    codes, _ = load_codes(codes_path)
    model = load_vqvae_level(tiny_bundle, 0 if level is None else level)
    expected = model.decode(codes[model.level])[0, :, :LENGTH].clamp(-1, 1)
    assert torch.allclose(load_audio(out), expected, atol=1 / 16000)  # PCM_16 rounding


def test_decode_file_writes_one_file_per_sample(tiny_bundle, tmp_path):
    codes = {0: torch.randint(0, 16, (2, 10))}
    path = save_codes(tmp_path / "c", codes, {"sample_rate": RATE, "hop_lengths": {"0": 4}})
    decode_file(path, tiny_bundle, tmp_path / "out.wav", progress=False)
    assert not (tmp_path / "out.wav").exists()
    for index in range(2):
        assert audio_info(tmp_path / f"out_{index}.wav").frames == 40  # no audio_samples: t * hop


def test_decode_file_refusals(tiny_bundle, tmp_path):
    path = save_codes(tmp_path / "c", {1: torch.zeros(1, 5, dtype=torch.long)}, {})
    with pytest.raises(CodesError, match=r"has no codes for level 0 \(levels: \[1\]\)"):
        decode_file(path, tiny_bundle, tmp_path / "o.wav", level=0, progress=False)
    empty = save_codes(tmp_path / "e", {}, {})
    with pytest.raises(CodesError, match="holds no codes"):
        decode_file(empty, tiny_bundle, tmp_path / "o.wav", progress=False)
    assert not (tmp_path / "o.wav").exists()


@pytest.mark.parametrize(
    ("info", "codes", "expected"),
    [
        ({"sample_rate": 16000}, torch.zeros(1, 5, dtype=torch.long), "sample_rate 16000"),
        ({"hop_lengths": {"0": 8}}, torch.zeros(1, 5, dtype=torch.long), "hop_length 8"),
        ({}, torch.full((1, 5), 16), r"outside this bundle's codebook \[0, 15\]"),
    ],
)
def test_decode_file_refuses_codes_of_another_model(tiny_bundle, tmp_path, info, codes, expected):
    path = save_codes(tmp_path / "c", {0: codes}, info)
    with pytest.raises(CodesError, match=expected):
        decode_file(path, tiny_bundle, tmp_path / "o.wav", progress=False)
    assert not (tmp_path / "o.wav").exists()


def test_reconstruct_file_all_levels(tiny_bundle, wav, tmp_path):
    results = reconstruct_file(wav, tiny_bundle, tmp_path / "rec.wav", progress=False)
    assert sorted(results) == [0, 1]
    for level, hop in ((0, 4), (1, 8)):
        metrics = results[level]
        assert metrics["hop_length"] == hop
        assert 1 <= metrics["codes_used"] <= 16
        model = load_vqvae_level(tiny_bundle, level)
        audio = load_bundle_audio(wav, tiny_bundle)
        recon = decode_codes(model, encode_audio(model, audio))[..., :LENGTH]
        expected = reconstruction_metrics(audio, recon, RATE)
        for key in ("spectral_convergence_db", "stft_distance", "si_sdr_db", "l2"):
            assert metrics[key] == pytest.approx(expected[key], rel=1e-5), key
        out = tmp_path / f"rec.level{level}.wav"
        assert metrics["output"] == str(out)
        assert audio_info(out).frames == LENGTH
    assert not (tmp_path / "rec.wav").exists()


def test_reconstruct_file_one_level(tiny_bundle, wav, tmp_path):
    results = reconstruct_file(wav, tiny_bundle, tmp_path / "rec.wav", levels=[1], progress=False)
    assert list(results) == [1]
    assert audio_info(tmp_path / "rec.wav").frames == LENGTH
    audio = load_bundle_audio(wav, tiny_bundle)
    model = load_vqvae_level(tiny_bundle, 1)
    codes = model.encode(audio)
    assert results[1]["codes_used"] == codes.unique().numel()
    recon = model.decode(codes)[..., :LENGTH]
    assert results[1]["l2"] == pytest.approx((audio - recon).pow(2).mean().item(), rel=1e-4)


def test_reconstruct_file_without_output_writes_nothing(tiny_bundle, wav, tmp_path):
    results = reconstruct_file(wav, tiny_bundle, None, levels=[0], progress=False)
    assert "output" not in results[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle", "song.wav"]


def test_empty_bundle_is_refused(tmp_path, wav, make_bundle):
    bundle = make_bundle(tmp_path / "b", levels=(0,))
    manifest = bundle / "jukelite.json"
    data = json.loads(manifest.read_text())
    data["vqvae"] = {}
    manifest.write_text(json.dumps(data))
    with pytest.raises(BundleError, match="holds no VQ-VAE level yet"):
        reconstruct_file(wav, bundle, None, progress=False)
