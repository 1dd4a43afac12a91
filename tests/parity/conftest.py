"""Session fixtures of the parity suite: Jukebox's reduced models and references, built once,
and jukelite's imports of them. Everything skips unless JUKEBOX_SRC names a Jukebox export."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.parity.compare import Row, format_table
from tests.parity.jukebox_reference import skip_reason

ROWS: list[Row] = []  # every test's numbers, printed as one table at the end


@pytest.fixture(scope="session")
def references(tmp_path_factory: pytest.TempPathFactory):
    """Checkpoints of every reduced Jukebox model and Jukebox's outputs for them."""
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    from tests.parity.cases import build_references

    return build_references(tmp_path_factory.mktemp("jukebox_checkpoints"))


@pytest.fixture(scope="session")
def bundles(references, tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """`bundles(model_set)`: jukelite's import of the VQ-VAE and that set's priors, made once."""
    try:
        import jukelite.convert.jukebox  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"jukelite.convert.jukebox is not importable ({exc})")
    from tests.parity.compare import import_bundle

    made: dict[str, Path] = {}
    root = tmp_path_factory.mktemp("bundles")

    def get(model_set: str) -> Path:
        if model_set not in made:
            made[model_set] = import_bundle(references, model_set, root / model_set)
        return made[model_set]

    return get


@pytest.fixture
def record() -> Callable[[list[Row]], list[Row]]:
    """Keep rows for the table, hand them back."""

    def keep(rows: list[Row]) -> list[Row]:
        ROWS.extend(rows)
        return rows

    return keep


def pytest_terminal_summary(terminalreporter) -> None:
    if ROWS:
        terminalreporter.write_sep("=", "Jukebox parity (max abs difference)")
        terminalreporter.write_line(format_table(ROWS))
