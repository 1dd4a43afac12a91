"""Tests for jukelite.data.index: folder scan, metadata sidecars and their precedence, problems."""

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from jukelite.data.index import index_folder
from jukelite.data.manifest import read_manifest

SR = 8000


def make_audio(path: Path, seconds: float = 0.25, channels: int = 1, sr: int = SR) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = int(seconds * sr)
    data = 0.1 * np.sin(np.arange(frames * channels, dtype=np.float32)).reshape(frames, channels)
    fmt = {".flac": "FLAC", ".wav": "WAV", ".ogg": "OGG", ".aiff": "AIFF"}[path.suffix.lower()]
    sf.write(path, data, sr, format=fmt)
    return path


def by_name(result) -> dict:
    return {e.path.name: e for e in result.entries}


def test_finds_nested_files_and_reads_headers(tmp_path, capsys):
    root = tmp_path / "music"
    make_audio(root / "b.wav", seconds=0.5, channels=2)
    make_audio(root / "x" / "y" / "a.FLAC", sr=16000)
    make_audio(root / "x" / "c.ogg")
    make_audio(root / ".hidden" / "h.wav")
    make_audio(root / "._b.wav")
    (root / "notes.md").write_text("not audio")
    result = index_folder(root, root / "manifest.jsonl", progress=True)
    assert "indexing" in capsys.readouterr().err
    assert result.problems == []
    rel = [e.path.relative_to(root.resolve()).as_posix() for e in result.entries]
    assert rel == ["b.wav", "x/c.ogg", "x/y/a.FLAC"]
    b = result.entries[0]
    assert (b.duration, b.sample_rate, b.channels) == (0.5, SR, 2)
    assert result.entries[2].sample_rate == 16000
    assert (b.artist, b.genres, b.lyrics, b.split) == ("unknown", ["unknown"], "", None)

    out = root / "manifest.jsonl"
    result.write(out)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["path"] for r in rows] == ["b.wav", "x/c.ogg", "x/y/a.FLAC"]
    assert read_manifest(out) == result.entries


def test_metadata_sources_and_precedence(tmp_path):
    root = tmp_path / "data"
    for name in ["a.wav", "b.wav", "c.wav", "sub/d.wav"]:
        make_audio(root / name)
    make_audio(root / "js" / "e.wav")
    make_audio(root / "js" / "f.wav")
    make_audio(root / "map" / "g.flac")
    (root / "metadata.csv").write_text(
        "file,artist,genre,lyrics,split,bpm\n"
        "a.wav,Ann,rock; blues,folder lyrics,train,120\n"
        'b.wav,Bob,jazz,"two\nlines",valid,\n'
        "sub/d.wav,Dee,,,,90\n",
        encoding="utf-8",
    )
    # per-file json beats folder metadata; txt gives lyrics over the folder's, json over txt
    (root / "a.json").write_text(json.dumps({"artist": "Ann Override", "mood": "calm"}))
    (root / "a.txt").write_text("txt lyrics\n")
    (root / "b.txt").write_text("b txt lyrics")
    (root / "b.json").write_text(json.dumps({"lyrics": "json lyrics"}))
    (root / "js" / "metadata.json").write_text(json.dumps([
        {"file": "e.wav", "artist": "Eve", "genre": ["pop", "funk"],
         "lyrics_timing": [[0.0, 0.1, "hi"]]},
        {"file": "f.wav", "genre": "metal", "extra_key": [1, 2]},
    ]))
    (root / "map" / "metadata.json").write_text(json.dumps({"g.flac": {"artist": "Gus"}}))

    result = index_folder(root, root / "m.jsonl", progress=False)
    assert result.problems == []
    e = by_name(result)
    assert (e["a.wav"].artist, e["a.wav"].genres) == ("Ann Override", ["rock", "blues"])
    assert e["a.wav"].lyrics == "txt lyrics" and e["a.wav"].split == "train"
    assert e["a.wav"].extra == {"bpm": "120", "mood": "calm"}
    assert (e["b.wav"].artist, e["b.wav"].genres, e["b.wav"].split) == ("Bob", ["jazz"], "valid")
    assert e["b.wav"].lyrics == "json lyrics" and e["b.wav"].extra == {}
    assert (e["c.wav"].artist, e["c.wav"].genres, e["c.wav"].lyrics) == ("unknown", ["unknown"], "")
    assert (e["d.wav"].artist, e["d.wav"].genres) == ("Dee", ["unknown"])
    assert e["d.wav"].extra == {"bpm": "90"}
    assert (e["e.wav"].artist, e["e.wav"].genres) == ("Eve", ["pop", "funk"])
    assert e["e.wav"].lyrics_timing == [(0.0, 0.1, "hi")]
    assert e["f.wav"].genres == ["metal"] and e["f.wav"].extra == {"extra_key": [1, 2]}
    assert e["g.flac"].artist == "Gus"


def test_reports_every_problem_at_once(tmp_path):
    root = tmp_path / "data"
    make_audio(root / "good.wav", seconds=1.0)
    make_audio(root / "short.wav", seconds=0.25)
    (root / "corrupt.flac").write_bytes(b"garbage" * 50)
    (root / "zero.wav").write_bytes(b"")
    sf.write(root / "empty.wav", np.zeros((0, 1), dtype=np.float32), SR)
    make_audio(root / "badsplit.wav", seconds=1.0)
    make_audio(root / "badgenre.wav", seconds=1.0)
    make_audio(root / "dup.wav", seconds=1.0)
    make_audio(root / "late.wav", seconds=1.0)
    (root / "metadata.csv").write_text(
        "file,split\n"
        "ghost.wav,train\n"
        "badsplit.wav,test\n"
        "dup.wav,train\n"
        "dup.wav,valid\n"
        "notes.md,train\n"
    )
    (root / "notes.md").write_text("x")
    (root / "badgenre.json").write_text(json.dumps({"genre": ["ok", 5], "duration": 3}))
    (root / "late.json").write_text(json.dumps({"lyrics_timing": [[0.5, 2.0, "late"]]}))

    result = index_folder(root, root / "m.jsonl", min_duration=0.5, progress=False)
    assert [e.path.name for e in result.entries] == ["good.wav"]
    problems = "\n".join(result.problems)

    def has(*parts: str) -> bool:
        return any(all(p in line for p in parts) for line in result.problems)

    assert has("metadata.csv:2", "ghost.wav", "no such file"), problems
    assert has("metadata.csv:3", "field 'split'", "test"), problems
    assert has("metadata.csv:5", "dup.wav", "already described at", "metadata.csv:4"), problems
    assert has("metadata.csv:6", "notes.md", "not an indexed audio file"), problems
    assert has("badgenre.json", "field 'genre'"), problems
    assert has("badgenre.json", "field 'duration'", "indexer"), problems
    assert has("late.wav", "lyrics_timing", "2"), problems
    assert has("corrupt.flac", "cannot read audio"), problems
    assert has("zero.wav", "file is empty (0 bytes)"), problems
    assert has("empty.wav", "empty"), problems
    assert has("short.wav", "too short", "0.250 s", "0.500 s"), problems
    assert len(result.problems) == 11, problems


def test_unparsable_folder_metadata_leaves_its_files_out(tmp_path):
    root = tmp_path / "data"
    make_audio(root / "top.wav")
    make_audio(root / "broken" / "a.wav")
    make_audio(root / "broken" / "deeper" / "b.wav")
    (root / "broken" / "metadata.json").write_text('{"a.wav": {"artist": "A"')
    (root / "csvless" / "metadata.csv").parent.mkdir()
    (root / "csvless" / "metadata.csv").write_text("name,artist\nx.wav,X\n")
    result = index_folder(root, root / "m.jsonl", progress=False)
    assert [e.path.name for e in result.entries] == ["top.wav"]
    assert len(result.problems) == 3
    assert "invalid JSON" in result.problems[0] or "invalid JSON" in result.problems[1]
    assert any("expected a 'file' column" in p for p in result.problems)
    assert any("2 audio file(s)" in p for p in result.problems)


def test_missing_root_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nowhere: audio folder not found"):
        index_folder(tmp_path / "nowhere", tmp_path / "m.jsonl", progress=False)
