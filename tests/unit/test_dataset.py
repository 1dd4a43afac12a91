"""Training windows, the decoded-audio cache and the song-level train/valid split."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from torch.utils.data import DataLoader

import jukelite.data.dataset as dataset_mod
from jukelite.data.dataset import AudioCache, WindowDataset, split_entries
from jukelite.data.manifest import ManifestEntry, read_manifest
from jukelite.data.synth import write_synth_dataset

SR = 8000
S = 1000  # sample_length


def _ramp(n: int) -> np.ndarray:
    """Sample t holds t / 2**16: exact in float32, so a window's first value names its offset."""
    return (np.arange(n) / 2**16).astype(np.float32)


def _write(path: Path, data: np.ndarray, sr: int = SR) -> ManifestEntry:
    """Write ``[C, T]`` float audio losslessly (float WAV) and return its manifest entry."""
    sf.write(path, data.T, sr, subtype="FLOAT")
    return ManifestEntry(path=path)


def _offset_of(item: dict) -> int:
    return round(float(item["audio"][0, 0]) * 2**16)


@pytest.fixture
def songs(tmp_path):
    """A 3.6-window song (4 chunks), a 3.3-window song (3 chunks), a 0.3-window song (1)."""
    lengths = [3600, 3300, 300]
    return [_write(tmp_path / f"s{i}.wav", _ramp(n)[None]) for i, n in enumerate(lengths)]


@pytest.fixture
def cache(tmp_path):
    return AudioCache(SR, cache_dir=tmp_path / "cache")


def _ds(entries, cache, **kw) -> WindowDataset:
    return WindowDataset(entries, sample_rate=SR, sample_length=S, cache=cache, **kw)


def test_grid_length_and_eval_windows_in_order(songs, cache):
    ds = _ds(songs, cache, train=False)
    assert len(ds) == 4 + 3 + 1
    items = [ds[i] for i in range(len(ds))]
    assert [(it["song"], it["offset"]) for it in items] == [
        (0, 0), (0, 1000), (0, 2000), (0, 2600),  # trailing 0.6 window, moved back to fit
        (1, 0), (1, 1000), (1, 2000),  # trailing 0.3 window dropped
        (2, 0),
    ]
    assert [it["total_length"] for it in items] == [3600] * 4 + [3300] * 3 + [300]
    for it in items:
        assert it["audio"].shape == (1, S) and it["audio"].dtype == torch.float32
        assert _offset_of(it) == it["offset"]
    with pytest.raises(IndexError):
        ds[len(ds)]


def test_short_song_is_zero_padded_at_the_end(songs, cache):
    item = _ds(songs[2:], cache, train=True)[5]
    assert (item["offset"], item["total_length"]) == (0, 300)
    assert torch.equal(item["audio"][0, :300], torch.from_numpy(_ramp(300)))
    assert torch.all(item["audio"][0, 300:] == 0)


def test_train_items_are_a_function_of_seed_and_index(songs, cache, tmp_path):
    a = _ds(songs, cache, seed=3, random_shift=True)
    b = _ds(songs, AudioCache(SR, cache_dir=tmp_path / "cache"), seed=3, random_shift=True)
    c = _ds(songs, cache, seed=4, random_shift=True)
    for i in [0, 1, 7, len(a), 10_000, 2**40]:  # far past one epoch too
        x, y = a[i], b[i]
        assert (x["song"], x["offset"]) == (y["song"], y["offset"])
        assert torch.equal(x["audio"], y["audio"])
    assert [a[i]["offset"] for i in range(20)] != [c[i]["offset"] for i in range(20)]
    assert a[np.int64(5)]["offset"] == a[5]["offset"]
    with pytest.raises(IndexError):
        a[-1]


def test_train_draws_cover_the_grid_and_stay_inside_songs(songs, cache):
    plain = _ds(songs, cache)
    grid = {(it["song"], it["offset"]) for it in (plain[i] for i in range(400))}
    assert grid == {(s, o) for s, o in [(0, 0), (0, 1000), (0, 2000), (0, 2600), (1, 0),
                                        (1, 1000), (1, 2000), (2, 0)]}
    shifted = _ds(songs, cache, random_shift=True)
    offsets = set()
    for i in range(400):
        it = shifted[i]
        assert 0 <= it["offset"] <= max(it["total_length"] - S, 0)
        assert _offset_of(it) == it["offset"]
        offsets.add(it["offset"])
    assert len(offsets) > 50  # the jitter really moves windows off the grid


def test_random_downmix_varies_stereo_and_leaves_mono_alone(tmp_path, cache):
    stereo = _write(tmp_path / "st.wav", np.stack([np.full(2000, 0.5), np.full(2000, -0.5)]))
    mono = _write(tmp_path / "mono.wav", np.full((1, 2000), 0.25))
    # mono output = m * 0.5 + (1 - m) * -0.5 = m - 0.5
    mixes = [float(_ds([stereo], cache, random_downmix=True)[i]["audio"][0, 0]) + 0.5
             for i in range(40)]
    assert all(0.0 <= m < 1.0 for m in mixes) and np.std(mixes) > 0.15
    fixed = _ds([stereo], cache, random_downmix=False)
    assert all(torch.all(fixed[i]["audio"] == 0.0) for i in range(5))
    evaluated = _ds([stereo], cache, train=False, random_downmix=True)
    assert torch.all(evaluated[0]["audio"] == 0.0)  # no augmentation in eval mode
    m = _ds([mono], cache, random_downmix=True)
    assert all(torch.all(m[i]["audio"] == 0.25) for i in range(5))
    two = _ds([mono], cache, channels=2)[0]["audio"]
    assert two.shape == (2, S) and torch.equal(two[0], two[1])


def test_cache_decodes_each_file_once_and_persists(songs, cache, tmp_path, monkeypatch):
    calls = []
    real = dataset_mod.load_audio

    def counting(path, *args, **kwargs):
        calls.append(Path(path).name)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(dataset_mod, "load_audio", counting)
    ds = _ds(songs, cache, random_shift=True)
    for i in range(50):
        ds[i]
    assert sorted(calls) == ["s0.wav", "s1.wav", "s2.wav"]
    files = sorted((tmp_path / "cache").rglob("*.npy"))
    assert len(files) == 3
    arr = cache.load(songs[0].path)
    assert arr.dtype == np.float32 and arr.shape == (1, 3600) and not arr.flags.writeable
    # A new cache over the same folder (another process, a later run) decodes nothing.
    again = _ds(songs, AudioCache(SR, cache_dir=tmp_path / "cache"))
    again[0]
    assert len(calls) == 3
    # Changing the file changes its key, so it is decoded again.
    _write(songs[1].path, _ramp(4000)[None])
    os.utime(songs[1].path, ns=(1, 1))
    assert _ds(songs, AudioCache(SR, cache_dir=tmp_path / "cache")).lengths.tolist() == [
        3600, 4000, 300]
    assert calls[3:] == ["s1.wav"]


def test_cache_resamples_and_keeps_channels(tmp_path):
    entry = _write(tmp_path / "st.wav", np.random.default_rng(0).uniform(-0.5, 0.5, (2, 4000)),
                   sr=16000)
    cache = AudioCache(SR, cache_dir=tmp_path / "c")
    arr = cache.load(entry.path)
    assert arr.shape == (2, 2000)
    ds = WindowDataset([entry], sample_rate=SR, sample_length=500, cache=cache)
    assert ds[0]["total_length"] == 2000 and ds[0]["audio"].shape == (1, 500)
    with pytest.raises(ValueError, match="16000 Hz|8000 Hz"):
        WindowDataset([entry], sample_rate=16000, sample_length=500, cache=cache)


def test_picklable_and_default_collatable(songs, cache):
    ds = _ds(songs, cache, random_shift=True, random_downmix=True)
    ds[0]  # open a memmap, which must not travel with the pickle
    clone = pickle.loads(pickle.dumps(ds))
    assert clone.cache._open == {}
    assert torch.equal(clone[9]["audio"], ds[9]["audio"])
    batch = next(iter(DataLoader(ds, batch_size=4)))
    assert batch["audio"].shape == (4, 1, S)
    assert all(batch[k].dtype == torch.int64 for k in ("offset", "total_length", "song"))


def test_bad_arguments(songs, cache):
    with pytest.raises(ValueError, match="no songs"):
        _ds([], cache)
    with pytest.raises(ValueError, match="sample_length"):
        WindowDataset(songs, sample_rate=SR, sample_length=0, cache=cache)
    with pytest.raises(ValueError, match="channels"):
        _ds(songs, cache, channels=3)
    with pytest.raises(ValueError, match="missing.wav"):
        _ds([ManifestEntry(path=Path("/nonexistent/missing.wav"))], cache)


def test_windows_over_synthetic_flac_songs(tmp_path, cache):
    manifest = write_synth_dataset(tmp_path / "demo", n_songs=2, seconds=1.0, sample_rate=SR)
    ds = _ds(read_manifest(manifest), cache, train=False)
    assert len(ds) == 2 * 8
    assert ds[15]["offset"] == 7000 and ds[15]["song"] == 1
    assert float(ds[3]["audio"].abs().max()) > 0.05


# --- split_entries -----------------------------------------------------------------------

def _entries(n: int, root: str = "/data", **kw) -> list[ManifestEntry]:
    return [ManifestEntry(path=Path(f"{root}/album/song_{i:03d}.flac"), **kw) for i in range(n)]


def test_split_is_stable_across_machines_and_seeds():
    here = split_entries(_entries(200), 0.3, seed=1)
    there = split_entries(_entries(200, root="/mnt/other/place"), 0.3, seed=1)
    assert [e.path.name for e in here[1]] == [e.path.name for e in there[1]]
    assert 35 <= len(here[1]) <= 85 and len(here[0]) + len(here[1]) == 200
    reordered = split_entries(_entries(200)[::-1], 0.3, seed=1)
    assert {e.path.name for e in reordered[1]} == {e.path.name for e in here[1]}
    other_seed = split_entries(_entries(200), 0.3, seed=2)
    assert {e.path.name for e in other_seed[1]} != {e.path.name for e in here[1]}


def test_split_honours_explicit_splits():
    entries = _entries(6)
    entries[0].split = "valid"
    entries[1].split = "train"
    train, valid = split_entries(entries, 0.0)
    assert [e.path.name for e in valid] == ["song_000.flac"]
    assert len(train) == 5
    train, valid = split_entries(entries, 0.99)  # the rest hash into valid, but not song 1
    assert entries[1] in train and entries[0] in valid
    assert len(train) >= 1


def test_split_never_leaves_valid_or_train_empty():
    train, valid = split_entries(_entries(3), 1e-9)
    assert len(valid) == 1 and len(train) == 2
    train, valid = split_entries(_entries(3), 0.0)
    assert (len(train), len(valid)) == (3, 0)
    train, valid = split_entries(_entries(1), 0.5)
    assert (len(train), len(valid)) == (1, 0)
    train, valid = split_entries(_entries(2), 0.999999)
    assert (len(train), len(valid)) == (1, 1)
    with pytest.raises(ValueError, match="all 2 songs are marked split='valid'"):
        split_entries(_entries(2, split="valid"), 0.1)
    with pytest.raises(ValueError, match="valid_fraction"):
        split_entries(_entries(2), 1.0)
