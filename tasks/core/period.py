"""The period of a run: as given, or the days before today for scheduled runs."""

from __future__ import annotations

from datetime import date, timedelta

from terrawatch.errors import InputError


def resolve_period(
    start: str | None, end: str | None, period_days: int, today: date
) -> tuple[str, str]:
    """The period of a run: as given, or the ``period_days`` days before ``today``.

    Scheduled monitoring runs pass neither, so each weekly run covers the previous week and
    appends it as one time step.
    """
    if (start is None) != (end is None):
        raise InputError("give both start and end (ISO dates), or neither to use period_days")
    if start is not None and end is not None:
        return start, end
    if period_days < 1:
        raise InputError(f"period_days must be >= 1, got {period_days!r}")
    last = today - timedelta(days=1)
    return (last - timedelta(days=period_days - 1)).isoformat(), last.isoformat()
