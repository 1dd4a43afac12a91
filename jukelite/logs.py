"""Messages that are not a command's own output (notes, resumptions, warnings) go through the
standard `logging` module under the "jukelite" logger.

Library users configure logging as they like (by default Python shows warnings only). The
`jukelite` command calls `configure_cli_logging`: notes at INFO, hidden by `--quiet`, details at
DEBUG, shown by `--verbose`, each written through tqdm so progress bars stay intact, and
Python warnings (labels, lyrics, data) shown as one `warning: ...` line.
"""

from __future__ import annotations

import logging
import sys
import warnings

from tqdm.auto import tqdm

LOGGER_NAME = "jukelite"


def get_logger(module: str) -> logging.Logger:
    """The logger of a jukelite module (`get_logger(__name__)`)."""
    return logging.getLogger(module if module.startswith(LOGGER_NAME) else LOGGER_NAME)


class _TqdmHandler(logging.Handler):
    """Writes records above any open progress bar instead of through it."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # never let a log line break a run
            self.handleError(record)


class _PrefixFormatter(logging.Formatter):
    """`message` for notes; `warning: message`, `error: ...`, `debug: ...` otherwise."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.levelno == logging.INFO:
            return message
        return f"{record.levelname.lower()}: {message}"


def _log_warning(message, category, filename, lineno, file=None, line=None) -> None:
    logging.getLogger(LOGGER_NAME).warning("%s", message)


def configure_cli_logging(quiet: bool = False, verbose: bool = False) -> None:
    """Route jukelite's log records and Python warnings to stderr for the command line."""
    logger = logging.getLogger(LOGGER_NAME)
    handler = _TqdmHandler()
    handler.setFormatter(_PrefixFormatter())
    logger.handlers[:] = [handler]
    logger.setLevel(logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO)
    logger.propagate = False
    warnings.showwarning = _log_warning
