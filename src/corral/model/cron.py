"""Cron expressions: 5 fields, or 6 with seconds first (PM2's croner)."""

from __future__ import annotations


def next_cron_time(expression: str, after: float) -> float:
    """The next epoch second a cron expression fires after `after`."""
    import datetime

    from croniter import croniter

    start = datetime.datetime.fromtimestamp(after)
    six = len(expression.split()) == 6
    return float(croniter(expression, start, second_at_beginning=six).get_next(float))
