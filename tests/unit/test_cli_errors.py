"""No tracebacks, no silent corruption: every expected failure of a command is one `error:` line
and exit status 2, found before long work and leaving no partial output; bugs keep their
traceback and say they are bugs. Bundles are built here in milliseconds."""

from __future__ import annotations

import errno
import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import jukelite
from jukelite.audio import save_audio
from jukelite.cli import EXIT_BUG, EXIT_USAGE, main
from jukelite.fileio import OutputPathError, check_output_dir, check_output_file
from jukelite.inference.codes import CODES_FORMAT
from jukelite.inference.options import SamplingSettings
from jukelite.inference.song import clear_run, run_files
from jukelite.vqvae.losses import SILENT_SC_NOTE, reconstruction_report

pytestmark = pytest.mark.usefixtures("single_thread")

RATE = 8000  # the tiny bundles' rate (tests/conftest.py)
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    """Run every command from the test's own folder, so relative paths stay inside it."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def bundle(tmp_path, make_complete_bundle) -> Path:
    return make_complete_bundle(tmp_path / "bundle")


@pytest.fixture
def wav(tmp_path) -> Path:
    path = tmp_path / "song.wav"
    save_audio(path, torch.randn(1, 800, generator=torch.Generator().manual_seed(0)) * 0.3, RATE)
    return path


@pytest.fixture
def codes(tmp_path, bundle, wav, capsys) -> Path:
    path = tmp_path / "song.safetensors"
    assert main(["encode", str(wav), "--model", str(bundle), "-o", str(path), "--quiet"]) == 0
    capsys.readouterr()
    return path


@pytest.fixture
def a_file(tmp_path) -> Path:
    """A regular file used where a folder is needed: fails for root too."""
    path = tmp_path / "a_file"
    path.write_text("not a folder")
    return path


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, *culprits: str) -> str:
    """Exit 2, exactly one `error:` line on stderr naming every culprit, no traceback."""
    assert code == EXIT_USAGE, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), err
    for culprit in culprits:
        assert culprit in lines[0], (culprit, lines[0])
    return lines[0]


def leftovers(folder: Path) -> list[str]:
    """Hidden temporaries of atomic writes: a failed command must leave none."""
    return [p.name for p in folder.rglob(".*.tmp*")]


# --------------------------------------------------------------------------- output locations
def test_a_directory_where_a_file_is_expected(capsys, bundle, codes, tmp_path):
    (tmp_path / "out" / "song.wav").mkdir(parents=True)
    code, out, err = run(capsys, "decode", codes, "--model", bundle, "-o", "out/song.wav")
    line = assert_one_line_error(code, err)
    assert line == "error: -o out/song.wav: is an existing directory (expected a file path)"
    assert out == "" and list((tmp_path / "out" / "song.wav").iterdir()) == []


@pytest.mark.parametrize("command", [
    ["encode", "{wav}", "--model", "{bundle}", "-o", "{parent}/codes.safetensors"],
    ["decode", "{codes}", "--model", "{bundle}", "-o", "{parent}/song.wav"],
    ["reconstruct", "{wav}", "--model", "{bundle}", "-o", "{parent}/song.wav"],
    ["score", "{wav}", "--model", "{bundle}", "--level", "1", "--artist", "Ada", "--genre", "rock",
     "-o", "{parent}/scores.json"],
    ["data", "index", "{tmp}", "-o", "{parent}/manifest.jsonl"],
    ["sample", "--model", "{bundle}", "--artist", "Ada", "--genre", "rock", "--seconds", "0.02",
     "-o", "{parent}/run"],
])
def test_a_file_where_a_parent_folder_should_be(capsys, command, bundle, wav, codes, a_file,
                                                tmp_path, monkeypatch):
    """`-o some_file/x`: refused before any model is loaded (root gets the same answer)."""
    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded before the output was checked")

    monkeypatch.setattr("jukelite.api.load", no_model)
    monkeypatch.setattr("jukelite.inference.codec.load_vqvae_level", no_model)
    argv = [part.format(wav=wav, bundle=bundle, codes=codes, parent="a_file", tmp=tmp_path)
            for part in command]
    code, out, err = run(capsys, *argv, "--quiet")
    assert_one_line_error(code, err, "-o a_file/", "a_file: it is a file, not a directory")
    assert a_file.read_text() == "not a folder" and out == ""


@pytest.mark.parametrize("command", [
    ["sample", "--model", "{bundle}", "--artist", "Ada", "--genre", "rock", "--seconds", "0.02"],
    ["import", "jukebox", "--preset", "1b_lyrics", "--vqvae", "missing.pth.tar"],
])
def test_a_file_where_a_run_directory_is_expected(capsys, command, bundle, a_file):
    argv = [part.format(bundle=bundle) for part in command]
    code, _, err = run(capsys, *argv, "-o", "a_file", "--quiet")
    assert_one_line_error(code, err, "-o a_file: is an existing file (expected a directory)")


@pytest.mark.skipif(IS_ROOT, reason="root writes into read-only folders")
def test_a_folder_without_write_permission(capsys, bundle, codes, tmp_path):
    locked = tmp_path / "ro"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        code, _, err = run(capsys, "decode", codes, "--model", bundle, "-o", locked / "x.wav")
    finally:
        locked.chmod(0o755)
    assert_one_line_error(code, err, f"-o {locked}/x.wav: cannot write in {locked} "
                                     "(permission denied)")
    assert list(locked.iterdir()) == []


def test_a_folder_without_write_permission_even_as_root(capsys, bundle, codes, tmp_path,
                                                       monkeypatch):
    """The same refusal where root cannot be locked out: access() answering no, as it does for
    other users in a 0555 folder."""
    locked = tmp_path / "ro"
    locked.mkdir()
    real_access = os.access

    def access(path, mode) -> bool:
        return Path(path).resolve() != locked and real_access(path, mode)

    monkeypatch.setattr("jukelite.fileio.os.access", access)
    code, _, err = run(capsys, "decode", codes, "--model", bundle, "-o", "ro/x.wav")
    line = assert_one_line_error(code, err)
    assert line == "error: -o ro/x.wav: cannot write in ro (permission denied)"
    assert list(locked.iterdir()) == []


def test_not_enough_free_space_is_found_before_decoding(capsys, bundle, codes, tmp_path,
                                                        monkeypatch):
    monkeypatch.setattr("jukelite.fileio.shutil.disk_usage",
                        lambda path: shutil._ntuple_diskusage(10**9, 10**9 - 100, 100))
    code, _, err = run(capsys, "decode", codes, "--model", bundle, "-o", tmp_path / "x.wav")
    assert_one_line_error(code, err, "-o ", "x.wav: needs about", "only 100 B is free")
    assert not (tmp_path / "x.wav").exists()


def test_the_output_checks_directly(tmp_path, a_file):
    with pytest.raises(OutputPathError, match=r"^-o .*: is an existing directory"):
        check_output_file(tmp_path, "-o")
    with pytest.raises(OutputPathError, match=r"^--out .*: is not a regular file"):
        check_output_file("/dev/null", "--out")
    with pytest.raises(OutputPathError, match="a_file: it is a file, not a directory"):
        check_output_file(a_file / "deeper" / "x.wav", "-o")
    with pytest.raises(OutputPathError, match="is an existing file"):
        check_output_dir(a_file, "-o")
    assert check_output_file(tmp_path / "new" / "deeper" / "x.wav", "-o").name == "x.wav"
    assert not (tmp_path / "new").exists()  # checking creates nothing
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "song.json").write_text("{}")
    with pytest.raises(OutputPathError, match="already holds song.json.*--overwrite"):
        check_output_dir(tmp_path / "run", "-o", marker="song.json")
    check_output_dir(tmp_path / "run", "-o", overwrite=True, marker="song.json")


# ---------------------------------------------------------------------- OS errors and bugs
@pytest.fixture
def songs(tmp_path) -> Path:
    folder = tmp_path / "songs"
    for name in ("a.wav", "b.wav"):
        save_audio(folder / name, torch.full((1, 400), 0.1), RATE)
    return folder


@pytest.mark.parametrize(("error", "reason"), [
    (errno.ENOSPC, "no space left on the device"),
    (errno.EACCES, "permission denied"),
])
def test_an_os_error_while_writing_names_the_file(capsys, songs, tmp_path, monkeypatch, error,
                                                  reason):
    """A full disk (or a permission lost midway) is the user's problem: one line naming the
    file asked for (not the hidden temporary), and nothing half-written left behind."""
    def failing_replace(source, target):
        raise OSError(error, os.strerror(error), os.fspath(source))

    monkeypatch.setattr("jukelite.fileio.os.replace", failing_replace)
    output = tmp_path / "manifest.jsonl"
    code, out, err = run(capsys, "data", "index", songs, "-o", output, "--quiet")
    assert_one_line_error(code, err, f"error: {output}: {reason}")
    assert not output.exists() and leftovers(tmp_path) == []


def test_an_unexpected_exception_keeps_its_traceback_and_says_it_is_a_bug(capsys, bundle, codes,
                                                                        monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("an internal mistake")

    monkeypatch.setattr("jukelite.inference.codec.decode_file", broken)
    code, _, err = run(capsys, "decode", codes, "--model", bundle, "-o", "x.wav")
    assert code == EXIT_BUG
    assert "Traceback" in err and "RuntimeError: an internal mistake" in err
    last = err.strip().splitlines()[-1]
    assert re.match(r"error: this is a bug in jukelite .*\(unexpected RuntimeError\); please "
                    r"report it at .+ with the command line and the traceback above", last)


def test_an_os_error_about_no_path_is_a_bug_too(capsys, bundle, codes, monkeypatch):
    def broken(*args, **kwargs):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr("jukelite.inference.codec.decode_file", broken)
    code, _, err = run(capsys, "decode", codes, "--model", bundle, "-o", "x.wav")
    assert code == EXIT_BUG and "Traceback" in err and "this is a bug" in err


# --------------------------------------------------------------------------------- devices
NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")


@pytest.mark.parametrize("device", [
    pytest.param("cuda", marks=NO_CUDA), "foo", "cuda:x", "meta",
])
@pytest.mark.parametrize("command", [
    ["sample", "--model", "{bundle}", "--artist", "Ada", "--genre", "rock", "-o", "run"],
    ["score", "{wav}", "--model", "{bundle}", "--level", "1"],
    ["encode", "{wav}", "--model", "{bundle}", "-o", "c.safetensors"],
    ["decode", "{wav}", "--model", "{bundle}", "-o", "x.wav"],
    ["reconstruct", "{wav}", "--model", "{bundle}"],
    ["eval", "conditioning", "--model", "{bundle}"],
    ["bench", "vqvae", "--model", "{bundle}"],
])
def test_a_device_this_machine_lacks_is_one_line(capsys, command, device, bundle, wav, tmp_path):
    argv = [part.format(bundle=bundle, wav=wav) for part in command]
    code, out, err = run(capsys, *argv, "--device", device, "--quiet")
    expected = ("CUDA is not available on this machine (torch.cuda.is_available() is False)"
                if device == "cuda" else "not a torch device (use cpu, cuda, cuda:N, mps)")
    assert_one_line_error(code, err, f"--device {device}: {expected}")
    assert out == "" and not (tmp_path / "run").exists()


@pytest.mark.parametrize("device", [pytest.param("cuda", marks=NO_CUDA), "foo"])
def test_the_api_refuses_a_device_with_the_same_words(bundle, device):
    words = ("CUDA is not available on this machine" if device == "cuda"
             else "not a torch device (use cpu, cuda, cuda:N, mps)")
    with pytest.raises(ValueError, match=re.escape(f"device {device}: {words}")):
        jukelite.load(bundle, device=device)


# ---------------------------------------------------------------------------------- inputs
@pytest.mark.parametrize(("tensor", "words"), [
    (torch.zeros(1, 4), "level_0 holds float32 values; codes must be integers"),
    (torch.zeros(4, dtype=torch.int32), "level_0 has shape (4,); codes must be [n_samples, "),
    (torch.zeros(1, 2, 4, dtype=torch.int32), "level_0 has shape (1, 2, 4)"),
])
def test_decoding_codes_of_the_wrong_rank_or_dtype(capsys, bundle, tmp_path, tensor, words):
    path = tmp_path / "bad.safetensors"
    save_file({"level_0": tensor}, str(path), metadata={"format": CODES_FORMAT, "info": "{}"})
    code, _, err = run(capsys, "decode", path, "--model", bundle, "-o", tmp_path / "x.wav")
    assert_one_line_error(code, err, str(path), words)
    assert not (tmp_path / "x.wav").exists()


@pytest.mark.parametrize(("value", "words"), [
    ("inf", "--temperature inf: a temperature must be a finite number > 0, got inf"),
    ("nan", "got nan"),
    ("1=inf", "got inf"),
])
def test_an_infinite_temperature_is_refused_before_loading(capsys, bundle, tmp_path, monkeypatch,
                                                           value, words):
    monkeypatch.setattr("jukelite.api.load", lambda *a, **k: pytest.fail("model loaded"))
    code, _, err = run(capsys, "sample", "--model", bundle, "--artist", "Ada", "--genre", "rock",
                       "--temperature", value, "-o", tmp_path / "run")
    assert_one_line_error(code, err, words)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("option", "value", "words"), [
    ("--seconds", "inf", "--seconds must be a finite number > 0, got inf"),
    ("--seconds", "-1", "--seconds must be a finite number > 0"),
    ("--n-samples", "0", "--n-samples must be an integer >= 1, got 0"),
    ("--seed", "-1", "--seed must be an integer >= 0, got -1"),
    ("--top-k", "-2", "--top-k must be an integer >= 0"),
    ("--top-p", "1.5", "--top-p must be a number in [0, 1]"),
    ("--max-batch-size", "0", "--max-batch-size must be an integer >= 1"),
])
def test_sample_numbers_are_checked_up_front(capsys, bundle, tmp_path, option, value, words):
    code, _, err = run(capsys, "sample", "--model", bundle, "--artist", "Ada", "--genre", "rock",
                       option, value, "-o", tmp_path / "run")
    assert_one_line_error(code, err, words)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("arguments", "message"), [
    (dict(seconds="abc"), "seconds must be a number > 0, got 'abc'"),
    (dict(seconds=math.inf), "seconds must be a finite number > 0, got inf"),
    (dict(n_samples=1.5), "n_samples must be an integer >= 1, got 1.5"),
    (dict(n_samples=True), "n_samples must be an integer >= 1, got True"),
    (dict(artist=123), "artist must be a string, got int"),
    (dict(genre=7), "genre must be a string or a list of strings, got int"),
    (dict(lyrics=None), "lyrics must be a string, got NoneType"),
    (dict(top_k=1.5), "top_k must be an integer >= 0, got 1.5"),
    (dict(temperature=math.inf), "temperature must be a finite number > 0, got inf"),
    (dict(temperature="hot"), "temperature must be a number > 0, got 'hot'"),
    (dict(temperature={1: math.nan}), "temperature of level 1 must be a number > 0, got nan"),
    (dict(top_p="x"), "top_p must be a number in [0, 1] (0 = off), got 'x'"),
    (dict(max_batch_size=0), "max_batch_size must be an integer >= 1, got 0"),
    (dict(seed=1.5), "seed must be an integer >= 0, got 1.5"),
    (dict(seed="7"), "seed must be an integer >= 0, got '7'"),
    (dict(levels=1.5), "levels must be 'all', 'top' or a level number, got 1.5"),
    (dict(total_seconds="long"), "total_seconds must be a number > 0, got 'long'"),
    (dict(alignment="yes"), "alignment must be True or False, got 'yes'"),
])
def test_api_arguments_are_named_when_refused(bundle, arguments, message):
    jb = jukelite.load(bundle)
    request = {"artist": "Ada", "genre": "rock", "seconds": 0.02, **arguments}
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        jb.generate(**request)


def test_api_continue_and_upsample_arguments(bundle):
    jb = jukelite.load(bundle)
    with pytest.raises(ValueError, match=r"^prime_seconds must be a number > 0, got 'a'$"):
        jb.continue_(torch.zeros(1, 1, 400), seconds=0.05, prime_seconds="a", artist="Ada",
                     genre="rock")
    with pytest.raises(ValueError, match="codes must be a tensor .* got list"):
        jb.upsample([1, 2], artist="Ada", genre="rock")
    with pytest.raises(ValueError, match=r"must be \[n_samples, tokens\], got shape \(3,\)"):
        jb.upsample(torch.zeros(3, dtype=torch.long), artist="Ada", genre="rock")


def test_sampling_settings_refuse_an_infinite_temperature():
    with pytest.raises(ValueError, match="finite"):
        SamplingSettings(temperature=math.inf)
    with pytest.raises(ValueError, match="temperature"):
        SamplingSettings(temperature=math.nan)


# ----------------------------------------------------------------------- overwriting a run
def test_overwrite_removes_the_old_run_and_keeps_other_files(capsys, bundle, tmp_path):
    out = tmp_path / "run"
    settings = ["sample", "--model", bundle, "--artist", "Ada", "--genre", "rock",
                "--seconds", "0.02", "--quiet", "-o", out]
    assert run(capsys, *settings, "--alignment")[0] == 2  # no lyrics prior: nothing written
    assert not out.exists()
    assert run(capsys, *settings)[0] == 0  # both levels rendered
    assert (out / "level_0" / "sample_0.wav").is_file()
    (out / "notes.txt").write_text("mine")
    (out / "level_0" / "keep.txt").write_text("mine")
    (out / "alignment").mkdir()
    (out / "alignment" / "sample_3.lrc").write_text("stale")
    (out / ".song.json.abc123.tmp.json").write_text("killed mid-write")

    code, _, err = run(capsys, *settings, "--levels", "top")
    assert_one_line_error(code, err, "already holds song.json", "--resume", "--overwrite")
    assert (out / "level_0" / "sample_0.wav").is_file()  # refused: the old run is intact

    assert run(capsys, *settings, "--levels", "top", "--overwrite")[0] == 0
    assert not (out / "level_0" / "sample_0.wav").exists()  # stale finer level gone
    assert not (out / "level_0" / "sample_0.png").exists()
    assert not (out / "alignment").exists() and leftovers(out) == []
    assert (out / "notes.txt").read_text() == "mine"
    assert (out / "level_0" / "keep.txt").read_text() == "mine"
    record = json.loads((out / "song.json").read_text())
    assert record["status"] == "complete" and list(record["levels"]) == ["1"]


def test_the_api_refuses_to_mix_two_runs(bundle, tmp_path):
    jb = jukelite.load(bundle)
    song = {"artist": "Ada", "genre": "rock", "seconds": 0.02, "output_dir": tmp_path / "r"}
    jb.generate(**song)
    before = (tmp_path / "r" / "codes.safetensors").read_bytes()
    with pytest.raises(ValueError, match="already holds a run.*overwrite=True"):
        jb.generate(**song, seed=3)
    assert (tmp_path / "r" / "codes.safetensors").read_bytes() == before
    with pytest.raises(ValueError, match="artist"):  # a bad request never costs the old run
        jb.generate(**{**song, "artist": 5}, overwrite=True)
    assert (tmp_path / "r" / "codes.safetensors").read_bytes() == before
    jb.generate(**song, seed=3, overwrite=True, levels="top")
    assert not (tmp_path / "r" / "level_0").exists()


def test_run_files_are_only_the_run_layout(tmp_path):
    names = ["song.json", "codes.safetensors", "level_0/sample_0.wav", "level_0/sample_12.png",
             "level_2/.sample_0.wav.x1y2.tmp.wav", "alignment/alignment.json",
             "alignment/sample_1.lrc", "alignment/sample_1.png", ".codes.safetensors.q.tmp"
             ".safetensors"]
    others = ["song.json.bak", "cover.png", "level_0/notes.txt", "level_x/sample_0.wav",
              "alignment/lyrics.txt", "mine/song.json", "level_0/sample_0.mp3"]
    for name in names + others:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(name)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in run_files(tmp_path)) == sorted(names)
    clear_run(tmp_path)
    left = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert left == sorted(others)
    assert not (tmp_path / "level_2").exists()  # emptied folders of the run go too


# ------------------------------------------------------------------------- silent reference
def test_a_silent_reference_has_no_spectral_convergence(capsys, bundle, tmp_path):
    silent = tmp_path / "silent.wav"
    save_audio(silent, torch.zeros(1, 800), RATE)
    code, out, err = run(capsys, "reconstruct", silent, "--model", bundle, "--json", "--quiet")
    assert code == 0, err
    for metrics in json.loads(out).values():
        assert metrics["spectral_convergence_db"] is None and metrics["si_sdr_db"] is None
        assert SILENT_SC_NOTE in metrics["notes"]
    assert "note: reference is silent: spectral convergence undefined" in err
    code, out, err = run(capsys, "reconstruct", silent, "--model", bundle, "--quiet")
    assert code == 0 and "-160" not in out


def test_silence_below_minus_100_dbfs_and_partly_silent_batches():
    generator = torch.Generator().manual_seed(0)
    loud = torch.randn(1, 1, 4096, generator=generator) * 0.3
    whisper = torch.randn(1, 1, 4096, generator=generator) * 1e-6  # about -120 dBFS
    estimate = torch.randn(2, 1, 4096, generator=generator) * 0.1
    quiet = reconstruction_report(whisper, estimate[:1], RATE)
    assert quiet["spectral_convergence_db"] is None and SILENT_SC_NOTE in quiet["notes"]
    mixed = reconstruction_report(torch.cat([loud, whisper]), estimate, RATE)
    alone = reconstruction_report(loud, estimate[:1], RATE)
    assert mixed["spectral_convergence_db"] == pytest.approx(alone["spectral_convergence_db"])
    assert "1 of 2 references are silent" in mixed["notes"][0]
    assert "notes" not in alone


# -------------------------------------------------------------------------------- fast help
@pytest.mark.parametrize("argv", [["--help"], ["sample", "--help"], ["score", "--help"],
                                  ["data", "index", "--help"], ["bench", "--help"]])
def test_help_does_not_import_torch(argv, tmp_path):
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "jukelite.cli", *argv],
                            capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "usage: jukelite" in result.stdout
    imported = [line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()
                if line.startswith("import time:")]
    assert imported, result.stderr  # -X importtime worked
    assert [m for m in imported if m == "torch" or m.startswith("torch.")] == []


# ------------------------------------------------------------------------------ data index
def test_data_index_reports_and_skips_what_it_cannot_index(capsys, songs, tmp_path):
    (songs / "empty.wav").write_bytes(b"")
    (songs / "huge.wav").write_bytes(b"\0" * 5000)
    os.symlink("loop_b.wav", songs / "loop_a.wav")
    os.symlink("loop_a.wav", songs / "loop_b.wav")
    (songs / "sub").mkdir()
    os.symlink("..", songs / "sub" / "up")
    bad_name = os.fsencode(songs) + b"/caf\xe9.wav"
    try:
        with open(bad_name, "wb") as handle:
            handle.write((songs / "a.wav").read_bytes())
    except OSError:
        pytest.skip("this file system refuses names that are not UTF-8")
    output = tmp_path / "manifest.jsonl"

    code, out, err = run(capsys, "data", "index", songs, "-o", output, "--quiet",
                         "--max-size", "4K")
    assert code == 0, err
    problems = err.strip().splitlines()
    assert all(line.startswith("problem: ") for line in problems), err
    for culprit in ("empty.wav", "huge.wav", "loop_a.wav", "loop_b.wav", "sub/up",
                    repr(os.fsdecode(bad_name))):
        assert sum(culprit in line for line in problems) == 1, (culprit, err)
    assert "larger than the size limit of 4.0 KiB (--max-size)" in err
    assert "symlink loop" in err and "not valid UTF-8" in err
    assert "Traceback" not in err
    assert "2 songs" in out
    written = [json.loads(line)["path"] for line in output.read_text().splitlines()]
    assert sorted(Path(p).name for p in written) == ["a.wav", "b.wav"]

    strict = tmp_path / "strict.jsonl"
    code, _, err = run(capsys, "data", "index", songs, "-o", strict, "--quiet", "--max-size",
                       "4K", "--strict")
    assert code == EXIT_USAGE and "problem(s); nothing written (--strict)" in err
    assert "huge.wav" in err and not strict.exists() and leftovers(tmp_path) == []


@pytest.mark.skipif(IS_ROOT, reason="root reads unreadable files")
def test_data_index_reports_unreadable_files_and_folders(capsys, songs, tmp_path):
    (songs / "b.wav").chmod(0)
    (songs / "locked").mkdir()
    (songs / "locked").chmod(0)
    try:
        code, _, err = run(capsys, "data", "index", songs, "-o", tmp_path / "m.jsonl", "--quiet")
    finally:
        (songs / "b.wav").chmod(0o644)
        (songs / "locked").chmod(0o755)
    assert code == 0 and "Traceback" not in err
    assert "b.wav: cannot read file (permission denied)" in err
    assert "locked: cannot read folder (permission denied)" in err


def test_data_index_reports_a_file_it_cannot_open_even_as_root(capsys, songs, tmp_path,
                                                               monkeypatch):
    def refuse(path, *args, **kwargs):
        if Path(path).name == "b.wav":
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
        return open(path, *args, **kwargs)

    monkeypatch.setattr("jukelite.data.index.open", refuse, raising=False)
    output = tmp_path / "m.jsonl"
    code, out, err = run(capsys, "data", "index", songs, "-o", output, "--quiet")
    assert code == 0 and "Traceback" not in err
    expected = f"problem: {songs / 'b.wav'}: cannot read file (permission denied); skipped"
    assert err.strip() == expected
    assert "1 songs" in out and len(output.read_text().splitlines()) == 1


def test_data_index_max_size_must_be_a_size(capsys, songs):
    with pytest.raises(SystemExit) as exit_info:
        main(["data", "index", str(songs), "-o", "m.jsonl", "--max-size", "big"])
    assert exit_info.value.code == EXIT_USAGE
    assert "expected a size like 500M or 2G, got 'big'" in capsys.readouterr().err


def test_an_interrupted_sample_exits_130_with_the_command_that_resumes(
    capsys, bundle, tmp_path, monkeypatch
):
    from jukelite.inference.run import Sampler

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(Sampler, "run", interrupted)
    out = tmp_path / "my song"
    code, _, err = run(capsys, "sample", "--model", str(bundle), "--artist", "Ada", "--genre",
                       "rock", "--seconds", "0.05", "-o", str(out))
    assert code == 130 and "Traceback" not in err
    assert err.strip().splitlines()[-1] == (
        f"interrupted; resume with: jukelite sample --model {bundle} --resume '{out}'")
