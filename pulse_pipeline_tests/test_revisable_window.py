"""The default window re-reads only the days Cost Explorer may still revise, through real Dagster
runs against the simulated AWS (PULSE on SQLite and PostgreSQL): a previous month whose days are
all final is not read again, one with a day still estimated is, a restated estimated day
replaces the stored one, and a backfill of a closed month adds nothing to re-read. Requests are
counted by the simulated AWS."""

import math
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from decimal import Decimal

import dagster as dg
import pytest

from pulse_pipeline_dev.simulated_aws import SimulatedAws, SimulationSettings
from pulse_pipeline_dev.simulated_aws.data import window_lines
from pulse_pipeline_tests.support import TODAY, load_rates, materialization, run_sync, stored_rows

AWS_ACCOUNT = "111111111111"  # acc-1's role
SERVICES = 40
PAGE_SIZE = 500  # groups per page, as in the benchmark
THIS_MONTH = TODAY.replace(day=1)
LAST_MONTH = (THIS_MONTH - timedelta(days=1)).replace(day=1)
YESTERDAY = TODAY - timedelta(days=1)
# The month before the previous one: its bill is closed whatever today is.
CLOSED_MONTH = (LAST_MONTH - timedelta(days=1)).replace(day=1)

pytestmark = pytest.mark.skipif(
    TODAY.day == 1, reason="on the 1st the current month has no complete day yet"
)


@contextmanager
def simulated_aws(
    monkeypatch: pytest.MonkeyPatch, estimated_from: date | None, seed: int = 0
) -> Iterator[SimulatedAws]:
    """Cost Explorer marking every day from `estimated_from` on Estimated (None: by today's
    calendar, as in the demo); `seed` sets the amounts, so a new seed restates every day it is
    asked for."""
    settings = SimulationSettings(
        services_per_day=SERVICES, page_size=PAGE_SIZE, estimated_from=estimated_from, seed=seed
    )
    with SimulatedAws(settings) as aws:
        for name, value in aws.environment().items():
            monkeypatch.setenv(name, value)
        yield aws


def pages(start: date, end: date, seed: int = 0) -> int:
    """The requests (result pages) of a window: the first one (which accounts the role sees:
    one page per month and record type for an account that sees itself), then the pages of
    the simulated groups of its days."""
    groups = len(window_lines(seed, SERVICES, AWS_ACCOUNT, start, end + timedelta(days=1)))
    months = (end.year - start.year) * 12 + end.month - start.month + 1
    first = math.ceil(months * 3 / PAGE_SIZE)  # at most Usage, Credit and Tax each month
    return first + math.ceil(groups / PAGE_SIZE)


def window_of(result: dg.ExecuteInProcessResult) -> tuple[str, str]:
    metadata = materialization(result, "cost_explorer_raw").metadata
    return str(metadata["window_start"].value), str(metadata["window_end"].value)


def usage(database_url: str, day: date, service: str) -> Decimal:
    (amount,) = [
        row[3]
        for row in stored_rows(database_url, "acc-1")
        if row[1] == day and row[2] == service and row[9] == "Usage"
    ]
    return Decimal(amount)


def test_a_closed_previous_month_is_not_read_again_and_the_money_matches_a_full_re_read(
    pulse: str, dagster_instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    load_rates(dagster_instance)
    with simulated_aws(monkeypatch, estimated_from=THIS_MONTH) as aws:
        first = run_sync(dagster_instance, "acc-1", None, None)
        assert first.success
        # A first sync reads the previous month too.
        assert window_of(first) == (LAST_MONTH.isoformat(), YESTERDAY.isoformat())
        assert aws.request_count(AWS_ACCOUNT) == pages(LAST_MONTH, YESTERDAY)
        aws.reset_request_counts()

        second = run_sync(dagster_instance, "acc-1", None, None)

        assert second.success
        assert window_of(second) == (THIS_MONTH.isoformat(), YESTERDAY.isoformat())
        assert aws.request_count(AWS_ACCOUNT) == pages(THIS_MONTH, YESTERDAY)
        kept = stored_rows(pulse, "acc-1")

        # The old behaviour, as a setting: the whole previous month again, the same money.
        monkeypatch.setenv("PULSE_DEFAULT_WINDOW", "previous-month")
        aws.reset_request_counts()
        full = run_sync(dagster_instance, "acc-1", None, None)
        assert full.success
        assert window_of(full) == (LAST_MONTH.isoformat(), YESTERDAY.isoformat())
        assert aws.request_count(AWS_ACCOUNT) == pages(LAST_MONTH, YESTERDAY)
        assert stored_rows(pulse, "acc-1") == kept


def test_an_open_previous_month_is_read_again_and_a_restated_estimated_day_is_replaced(
    pulse: str, dagster_instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    still_estimated = LAST_MONTH + timedelta(days=19)  # the previous month's bill is open
    service = "Amazon Elastic Compute Cloud - Compute"
    load_rates(dagster_instance)
    with simulated_aws(monkeypatch, still_estimated, seed=0) as before:
        assert run_sync(dagster_instance, "acc-1", None, None).success
    final_day = still_estimated - timedelta(days=1)
    final_amount = before.expected_cost(AWS_ACCOUNT, final_day, service, "Usage")
    assert usage(pulse, still_estimated, service) == before.expected_cost(
        AWS_ACCOUNT, still_estimated, service, "Usage"
    )

    # AWS restates its estimates (a new seed changes every amount it is asked for).
    with simulated_aws(monkeypatch, still_estimated, seed=1) as after:
        second = run_sync(dagster_instance, "acc-1", None, None)

        assert second.success
        assert window_of(second) == (still_estimated.isoformat(), YESTERDAY.isoformat())
        assert after.request_count(AWS_ACCOUNT) == pages(still_estimated, YESTERDAY, seed=1)
    restated = after.expected_cost(AWS_ACCOUNT, still_estimated, service, "Usage")
    assert restated != before.expected_cost(AWS_ACCOUNT, still_estimated, service, "Usage")
    assert usage(pulse, still_estimated, service) == restated
    assert usage(pulse, final_day, service) == final_amount  # final: not asked for again


def test_a_backfill_of_a_closed_month_is_final_and_not_read_again_by_the_next_default_sync(
    pulse: str, dagster_instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Estimated by the calendar: the current month, and the previous one until its bill
    # closes on the 5th.
    still_open = THIS_MONTH if TODAY.day >= 5 else LAST_MONTH
    closed_end = LAST_MONTH - timedelta(days=1)
    load_rates(dagster_instance)
    with simulated_aws(monkeypatch, estimated_from=None) as aws:
        assert run_sync(dagster_instance, "acc-1", None, None).success
        backfill = run_sync(dagster_instance, "acc-1", CLOSED_MONTH, closed_end)
        assert backfill.success
        aws.reset_request_counts()

        after = run_sync(dagster_instance, "acc-1", None, None)

        assert after.success
        # The backfill's last days are final, so the next sync starts where it would have
        # without the backfill, and pays for those days only.
        assert window_of(after) == (still_open.isoformat(), YESTERDAY.isoformat())
        assert aws.request_count(AWS_ACCOUNT) == pages(still_open, YESTERDAY)
    assert materialization(backfill, "cost_explorer_raw").metadata["estimated_days"].value == 0
    backfilled = [row for row in stored_rows(pulse, "acc-1") if row[1] <= closed_end]
    assert {row[1] for row in backfilled} == {
        CLOSED_MONTH + timedelta(days=n) for n in range((closed_end - CLOSED_MONTH).days + 1)
    }
    assert not any(row[8] for row in backfilled)  # estimated
