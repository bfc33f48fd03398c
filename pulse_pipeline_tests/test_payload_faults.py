"""Payloads Cost Explorer should never send, through real Dagster runs against moto's queued
results: each one fails at once after its single request, nothing retried, the account's earlier
rows kept, its `lastSyncError` naming the field and the day; amounts of any scale are stored as
docs/numbers.md "How numbers are computed" says, and their checks pass on every sync."""

from collections import Counter
from collections.abc import Callable, Iterator
from datetime import date
from typing import Any

import dagster as dg
import psycopg
import pytest
from sqlalchemy import select

from pulse_pipeline.aws.connection import AwsConnection
from pulse_pipeline.db.schema import cost_explorer_page
from pulse_pipeline.db.urls import create_pulse_engine, to_sqlalchemy_url
from pulse_pipeline.defs.assets import sync_cloud_accounts
from pulse_pipeline.defs.resources import AwsCostExplorer, CostSettings, PulseDatabase
from pulse_pipeline.defs.run_outcomes import outcomes_of
from pulse_pipeline_tests.ce_results import ce_page, queue_results
from pulse_pipeline_tests.support import (
    D1,
    D2,
    D3,
    EC2,
    EXPECTED_ACC1,
    S3,
    TWO_PAGES,
    account_status,
    expected_row,
    failure_of,
    load_rates,
    materialization,
    stored_rows,
    write_status,
)

ACC1, ACC2 = "111111111111", "222222222222"
REJECTED = "CloudAccount acc-1: Cost Explorer's response was rejected, nothing was written: "
# GetCostAndUsage requests that reached AWS (botocore's own retries included), per AWS account.
REQUESTS: Counter[str] = Counter()
on_postgres = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


class CountingAws(AwsCostExplorer):
    """The production resource, counting every GetCostAndUsage request its clients send."""

    def cost_explorer_client(self, connection: AwsConnection) -> Any:
        client = super().cost_explorer_client(connection)
        account = connection.aws_account_id

        def count(**_: Any) -> None:
            REQUESTS[account] += 1

        client.meta.events.register("before-send.ce.GetCostAndUsage", count)
        return client


@pytest.fixture(autouse=True)
def counted_requests() -> Iterator[None]:
    REQUESTS.clear()
    yield
    REQUESTS.clear()


def sync(
    instance: dg.DagsterInstance, accounts: list[str], start: date, end: date
) -> dg.ExecuteInProcessResult:
    """One sync run through Dagster (the asset's retry policy included): one account, or a batch."""
    instance.add_dynamic_partitions("cloud_accounts", accounts)
    batch = {
        "dagster/asset_partition_range_start": accounts[0],
        "dagster/asset_partition_range_end": accounts[-1],
    }
    return dg.materialize(
        [sync_cloud_accounts],
        instance=instance,
        partition_key=accounts[0] if len(accounts) == 1 else None,
        tags=batch if len(accounts) > 1 else None,
        resources={
            "pulse_db": PulseDatabase(url=dg.EnvVar("DATABASE_URL")),
            "aws": CountingAws(),
            "settings": CostSettings(),
        },
        run_config={
            "ops": {
                "sync_cloud_accounts": {"config": {"start_date": str(start), "end_date": str(end)}}
            }
        },
        raise_on_error=False,
    )


def retries_of(result: dg.ExecuteInProcessResult) -> int:
    return sum(1 for event in result.all_events if event.event_type_value == "STEP_UP_FOR_RETRY")


def raw_page_count(database_url: str) -> int:
    engine = create_pulse_engine(database_url)
    with engine.connect() as conn:
        count = len(conn.execute(select(cost_explorer_page.c.id)).all())
    engine.dispose()
    return count


def page(**changes: Any) -> Callable[[dict[str, Any]], None]:
    """A change to one queued page: `changes` maps a path like 'ResultsByTime.0.Groups' to a
    value (`...` deletes it)."""

    def change(response: dict[str, Any]) -> None:
        for path, value in changes.items():
            *parents, last = path.split(".")
            node: Any = response
            for part in parents:
                node = node[int(part)] if part.isdigit() else node[part]
            key: Any = int(last) if last.isdigit() else last
            if value is ...:
                del node[key]
            else:
                node[key] = value

    return change


def bad_page(costs: Any, change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    response = ce_page(costs)
    change(response)
    return response


GOOD_D1 = {D1: {EC2: ("12", "USD")}}
# (costs, change to the page, what lastSyncError says after REJECTED)
REJECTIONS = {
    "amount-10^18": (
        {D1: {EC2: ("1000000000000000000", "USD")}},
        page(),
        f"{EC2} (Usage) on {D1} has an Amount of '1000000000000000000', too large to store: "
        "PULSE stores amounts below 10^18 with 10 decimal places",
    ),
    "nul-in-service": (
        {D1: {"Amazon\x00EC2": ("1", "USD")}},
        page(),
        f"the service name 'Amazon\\x00EC2' on {D1} contains a NUL character, which PULSE's "
        "database cannot store",
    ),
    "3000-character-service": (
        {D1: {"S" * 3000: ("1", "USD")}},
        page(),
        f"the service name '{'S' * 40}'… on {D1} is 3,000 bytes long (UTF-8); PULSE stores at "
        "most 1,024",
    ),
    "results-null": (
        GOOD_D1,
        page(**{"ResultsByTime": None}),
        "ResultsByTime on page 2 is null, expected a list",
    ),
    "results-missing": (
        GOOD_D1,
        page(**{"ResultsByTime": ...}),
        "ResultsByTime on page 2 is missing, expected a list",
    ),
    "groups-null": (
        GOOD_D1,
        page(**{"ResultsByTime.0.Groups": None}),
        f"Groups on {D1} is null, expected a list",
    ),
    "keys-a-string": (
        GOOD_D1,
        page(**{"ResultsByTime.0.Groups.0.Keys": "EC2"}),
        f"Keys of group 1 on {D1} is the string 'EC2', expected a list of 2 strings "
        "(service, record type)",
    ),
    "estimated-a-string": (
        GOOD_D1,
        page(**{"ResultsByTime.0.Estimated": "false"}),
        f"Estimated on {D1} is the string 'false', expected true or false",
    ),
    "amount-a-number": (
        GOOD_D1,
        page(**{"ResultsByTime.0.Groups.0.Metrics.UnblendedCost.Amount": 12.5}),
        f"Amount of {EC2} (Usage) on {D1} is the number 12.5, expected a decimal string",
    ),
    "nul-elsewhere-in-the-page": (
        GOOD_D1,
        page(**{"DimensionValueAttributes": [{"Value": "a\x00b", "Attributes": {}}]}),
        "page 2 has a NUL character in DimensionValueAttributes[0].Value, which PULSE's "
        "database cannot store",
    ),
}


@on_postgres
@pytest.mark.parametrize(("costs", "change", "cause"), REJECTIONS.values(), ids=REJECTIONS.keys())
def test_a_bad_payload_fails_at_once_after_one_request_and_says_what_is_wrong(
    pulse: str,
    dagster_instance: dg.DagsterInstance,
    moto_aws: None,
    costs: Any,
    change: Callable[[dict[str, Any]], None],
    cause: str,
) -> None:
    load_rates(dagster_instance)
    queue_results(ACC1, TWO_PAGES)
    queue_results(ACC1, [bad_page(costs, change)])
    assert sync(dagster_instance, ["acc-1"], D1, D3).success
    pages_before = raw_page_count(pulse)
    REQUESTS.clear()

    # A narrower window is a new request, answered with the bad page.
    result = sync(dagster_instance, ["acc-1"], D1, D2)

    assert not result.success
    assert retries_of(result) == 0 and REQUESTS == {ACC1: 2}
    assert failure_of(result) == REJECTED + cause
    assert stored_rows(pulse, "acc-1") == EXPECTED_ACC1
    assert raw_page_count(pulse) == pages_before  # checked before anything is stored
    assert write_status(dagster_instance, [result.run_id]).success
    status = account_status(pulse, "acc-1")
    assert status["status"] == "error" and status["lastSyncError"] == REJECTED + cause


@on_postgres
def test_an_amount_whose_eur_figure_is_too_large_fails_at_once_in_words(
    pulse: str, dagster_instance: dg.DagsterInstance, moto_aws: None
) -> None:
    load_rates(dagster_instance)
    queue_results(ACC1, TWO_PAGES)
    queue_results(ACC1, [ce_page({D1: {EC2: ("900000000000000000", "GBP")}})])
    assert sync(dagster_instance, ["acc-1"], D1, D3).success
    REQUESTS.clear()

    result = sync(dagster_instance, ["acc-1"], D1, D2)

    assert not result.success and retries_of(result) == 0 and REQUESTS == {ACC1: 2}
    # 900000000000000000 GBP at 0.8500 GBP per EUR
    cause = (
        f"{EC2} (Usage) on {D1}: 900000000000000000 GBP is "
        "1058823529411764705.8823529412 EUR, too large to store: PULSE stores amounts below 10^18"
    )
    assert failure_of(result) == REJECTED + cause
    assert stored_rows(pulse, "acc-1") == EXPECTED_ACC1
    assert write_status(dagster_instance, [result.run_id]).success
    assert account_status(pulse, "acc-1")["lastSyncError"] == REJECTED + cause


@on_postgres
@pytest.mark.parametrize(
    "bad", ["amount-10^18", "nul-in-service", "keys-a-string"], ids=lambda name: name
)
def test_in_a_batch_a_bad_payload_is_not_retried_and_the_other_account_is_synced(
    pulse: str, dagster_instance: dg.DagsterInstance, moto_aws: None, bad: str
) -> None:
    costs, change, cause = REJECTIONS[bad]
    load_rates(dagster_instance)
    queue_results(ACC1, TWO_PAGES)
    queue_results(ACC1, [bad_page(costs, change)])
    queue_results(ACC2, [ce_page({D1: {EC2: ("3", "GBP")}})])
    assert sync(dagster_instance, ["acc-1"], D1, D3).success
    REQUESTS.clear()

    result = sync(dagster_instance, ["acc-1", "acc-2"], D1, D2)

    assert not result.success and retries_of(result) == 0
    assert REQUESTS == {ACC1: 2, ACC2: 2}  # no retry at the end of the batch either
    assert stored_rows(pulse, "acc-1") == EXPECTED_ACC1
    assert stored_rows(pulse, "acc-2") == [expected_row("org-2", D1, EC2, "3", currency="GBP")]
    assert write_status(dagster_instance, [result.run_id]).success
    assert account_status(pulse, "acc-1")["lastSyncError"] == REJECTED + cause
    assert account_status(pulse, "acc-2")["status"] == "active"


@on_postgres
@pytest.mark.parametrize(
    "empty",
    [{"ResultsByTime": []}, {"ResultsByTime.0.Groups": [], "ResultsByTime.1.Groups": []}],
    ids=["no-days", "days-without-groups"],
)
def test_an_empty_answer_is_an_account_without_costs_and_replaces_the_window(
    pulse: str, dagster_instance: dg.DagsterInstance, moto_aws: None, empty: dict[str, Any]
) -> None:
    load_rates(dagster_instance)
    empty_page = bad_page({D1: {EC2: ("1", "USD")}, D2: {EC2: ("1", "USD")}}, page(**empty))
    queue_results(ACC1, TWO_PAGES)
    queue_results(ACC1, [empty_page])
    assert sync(dagster_instance, ["acc-1"], D1, D3).success
    REQUESTS.clear()

    result = sync(dagster_instance, ["acc-1"], D1, D2)

    assert result.success and REQUESTS == {ACC1: 2}
    assert stored_rows(pulse, "acc-1") == [row for row in EXPECTED_ACC1 if row[1] == D3]
    assert materialization(result, "daily_costs_eur").metadata["rows_removed"].value == 4
    assert write_status(dagster_instance, [result.run_id]).success
    assert account_status(pulse, "acc-1")["status"] == "active"


@on_postgres
def test_data_pulses_database_refuses_is_permanent_and_named_in_its_words(
    pulse: str, dagster_instance: dg.DagsterInstance, moto_aws: None
) -> None:
    """A rule of PULSE's own schema that the pipeline does not know: the COPY fails."""
    url, schema = to_sqlalchemy_url(pulse)
    libpq = url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(libpq, autocommit=True, options=f"-c search_path={schema}") as admin:
        admin.execute(
            "ALTER TABLE \"CostRecord\" ADD CONSTRAINT app_rule CHECK (service <> 'Retired')"
        )
    load_rates(dagster_instance)
    queue_results(ACC1, TWO_PAGES)
    queue_results(ACC1, [ce_page({D1: {"Retired": ("1", "USD")}})])
    assert sync(dagster_instance, ["acc-1"], D1, D3).success
    REQUESTS.clear()

    result = sync(dagster_instance, ["acc-1"], D1, D2)

    assert not result.success and retries_of(result) == 0 and REQUESTS == {ACC1: 2}
    cause = (
        "CloudAccount acc-1: PULSE's database refused the sync's data (new row for relation "
        '"CostRecord" violates check constraint "app_rule"); nothing was written'
    )
    assert failure_of(result) == cause
    assert stored_rows(pulse, "acc-1") == EXPECTED_ACC1
    assert write_status(dagster_instance, [result.run_id]).success
    assert account_status(pulse, "acc-1")["lastSyncError"] == cause


# Amounts Cost Explorer may send with more places than PULSE keeps, or in exponent notation:
# (as sent, as stored).
AMOUNTS = {
    D1: {EC2: ("12.34567890123", "12.3456789012"), S3: ("1e-30", "0")},
    D2: {EC2: ("1.5E+3", "1500"), S3: ("999999999999999999.99999999994", "999999999999999999.9999999999")},
    D3: {EC2: ("0.00000000015", "0.0000000002"), S3: ("-2.5e-7", "-0.00000025")},
}  # fmt: skip


def test_amounts_of_any_scale_are_stored_rounded_to_ten_places_and_every_sync_reconciles(
    pulse: str, dagster_instance: dg.DagsterInstance, moto_aws: None
) -> None:
    load_rates(dagster_instance)
    sent = {
        day: {s: (text, "USD") for s, (text, _) in costs.items()} for day, costs in AMOUNTS.items()
    }
    queue_results(ACC1, [ce_page(sent)])

    runs = [sync(dagster_instance, ["acc-1"], D1, D3) for _ in range(2)]

    expected = [
        expected_row("org-1", day, service, stored)
        for day, costs in AMOUNTS.items()
        for service, (_, stored) in sorted(costs.items())
    ]
    assert stored_rows(pulse, "acc-1") == expected
    for result in runs:  # the same amounts, synced again: no sync fails on them
        assert result.success
        checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
        assert set(checks.values()) == {True} and len(checks) == 5  # 4 reconciliation, fresh
        assert materialization(result, "cost_explorer_raw").metadata["amounts_rounded"].value == 4
    changes = materialization(runs[1], "daily_costs_eur").metadata
    assert (changes["rows_added"].value, changes["rows_changed"].value) == (0, 0)
    assert REQUESTS == {ACC1: 4}  # each sync: which accounts the role sees, then the costs
    # The raw page keeps Cost Explorer's text: 1e-30, 1.5E+3, all 14 places of 999...94.
    costs = [r for r in raw_responses(pulse) if r["GroupDefinitions"][0]["Key"] == "SERVICE"]
    assert costs == [ce_page(sent)] * 2


def raw_responses(database_url: str) -> list[dict[str, Any]]:
    engine = create_pulse_engine(database_url)
    with engine.connect() as conn:
        responses = conn.execute(
            select(cost_explorer_page.c.response).order_by(cost_explorer_page.c.id)
        ).scalars()
        stored = list(responses)
    engine.dispose()
    return stored


@dg.op(retry_policy=dg.RetryPolicy(max_retries=1))
def breaks_outside_the_sync() -> None:
    raise ValueError("a cause that is no dg.Failure")


@dg.job
def broken_sync() -> None:
    breaks_outside_the_sync()


@on_postgres
def test_a_step_the_retry_policy_gave_up_on_is_named_by_its_cause(
    dagster_instance: dg.DagsterInstance,
) -> None:
    """Dagster reports such a step as `RetryRequestedFromPolicy: Exceeded max_retries of 1`."""
    result = broken_sync.execute_in_process(
        instance=dagster_instance, tags={"dagster/partition": "acc-1"}, raise_on_error=False
    )

    assert not result.success and retries_of(result) == 1
    [outcome] = outcomes_of(dagster_instance, result.run_id)
    assert outcome.error == (
        "CloudAccount acc-1: step breaks_outside_the_sync failed "
        "(ValueError: a cause that is no dg.Failure)"
    )
