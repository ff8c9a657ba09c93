"""Dates from whatever a caller has: a date, a datetime, a pendulum object or an ISO string."""

from __future__ import annotations

import datetime as dt

from biotune.errors import InputFormatError


def as_date(value) -> dt.date:
    """A date from a date, datetime, pendulum object or ISO string ('2026-10-01', '2026-10-01T00:00:00+00:00')."""
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value).strip()[:10])
    except ValueError as exc:
        raise InputFormatError(f"not a date: {value!r}", where="date",
                               fix="use YYYY-MM-DD") from exc
