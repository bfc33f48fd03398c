"""The default window re-reads only the days Cost Explorer may still revise, through real Dagster
runs against the simulated AWS (PULSE on SQLite and PostgreSQL): a previous month whose days are
all final is not read again, one with a day still estimated is, and a restated estimated day
replaces the stored one. Requests are counted by the simulated AWS."""

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

pytestmark = pytest.mark.skipif(
    TODAY.day == 1, reason="on the 1st the current month has no complete day yet"
)


@contextmanager
def simulated_aws(
    monkeypatch: pytest.MonkeyPatch, estimated_from: date, seed: int = 0
) -> Iterator[SimulatedAws]:
    """Cost Explorer marking every day from `estimated_from` on Estimated; `seed` sets the
    amounts, so a new seed restates every day it is asked for."""
    settings = SimulationSettings(
        services_per_day=SERVICES, page_size=PAGE_SIZE, estimated_from=estimated_from, seed=seed
    )
    with SimulatedAws(settings) as aws:
        for name, value in aws.environment().items():
            monkeypatch.setenv(name, value)
        yield aws


def pages(start: date, end: date, seed: int = 0) -> int:
    """The requests (result pages) of a window, from the simulated groups of its days."""
    groups = len(window_lines(seed, SERVICES, AWS_ACCOUNT, start, end + timedelta(days=1)))
    return math.ceil(groups / PAGE_SIZE)


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
