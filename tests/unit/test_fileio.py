"""Tests for jukelite.fileio: atomic writes leave either the full new file or nothing."""

import json

import pytest

from jukelite.fileio import atomic_path, write_json_atomic, write_text_atomic


def test_atomic_path_keeps_suffix_and_directory(tmp_path):
    target = tmp_path / "sub" / "dir" / "out.wav"
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent
        assert tmp.suffix == ".wav"
        assert tmp != target
        tmp.write_bytes(b"abc")
        assert not target.exists()
    assert target.read_bytes() == b"abc"
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.wav"]


def test_atomic_path_body_raises_leaves_nothing(tmp_path):
    target = tmp_path / "out.json"
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_path(target) as tmp:
            tmp.write_text("partial")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_atomic_path_failure_keeps_old_file(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(target) as tmp:
            tmp.write_text("new")
            raise KeyboardInterrupt
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_atomic_path_replaces_and_uses_normal_permissions(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    write_text_atomic(target, "new ünïcode")
    assert target.read_text(encoding="utf-8") == "new ünïcode"
    # mkstemp makes 0600 files; the result must get the permissions a plain open() gives.
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    assert target.stat().st_mode & 0o777 == plain.stat().st_mode & 0o777


def test_write_json_atomic_round_trip(tmp_path):
    obj = {"a": [1, 2.5, "é"], "b": None}
    path = tmp_path / "x" / "rec.json"
    write_json_atomic(path, obj)
    text = path.read_text(encoding="utf-8")
    assert json.loads(text) == obj
    assert "é" in text and text.endswith("\n")


def test_write_json_atomic_rejects_nan_and_leaves_nothing(tmp_path):
    with pytest.raises(ValueError):
        write_json_atomic(tmp_path / "rec.json", {"loss": float("nan")})
    assert list(tmp_path.iterdir()) == []
