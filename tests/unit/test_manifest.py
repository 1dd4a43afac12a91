"""Tests for jukelite.data.manifest: round trip, relative paths, and all-at-once validation."""

import json
from pathlib import Path

import pytest

from jukelite.data.manifest import ManifestEntry, ManifestError, read_manifest, write_manifest


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def write_lines(path: Path, rows: list) -> Path:
    lines = [r if isinstance(r, str) else json.dumps(r) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_round_trip_keeps_unknown_keys_and_relative_paths(tmp_path):
    touch(tmp_path / "songs" / "a.flac")
    touch(tmp_path / "b.wav")
    outside = touch(tmp_path.parent / f"{tmp_path.name}_outside.wav")
    manifest = write_lines(tmp_path / "manifest.jsonl", [
        {"path": "songs/a.flac", "artist": "Ann", "genre": ["rock", "blues"], "lyrics": "la la",
         "lyrics_timing": [[0.0, 0.5, "la"], [0.5, 1.0, "la"]], "split": "train",
         "duration": 3.5, "sample_rate": 44100, "channels": 2, "bpm": 120, "mood": {"x": 1}},
        "",
        {"path": "b.wav", "genre": "jazz"},
        {"path": str(outside)},
    ])
    entries = read_manifest(manifest)
    assert [e.path for e in entries] == [tmp_path / "songs" / "a.flac", tmp_path / "b.wav",
                                         outside]
    a, b, c = entries
    assert a.artist == "Ann" and a.genres == ["rock", "blues"] and a.split == "train"
    assert a.lyrics_timing == [(0.0, 0.5, "la"), (0.5, 1.0, "la")]
    assert (a.duration, a.sample_rate, a.channels) == (3.5, 44100, 2)
    assert a.extra == {"bpm": 120, "mood": {"x": 1}}
    assert b.artist == "unknown" and b.genres == ["jazz"] and b.lyrics == ""
    assert b.split is None and b.lyrics_timing is None and b.duration is None
    assert c.genres == ["unknown"]

    copy = tmp_path / "copy.jsonl"
    write_manifest(entries, copy)
    rows = [json.loads(line) for line in copy.read_text().splitlines()]
    assert rows[0]["path"] == "songs/a.flac"
    assert rows[0]["genre"] == ["rock", "blues"]
    assert rows[0]["bpm"] == 120 and rows[0]["mood"] == {"x": 1}
    assert rows[1] == {"path": "b.wav", "artist": "unknown", "genre": "jazz", "lyrics": ""}
    assert rows[2]["path"] == str(outside)  # outside the manifest folder: stays absolute
    assert read_manifest(copy) == entries


def test_to_json_relative_to_given_dir(tmp_path):
    entry = ManifestEntry(path=tmp_path / "x" / "a.wav", genres=["pop"])
    assert entry.to_json(tmp_path)["path"] == "x/a.wav"
    assert entry.to_json(tmp_path / "y")["path"] == str(tmp_path / "x" / "a.wav")
    with pytest.raises(ValueError, match="clash"):
        ManifestEntry(path=tmp_path / "a.wav", extra={"artist": "x"}).to_json(tmp_path)


def test_every_bad_row_reported_with_line_numbers(tmp_path):
    for name in "abcdefghij":
        touch(tmp_path / f"{name}.wav")
    manifest = write_lines(tmp_path / "manifest.jsonl", [
        {"path": "a.wav"},                                              # 1 ok
        '{"path": "b.wav", ',                                           # 2 bad JSON
        "[1, 2]",                                                       # 3 not an object
        {"artist": "x"},                                                # 4 no path
        {"path": "c.wav", "artist": 7},                                 # 5 artist type
        {"path": "d.wav", "genre": ["rock", 3]},                        # 6 genre list
        {"path": "e.wav", "lyrics_timing": [[1.0, 0.5, "w"]]},          # 7 start > end
        {"path": "f.wav", "lyrics_timing": [[1, 2, "a"], [0.5, 3, "b"]]},  # 8 order
        {"path": "g.wav", "split": "test"},                             # 9 split
        {"path": "a.wav"},                                              # 10 duplicate
        {"path": "missing.wav"},                                        # 11 missing file
        {"path": "h.wav", "sample_rate": 44100.5, "lyrics": 3},         # 12 two problems
        "",                                                             # 13 blank
        {"path": "i.wav", "genre": "ok", "duration": 2.0},              # 14 ok
    ])
    with pytest.raises(ManifestError) as info:
        read_manifest(manifest)
    problems = info.value.problems
    prefix = f"{manifest}:"
    lines = [int(p[len(prefix):].split(":")[0]) for p in problems]
    assert lines == [2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 12]
    text = str(info.value)
    assert text.startswith(f"12 problems in {manifest}:")
    assert all(p in text for p in problems)
    assert "invalid JSON" in problems[0]
    assert "expected a JSON object" in problems[1]
    assert "field 'path': expected a non-empty string, got nothing" in problems[2]
    assert "field 'artist': expected a non-empty string, got 7 (int)" in problems[3]
    assert "field 'genre'" in problems[4]
    assert "field 'lyrics_timing[0]': expected 0 <= start <= end" in problems[5]
    assert "field 'lyrics_timing[1]': expected starts in time order" in problems[6]
    assert "field 'split': expected 'train' or 'valid', got \"test\" (str)" in problems[7]
    assert "first on line 1" in problems[8]
    assert "missing.wav" in problems[9] and "not found" in problems[9]
    assert sorted(p.split(": ")[1] for p in problems[10:]) == ["field 'lyrics'",
                                                               "field 'sample_rate'"]


def test_check_files_false_and_timing_beyond_duration(tmp_path):
    manifest = write_lines(tmp_path / "m.jsonl", [{"path": "nowhere.wav"}])
    assert read_manifest(manifest, check_files=False)[0].path == tmp_path / "nowhere.wav"
    bad = write_lines(tmp_path / "t.jsonl", [
        {"path": "x.wav", "duration": 1.0, "lyrics_timing": [[0.2, 1.5, "late"]]}])
    with pytest.raises(ManifestError, match=r"t\.jsonl:1: field 'lyrics_timing\[0\]'.*1\.5"):
        read_manifest(bad, check_files=False)


def test_missing_empty_and_non_utf8_manifest(tmp_path):
    with pytest.raises(ManifestError, match=r"nope\.jsonl: manifest file not found"):
        read_manifest(tmp_path / "nope.jsonl")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    with pytest.raises(ManifestError, match="no songs"):
        read_manifest(empty)
    binary = tmp_path / "bin.jsonl"
    binary.write_bytes(b'{"path": "\xff"}\n')
    with pytest.raises(ManifestError, match="UTF-8"):
        read_manifest(binary)


def test_line_separator_inside_lyrics_is_not_a_line_break(tmp_path):
    touch(tmp_path / "a.wav")
    manifest = tmp_path / "m.jsonl"
    row = json.dumps({"path": "a.wav", "lyrics": "one\u2028two"}, ensure_ascii=False)
    manifest.write_text(row + "\r\n", encoding="utf-8")
    assert read_manifest(manifest)[0].lyrics == "one\u2028two"


def test_write_manifest_is_atomic(tmp_path):
    target = tmp_path / "m.jsonl"
    target.write_text("old\n")
    bad = ManifestEntry(path=tmp_path / "a.wav", extra={"x": object()})
    with pytest.raises(TypeError):
        write_manifest([bad], target)
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["m.jsonl"]
