"""The date window a sync asks Cost Explorer for: run config, defaults and validation."""

from dataclasses import dataclass
from datetime import date, timedelta

# Cost Explorer keeps daily data for the current month plus the previous 13 months.
DAILY_HISTORY_MONTHS = 13
# How the default window starts (PULSE_DEFAULT_WINDOW): at the oldest day Cost Explorer may
# still revise, or always at the 1st of the previous month (the behaviour before).
REVISABLE = "revisable"
PREVIOUS_MONTH = "previous-month"
WINDOW_RULES = (REVISABLE, PREVIOUS_MONTH)


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


@dataclass(frozen=True)
class StoredDays:
    """What PULSE already holds of an account: its oldest CostRecord day still marked Estimated,
    and its newest CostRecord day (None: nothing stored, a first sync)."""

    estimated_since: date | None = None
    last_day: date | None = None


def default_window(
    today: date, stored: StoredDays | None = None, rule: str = REVISABLE
) -> SyncWindow:
    """The complete days a daily sync re-reads, ending yesterday (UTC).

    `revisable` (the default) starts at the oldest day Cost Explorer may still revise: the 1st
    of the current month, reaching back to the oldest stored day still marked Estimated (which
    keeps the previous month in while any of its days is estimated) and to the day after the
    newest stored day (a sync that was missed), never before the 1st of the previous month;
    with nothing stored (a first sync), the 1st of the previous month. `previous-month` always
    starts at the 1st of the previous month, reaching back to estimated days too.
    """
    stored = stored or StoredDays()
    end = today - timedelta(days=1)
    previous_month = _first_of_month(today, months_back=1)
    start = previous_month
    if rule == REVISABLE and stored.last_day is not None:
        start = min(
            _first_of_month(today), max(stored.last_day + timedelta(days=1), previous_month)
        )
    if stored.estimated_since is not None:
        start = min(start, max(stored.estimated_since, earliest_daily_day(today)))
    return SyncWindow(start=min(start, end), end=end)


def earliest_daily_day(today: date) -> date:
    """The oldest day Cost Explorer still has daily data for."""
    return _first_of_month(today, months_back=DAILY_HISTORY_MONTHS)


def _parse_day(value: str, field: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise InvalidWindowError(f"{field} {value!r} is not a date in YYYY-MM-DD form") from None


@dataclass(frozen=True)
class WindowRequest:
    """The days a run was asked for (None: the default), validated once per run, before any
    account is read: each account's window then only fills in what was left empty."""

    start: date | None
    end: date | None
    today: date

    def for_account(self, stored: StoredDays | None = None, rule: str = REVISABLE) -> SyncWindow:
        """The account's window: the requested days, `default_window` for what was left empty
        (with only an end date given, the start follows the `previous-month` rule, as a window
        chosen by hand has nothing to do with what is still revisable)."""
        fallback = default_window(self.today, stored, PREVIOUS_MONTH if self.end else rule)
        return SyncWindow(start=self.start or fallback.start, end=self.end or fallback.end)


def requested_window(start_date: str | None, end_date: str | None, today: date) -> WindowRequest:
    """The run's window request, checked before any AWS request is made. Raises
    InvalidWindowError naming the field and what is wrong with it."""
    request = WindowRequest(
        start=_parse_day(start_date, "start_date") if start_date else None,
        end=_parse_day(end_date, "end_date") if end_date else None,
        today=today,
    )
    # Stored days can only move a default start earlier, never past the requested end: the
    # window without them is the one to check.
    window = request.for_account()
    if window.start > window.end:
        raise InvalidWindowError(f"start_date {window.start} is after end_date {window.end}")
    if window.end > today:
        raise InvalidWindowError(f"end_date {window.end} is in the future (today is {today} UTC)")
    oldest = earliest_daily_day(today)
    if window.start < oldest:
        raise InvalidWindowError(
            f"start_date {window.start} is older than Cost Explorer keeps daily data "
            f"(oldest: {oldest})"
        )
    return request


def resolve_window(
    start_date: str | None,
    end_date: str | None,
    today: date,
    stored: StoredDays | None = None,
    rule: str = REVISABLE,
) -> SyncWindow:
    """The window one account syncs: `requested_window` checked, then filled in for the account."""
    return requested_window(start_date, end_date, today).for_account(stored, rule)
