"""Prefect's reports of a user's error kept off the terminal: the command line prints one line.

When an error the user can fix (a :class:`~terrawatch.errors.TerrawatchError`) surfaces inside a
flow run, Prefect logs it with its traceback at every level it passes (task run, flow run,
final state) before the command line can print its one line. The filter drops those records
in this process unless ``--debug`` asks for them; Prefect's API still records the failure, and
anything else (a bug) keeps its traceback. Standard library only.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from terrawatch.errors import TerrawatchError

PREFECT_LOGGERS = ("prefect", "prefect.flow_runs", "prefect.task_runs", "prefect.engine")
"""The loggers that Prefect's engines report run failures on."""


def _family_names() -> tuple[str, ...]:
    family: list[type[TerrawatchError]] = [TerrawatchError]
    for kind in family:
        family.extend(kind.__subclasses__())
    return tuple(kind.__name__ for kind in family)


class UserErrorFilter(logging.Filter):
    """Drops a record that reports a TerrawatchError (its exception or its state message)."""

    def __init__(self) -> None:
        super().__init__()
        self.names = _family_names()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], TerrawatchError):
            return False
        message = record.getMessage()
        return not any(f"{name}(" in message or f"{name}:" in message for name in self.names)


@contextmanager
def user_error_tracebacks_hidden(debug: bool = False) -> Iterator[None]:
    """Within: Prefect's records of a TerrawatchError are not shown (all shown with ``debug``)."""
    if debug:
        yield
        return
    hide = UserErrorFilter()
    loggers = [logging.getLogger(name) for name in PREFECT_LOGGERS]
    for logger in loggers:
        logger.addFilter(hide)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(hide)
