"""The date window a sync asks Cost Explorer for: run config, defaults and validation."""

from dataclasses import dataclass
from datetime import date, timedelta

import dagster as dg
from pydantic import Field

# Cost Explorer keeps daily data for the current month plus the previous 13 months.
DAILY_HISTORY_MONTHS = 13


class SyncWindowConfig(dg.Config):
    """Which days to sync, both inclusive. Leave both empty for the default trailing window."""

    start_date: str | None = Field(
        default=None, description="First day to sync (YYYY-MM-DD). Default: 1st of last month."
    )
    end_date: str | None = Field(
        default=None,
        description="Last day to sync, inclusive (YYYY-MM-DD). Default: yesterday (UTC).",
    )


@dataclass(frozen=True)
class SyncWindow:
    """A closed range of calendar days."""

    start: date
    end: date

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def __str__(self) -> str:
        return f"{self.start.isoformat()}..{self.end.isoformat()}"


class InvalidWindowError(ValueError):
    """The requested window cannot be asked of Cost Explorer."""


def _first_of_month(day: date, months_back: int = 0) -> date:
    month_index = day.year * 12 + (day.month - 1) - months_back
    return date(month_index // 12, month_index % 12 + 1, 1)


def default_window(today: date) -> SyncWindow:
    """Complete days from the 1st of the previous month through yesterday.

    Cost Explorer restates recent days (estimates become final, credits land), so every sync
    re-reads at least the whole previous calendar month.
    """
    return SyncWindow(start=_first_of_month(today, months_back=1), end=today - timedelta(days=1))


def earliest_daily_day(today: date) -> date:
    """The oldest day Cost Explorer still has daily data for."""
    return _first_of_month(today, months_back=DAILY_HISTORY_MONTHS)


def _parse_day(value: str, field: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise InvalidWindowError(f"{field} {value!r} is not a date in YYYY-MM-DD form") from None


def resolve_window(
    start_date: str | None,
    end_date: str | None,
    today: date,
    estimated_since: date | None = None,
) -> SyncWindow:
    """The window to sync, validated before any AWS request is made.

    Without a start date the default window also reaches back to `estimated_since`, the oldest
    stored day still marked Estimated, so it is restated once final (within Cost Explorer's
    daily history).
    """
    fallback = default_window(today)
    if estimated_since is not None:
        reach = max(estimated_since, earliest_daily_day(today))
        fallback = SyncWindow(min(fallback.start, reach), fallback.end)
    start = _parse_day(start_date, "start_date") if start_date else fallback.start
    end = _parse_day(end_date, "end_date") if end_date else fallback.end
    if start > end:
        raise InvalidWindowError(f"start_date {start} is after end_date {end}")
    if end > today:
        raise InvalidWindowError(f"end_date {end} is in the future (today is {today} UTC)")
    oldest = earliest_daily_day(today)
    if start < oldest:
        raise InvalidWindowError(
            f"start_date {start} is older than Cost Explorer keeps daily data (oldest: {oldest})"
        )
    return SyncWindow(start=start, end=end)
