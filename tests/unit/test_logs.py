"""Notes and warnings reach stderr through logging, as the command's --quiet/--verbose say."""

from __future__ import annotations

import logging
import warnings

import pytest

from jukelite.cli import main
from jukelite.logs import configure_cli_logging, get_logger


@pytest.fixture(autouse=True)
def restore_logging():
    logger = logging.getLogger("jukelite")
    saved = logger.handlers[:], logger.level, logger.propagate
    with warnings.catch_warnings():
        yield
    logger.handlers[:], logger.level, logger.propagate = saved


@pytest.mark.parametrize(("quiet", "verbose", "shown"), [
    (False, False, ["note", "warning: careful"]),
    (True, False, ["warning: careful"]),
    (False, True, ["debug: detail", "note", "warning: careful"]),
])
def test_levels_follow_quiet_and_verbose(capsys, quiet, verbose, shown):
    configure_cli_logging(quiet=quiet, verbose=verbose)
    log = get_logger("jukelite.somewhere")
    log.debug("detail")
    log.info("note")
    log.warning("careful")
    assert capsys.readouterr().err.splitlines() == shown


def test_python_warnings_become_one_line(capsys):
    configure_cli_logging()
    warnings.warn("lyrics: 2 characters dropped", UserWarning, stacklevel=1)
    assert capsys.readouterr().err == "warning: lyrics: 2 characters dropped\n"


def test_sample_notes_the_demo_model_unless_quiet(tmp_path, capsys, make_complete_bundle,
                                                  monkeypatch):
    from jukelite import bundle

    demo = make_complete_bundle(tmp_path / "demo")
    monkeypatch.setattr(bundle, "demo_bundle_candidates", lambda: [demo])
    args = ["sample", "--artist", "Ada", "--genre", "rock", "--seconds", "0.02",
            "--lyrics", "hi", "--levels", "top"]
    assert main([*args, "-o", str(tmp_path / "a")]) == 0
    err = capsys.readouterr().err
    assert f"model: the demo model in {demo}" in err
    assert "warning: this model is not conditioned on lyrics: they are ignored" in err
    assert main([*args, "-o", str(tmp_path / "b"), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "demo model" not in err and "warning: this model is not conditioned" in err
