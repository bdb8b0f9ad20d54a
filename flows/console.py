"""What the terminal shows: quiet by default, ``-v`` for library logs, ``-q`` for errors only.

One place decides it for every command (:func:`add_output_options`, :func:`configure_logging`):

- default: terrawatch's own warnings and every library's errors, as short lines written above
  the progress bar (``tqdm.write``), never through it; library INFO (``distributed.*``,
  Prefect's engine, ``httpx``) and Python warnings stay off the terminal;
- ``-v``: everything from INFO up (terrawatch's DEBUG too), with logger names;
- ``-q``: errors only, no progress bar, no summary;
- ``--log-file FILE``: the full log (INFO and up of every library, DEBUG with ``-v``) with
  timestamps, whatever the terminal shows. The local Dask workers are separate processes: their
  own log lines go to the terminal at WARNING unless ``-v`` (:func:`worker_log_environment`).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Mapping
from typing import IO, Any

from terrawatch.errors import InputError

OWN_LOGGER = "terrawatch"
"""Loggers under this name are ours; the rest are libraries'."""

QUIET, NORMAL, VERBOSE = 0, 1, 2

_verbosity = NORMAL
_json = False
_started = time.monotonic()
_console_handler: logging.Handler | None = None
_own_handlers: list[logging.Handler] = []


def add_output_options(parser: argparse.ArgumentParser, summary: bool = False) -> None:
    """``-q``, ``-v``, ``--log-file`` (and ``--json`` where the command prints a summary).

    Added to each sub-command, so they work after its other options
    (``terrawatch landcover ... -q``). Defaults are suppressed: an option given before the
    sub-command name is not reset by the sub-command's default.
    """
    group = parser.add_argument_group("output")
    group.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        default=argparse.SUPPRESS,
        help="print nothing but errors (no progress bar, no summary)",
    )
    group.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show library logs (Dask, Prefect, HTTP) and debug lines",
    )
    group.add_argument(
        "--log-file",
        metavar="FILE",
        default=argparse.SUPPRESS,
        help="append the full log (every library's INFO lines, with times) to FILE",
    )
    if summary:
        group.add_argument(
            "--json",
            action="store_true",
            default=argparse.SUPPRESS,
            help="print the run's summary as JSON on stdout instead of the human summary",
        )


def verbosity_of(args: argparse.Namespace) -> int:
    """QUIET, NORMAL or VERBOSE from ``-q`` / ``-v`` (``-v`` wins over ``-q``)."""
    if getattr(args, "verbose", False):
        return VERBOSE
    return QUIET if getattr(args, "quiet", False) else NORMAL


def configure_output(args: argparse.Namespace) -> None:
    """Set up the terminal and the log file of one command from its parsed options."""
    global _json, _started
    _started = time.monotonic()
    _json = bool(getattr(args, "json", False))
    configure_logging(verbosity_of(args), getattr(args, "log_file", None))


def print_summary(summary: Mapping[str, Any]) -> None:
    """The run's summary on stdout: JSON with ``--json`` (even with ``-q``), else a few lines
    for people (none with ``-q``)."""
    from terrawatch.flows.summary import summary_json, summary_text

    if _json:
        print(summary_json(summary), flush=True)
    elif _verbosity != QUIET:
        print(summary_text(summary, time.monotonic() - _started), flush=True)


def configure_logging(verbosity: int, log_file: str | None = None) -> None:
    """Route every log record: a filtered terminal handler, and the full log to ``log_file``."""
    global _verbosity, _console_handler
    _verbosity = verbosity
    root = logging.getLogger()
    for handler in _own_handlers:  # a second command in one process (tests) replaces them
        root.removeHandler(handler)
        handler.close()
    _own_handlers.clear()
    root.setLevel(logging.DEBUG if verbosity == VERBOSE else logging.INFO)
    console = TqdmLogHandler(sys.stderr)
    console.addFilter(_ConsoleFilter(verbosity))
    if verbosity == VERBOSE:
        console.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    else:
        console.setFormatter(_ShortFormatter())
    _console_handler = console
    _own_handlers.append(console)
    if log_file:
        try:
            file_handler = logging.FileHandler(log_file, encoding="utf-8")
        except OSError as err:
            raise InputError(
                f"--log-file {log_file!r}: {err.strerror}; give a file path that can be written"
            ) from err
        file_handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
        )
        _own_handlers.append(file_handler)
    for handler in _own_handlers:
        root.addHandler(handler)
    logging.captureWarnings(True)  # library warnings: to the log file, off the terminal


def silence_console() -> None:
    """Stop showing log records on the terminal (the log file keeps them): used on interrupt."""
    if _console_handler is not None:
        _console_handler.setLevel(logging.CRITICAL + 1)
    for name in ("prefect", "distributed", "uvicorn"):  # libraries' own terminal handlers
        for handler in logging.getLogger(name).handlers:
            if isinstance(handler, logging.StreamHandler) and not isinstance(
                handler, logging.FileHandler
            ):
                handler.setLevel(logging.CRITICAL + 1)


def shows_progress() -> bool:
    """Whether progress bars and the summary are drawn (not with ``-q``)."""
    return _verbosity != QUIET


def worker_log_environment() -> dict[str, str]:
    """Environment for worker processes this command starts: library INFO off unless ``-v``.

    Dask reads ``DASK_LOGGING__DISTRIBUTED`` when a worker imports it; Prefect's terminal
    handler of a worker reads ``PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL`` (its API handler
    still sends the run's INFO lines to the Prefect UI). ``-q`` keeps their errors only.
    """
    if _verbosity == VERBOSE:
        return {}
    level = "ERROR" if _verbosity == QUIET else "WARNING"
    return {
        "DASK_LOGGING__DISTRIBUTED": level.lower(),
        "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": level,
        "PYTHONWARNINGS": "ignore",  # libraries' warnings in a worker: not the user's to fix
    }


class _ConsoleFilter(logging.Filter):
    """Which records reach the terminal at each verbosity."""

    def __init__(self, verbosity: int) -> None:
        super().__init__()
        self.verbosity = verbosity

    def filter(self, record: logging.LogRecord) -> bool:
        if self.verbosity == VERBOSE:
            return True
        if self.verbosity == QUIET:
            return record.levelno >= logging.ERROR
        own = record.name == OWN_LOGGER or record.name.startswith(OWN_LOGGER + ".")
        return record.levelno >= (logging.WARNING if own else logging.ERROR)


class _ShortFormatter(logging.Formatter):
    """``warning: message``: no logger name, no time (the log file has both)."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info and _verbosity == VERBOSE:
            message += "\n" + self.formatException(record.exc_info)
        return f"{record.levelname.lower()}: {message}"


class TqdmLogHandler(logging.StreamHandler):
    """Writes each line above a progress bar (``tqdm.write``), so they never interleave."""

    def __init__(self, stream: IO[str]) -> None:
        super().__init__(stream)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm import tqdm

            tqdm.write(self.format(record), file=self.stream)
        except Exception:
            self.handleError(record)
