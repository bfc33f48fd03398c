"""The sync window: defaults, explicit windows and the checks made before AWS is asked."""

from datetime import date

import pytest

from pulse_pipeline.sync_window import (
    PREVIOUS_MONTH,
    REVISABLE,
    InvalidWindowError,
    StoredDays,
    SyncWindow,
    default_window,
    earliest_daily_day,
    resolve_window,
)


@pytest.mark.parametrize(
    ("today", "start", "end"),
    [
        (date(2026, 11, 24), date(2026, 10, 1), date(2026, 11, 23)),
        # New Year's Day: the previous month is December of the previous year.
        (date(2026, 1, 1), date(2025, 12, 1), date(2025, 12, 31)),
        # 1st of March in a non-leap year: yesterday is 28 February.
        (date(2026, 3, 1), date(2026, 2, 1), date(2026, 2, 28)),
        # Leap year.
        (date(2028, 3, 1), date(2028, 2, 1), date(2028, 2, 29)),
        # January: the previous month's 1st is in the previous year.
        (date(2026, 1, 15), date(2025, 12, 1), date(2026, 1, 14)),
    ],
)
def test_a_first_sync_runs_from_first_of_last_month_to_yesterday(
    today: date, start: date, end: date
) -> None:
    assert default_window(today) == SyncWindow(start, end)
    assert resolve_window(None, None, today) == SyncWindow(start, end)


def test_empty_strings_mean_the_default_window() -> None:
    assert resolve_window("", "", date(2026, 11, 24)) == SyncWindow(
        date(2026, 10, 1), date(2026, 11, 23)
    )


def test_explicit_window_is_taken_as_given() -> None:
    window = resolve_window("2026-05-03", "2026-06-10", date(2026, 11, 24))
    assert window == SyncWindow(date(2026, 5, 3), date(2026, 6, 10))
    assert str(window) == "2026-05-03..2026-06-10"


def test_only_start_given_ends_yesterday() -> None:
    assert resolve_window("2026-09-15", None, date(2026, 11, 24)) == SyncWindow(
        date(2026, 9, 15), date(2026, 11, 23)
    )


def test_only_end_given_starts_first_of_last_month() -> None:
    assert resolve_window(None, "2026-10-20", date(2026, 11, 24)) == SyncWindow(
        date(2026, 10, 1), date(2026, 10, 20)
    )


def test_single_day_window_is_allowed() -> None:
    window = resolve_window("2026-11-02", "2026-11-02", date(2026, 11, 24))
    assert window == SyncWindow(date(2026, 11, 2), date(2026, 11, 2))
    assert window.days == 1


def test_start_after_end_is_rejected() -> None:
    with pytest.raises(InvalidWindowError, match="after"):
        resolve_window("2026-11-10", "2026-11-09", date(2026, 11, 24))


def test_only_end_before_default_start_is_rejected() -> None:
    # The default start (2026-10-01) is after the given end.
    with pytest.raises(InvalidWindowError, match="after"):
        resolve_window(None, "2026-09-30", date(2026, 11, 24))


def test_end_in_the_future_is_rejected() -> None:
    with pytest.raises(InvalidWindowError, match="future"):
        resolve_window("2026-11-01", "2026-11-25", date(2026, 11, 24))


def test_end_today_is_not_in_the_future() -> None:
    assert resolve_window("2026-11-01", "2026-11-24", date(2026, 11, 24)).end == date(2026, 11, 24)


def test_earliest_daily_day_is_13_months_before_this_month() -> None:
    assert earliest_daily_day(date(2026, 11, 24)) == date(2025, 10, 1)
    assert earliest_daily_day(date(2026, 1, 31)) == date(2024, 12, 1)


def test_start_on_earliest_daily_day_is_allowed() -> None:
    window = resolve_window("2025-10-01", "2025-10-31", date(2026, 11, 24))
    assert window == SyncWindow(date(2025, 10, 1), date(2025, 10, 31))


def test_start_before_earliest_daily_day_is_rejected() -> None:
    with pytest.raises(InvalidWindowError, match="2025-10-01"):
        resolve_window("2025-09-30", "2025-10-31", date(2026, 11, 24))


@pytest.mark.parametrize(
    "value", ["yesterday", "2026-13-01", "2026-02-30", "2026/11/01", "11/01/2026", " "]
)
def test_non_dates_are_rejected_naming_the_field(value: str) -> None:
    with pytest.raises(InvalidWindowError, match="start_date"):
        resolve_window(value, "2026-11-10", date(2026, 11, 24))
    with pytest.raises(InvalidWindowError, match="end_date"):
        resolve_window("2026-11-01", value, date(2026, 11, 24))


def test_invalid_window_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        resolve_window("nope", None, date(2026, 11, 24))


@pytest.mark.parametrize(
    ("start", "end", "days"),
    [
        (date(2026, 11, 1), date(2026, 11, 1), 1),
        (date(2026, 10, 1), date(2026, 11, 23), 54),  # 31 in October + 23 in November
        (date(2028, 2, 1), date(2028, 3, 1), 30),  # leap February (29) + 1 March
        (date(2025, 12, 31), date(2026, 1, 1), 2),
    ],
)
def test_days_counts_both_ends(start: date, end: date, days: int) -> None:
    assert SyncWindow(start, end).days == days


NOV_25 = date(2026, 11, 25)


@pytest.mark.parametrize(
    ("stored", "rule", "start"),
    [
        # A first sync: the previous month too.
        (StoredDays(), REVISABLE, date(2026, 10, 1)),
        # The previous month is final: only the current month.
        (StoredDays(date(2026, 11, 23), date(2026, 11, 24)), REVISABLE, date(2026, 11, 1)),
        # A day of the previous month is still estimated: from that day on.
        (StoredDays(date(2026, 10, 20), date(2026, 11, 24)), REVISABLE, date(2026, 10, 20)),
        # Nothing estimated, but the last sync was on 28 October: the days since.
        (StoredDays(None, date(2026, 10, 27)), REVISABLE, date(2026, 10, 28)),
        # A sync missed for months reaches back no further than the previous month.
        (StoredDays(None, date(2026, 5, 31)), REVISABLE, date(2026, 10, 1)),
        # An estimated day older than the previous month is restated too.
        (StoredDays(date(2026, 8, 3), date(2026, 11, 24)), REVISABLE, date(2026, 8, 3)),
        # The old behaviour as a setting: always from the 1st of last month.
        (StoredDays(None, date(2026, 11, 24)), PREVIOUS_MONTH, date(2026, 10, 1)),
        (StoredDays(date(2026, 8, 3), date(2026, 11, 24)), PREVIOUS_MONTH, date(2026, 8, 3)),
    ],
)
def test_the_default_window_starts_at_the_oldest_day_cost_explorer_may_still_revise(
    stored: StoredDays, rule: str, start: date
) -> None:
    assert resolve_window(None, None, NOV_25, stored, rule) == SyncWindow(start, date(2026, 11, 24))


def test_on_the_first_of_a_month_a_final_previous_month_leaves_yesterday() -> None:
    stored = StoredDays(None, date(2026, 11, 30))
    assert default_window(date(2026, 12, 1), stored) == SyncWindow(
        date(2026, 11, 30), date(2026, 11, 30)
    )


def test_an_end_date_alone_starts_at_the_first_of_last_month_whatever_is_stored() -> None:
    stored = StoredDays(None, date(2026, 11, 24))
    assert resolve_window(None, "2026-10-20", NOV_25, stored) == SyncWindow(
        date(2026, 10, 1), date(2026, 10, 20)
    )
