"""The end-to-end sync through real Dagster runs: moto's STS and Cost Explorer, PULSE on SQLite and PostgreSQL."""

from datetime import UTC, date, timedelta
from decimal import Decimal
from typing import Any

import dagster as dg
import pytest
import sqlalchemy as sa
from sqlalchemy import select

from pulse_pipeline.db.schema import cloud_account, cost_explorer_page, cost_record
from pulse_pipeline.db.urls import create_pulse_engine
from pulse_pipeline.defs.definitions import defs
from pulse_pipeline.defs.partitions import RANGE_END_TAG, RANGE_START_TAG
from pulse_pipeline_tests.ce_results import ce_page, queue_results
from pulse_pipeline_tests.support import (
    D1,
    D2,
    D3,
    D4,
    EC2,
    EXPECTED_ACC1,
    S3,
    TODAY,
    TWO_PAGES,
    account_row,
    account_status,
    expected_row,
    load_rates,
    materialization,
    run_sync,
    stored_rows,
    write_status,
)


def test_sync_follows_every_page_and_stores_exact_eur_rows(
    pulse: str, dagster_instance: dg.DagsterInstance, moto_aws: None
) -> None:
    load_rates(dagster_instance)
    queue_results("111111111111", TWO_PAGES)

    result = run_sync(dagster_instance, "acc-1", D1, D3)

    assert result.success
    assert stored_rows(pulse, "acc-1") == EXPECTED_ACC1
    raw = materialization(result, "cost_explorer_raw").metadata
    # The first request asks which accounts the role sees (only its own), then two pages.
    assert raw["pages"].value == 3 and raw["requests"].value == 3 and raw["groups"].value == 5
    assert raw["paid_requests"].value == 3 and raw["cost_explorer_usd"].value == 0.03
    assert raw["window_start"].value == D1.isoformat() and raw["window_end"].value == D3.isoformat()
    eur_meta = materialization(result, "daily_costs_eur").metadata
    assert eur_meta["dagster/row_count"].value == 5
    assert Decimal(eur_meta["total_eur_exact"].value) == sum(row[7] for row in EXPECTED_ACC1)

    engine = create_pulse_engine(pulse)
    with engine.connect() as conn:
        pages = conn.execute(
            select(
                cost_explorer_page.c.id,
                cost_explorer_page.c.page_number,
                cost_explorer_page.c.request,
            )
            .where(cost_explorer_page.c.run_id == result.run_id)
            .order_by(cost_explorer_page.c.page_number)
        ).all()
        sources = conn.execute(
            select(cost_record.c.service, cost_record.c.date, cost_record.c.rawPageId)
        ).all()
    engine.dispose()
    assert [page.page_number for page in pages] == [1, 2, 3]
    assert pages[0].request["Granularity"] == "MONTHLY"
    assert pages[1].request["TimePeriod"] == {"Start": D1.isoformat(), "End": D4.isoformat()}
    page_of = {row.date: row.rawPageId for row in sources if row.service == EC2}
    assert page_of[D1] == pages[1].id and page_of[D3] == pages[2].id


def test_rerun_changes_nothing_and_a_restatement_replaces_rows(
    pulse: str, dagster_instance: dg.DagsterInstance, moto_aws: None
) -> None:
    load_rates(dagster_instance)
    queue_results("111111111111", TWO_PAGES)
    assert run_sync(dagster_instance, "acc-1", D1, D3).success
    assert run_sync(dagster_instance, "acc-1", D1, D3).success
    assert stored_rows(pulse, "acc-1") == EXPECTED_ACC1

    # A wider window (a new request): S3 on D1 vanished upstream, EC2 on D2 was restated.
    queue_results(
        "111111111111",
        [
            ce_page(
                {
                    D1: {EC2: ("12.3456789012", "USD")},
                    D2: {EC2: ("9.5", "USD"), S3: ("1.5", "USD")},
                    D4: {EC2: ("1", "USD")},
                }
            )
        ],
    )
    assert run_sync(dagster_instance, "acc-1", D1, D4).success
    assert stored_rows(pulse, "acc-1") == [
        expected_row("org-1", D1, EC2, "12.3456789012"),
        expected_row("org-1", D2, EC2, "9.5"),
        expected_row("org-1", D2, S3, "1.5"),
        expected_row("org-1", D4, EC2, "1"),
    ]


def test_a_failing_account_fails_clearly_and_leaves_other_rows_intact(
    pulse: str, dagster_instance: dg.DagsterInstance, moto_aws: None
) -> None:
    load_rates(dagster_instance)
    queue_results("111111111111", TWO_PAGES)
    queue_results("222222222222", [ce_page({D1: {EC2: ("3", "GBP")}})])
    assert run_sync(dagster_instance, "acc-1", D1, D3).success
    assert run_sync(dagster_instance, "acc-2", D1, D3).success
    acc2_rows = stored_rows(pulse, "acc-2")
    assert acc2_rows[0][3:6] == (Decimal("3"), "GBP", Decimal("0.8500"))

    engine = create_pulse_engine(pulse)
    with engine.begin() as conn:
        conn.execute(
            cloud_account.update()
            .where(cloud_account.c.id == "acc-2")
            .values(roleArn="arn:aws:iam::2222:role/oops")
        )
    engine.dispose()
    failed = run_sync(dagster_instance, "acc-2", D1, D3)

    assert not failed.success
    failure = failed.get_step_failure_events()[0].step_failure_data.user_failure_data
    assert failure is not None
    assert (
        "CloudAccount acc-2" in failure.description
        and "malformed IAM role ARN" in failure.description
    )
    assert "ext-id-42" not in failure.description
    assert stored_rows(pulse, "acc-2") == acc2_rows
    assert stored_rows(pulse, "acc-1") == EXPECTED_ACC1


@pytest.mark.parametrize(
    ("pages", "cause"),
    [
        ([ce_page({D1: {EC2: ("twelve", "USD")}})], "non-numeric Amount"),
        ([ce_page({D1: {EC2: ("12", "")}})], "no valid currency Unit"),
        ([ce_page({D4: {EC2: ("12", "USD")}})], "outside"),
        ([ce_page({D1: {EC2: ("12", "XYZ")}})], "XYZ"),
    ],
    ids=["non-numeric", "missing-unit", "day-outside-window", "unknown-currency"],
)
def test_a_malformed_payload_writes_nothing(
    pulse: str,
    dagster_instance: dg.DagsterInstance,
    moto_aws: None,
    pages: list[dict[str, Any]],
    cause: str,
) -> None:
    load_rates(dagster_instance)
    queue_results("111111111111", TWO_PAGES)
    queue_results("111111111111", pages)
    assert run_sync(dagster_instance, "acc-1", D1, D3).success
    # A narrower window is a new request, answered with the malformed page.
    result = run_sync(dagster_instance, "acc-1", D1, D2)

    assert not result.success
    description = result.get_step_failure_events()[
        0
    ].step_failure_data.user_failure_data.description
    assert "CloudAccount acc-1" in description and cause in description
    assert stored_rows(pulse, "acc-1") == EXPECTED_ACC1


@pytest.mark.parametrize(
    ("start", "end", "cause"),
    [
        (D2, D1, "is after end_date"),
        (D1, TODAY + timedelta(days=1), "in the future"),
        (TODAY - timedelta(days=500), D1, "older than Cost Explorer keeps daily data"),
    ],
    ids=["reversed", "future", "too-old"],
)
def test_an_invalid_window_fails_before_any_aws_request(
    pulse: str,
    dagster_instance: dg.DagsterInstance,
    moto_aws: None,
    start: date,
    end: date,
    cause: str,
) -> None:
    result = run_sync(dagster_instance, "acc-1", start, end)

    assert not result.success
    description = result.get_step_failure_events()[
        0
    ].step_failure_data.user_failure_data.description
    assert cause in description
    engine = create_pulse_engine(pulse)
    with engine.connect() as conn:
        assert conn.execute(select(cost_explorer_page.c.id)).all() == []
    engine.dispose()


def test_status_op_marks_success_active_and_failure_error_with_its_cause(
    pulse: str, dagster_instance: dg.DagsterInstance, moto_aws: None
) -> None:
    load_rates(dagster_instance)
    queue_results("111111111111", TWO_PAGES)
    engine = create_pulse_engine(pulse)
    with engine.begin() as conn:
        conn.execute(
            cloud_account.update().where(cloud_account.c.id == "acc-2").values(externalId=None)
        )
    engine.dispose()
    ok = run_sync(dagster_instance, "acc-1", D1, D3)
    failed = run_sync(dagster_instance, "acc-2", D1, D3)
    assert account_status(pulse, "acc-1")["status"] == "pending"

    result = write_status(dagster_instance, [ok.run_id, failed.run_id])

    assert result.success
    active = account_status(pulse, "acc-1")
    assert active["status"] == "active" and active["lastSyncError"] is None
    run_end = dagster_instance.get_run_record_by_id(ok.run_id).end_time
    assert abs(active["lastSyncedAt"].replace(tzinfo=UTC).timestamp() - run_end) < 1
    broken = account_status(pulse, "acc-2")
    assert broken["status"] == "error" and broken["lastSyncedAt"] is None
    assert broken["lastSyncError"].startswith(
        "CloudAccount acc-2 (org-2 production) has no external ID"
    )

    # The account is fixed and synced again: the error is cleared, the time moves on.
    queue_results("222222222222", [ce_page({D1: {EC2: ("3", "GBP")}})])
    engine = create_pulse_engine(pulse)
    with engine.begin() as conn:
        conn.execute(
            cloud_account.update()
            .where(cloud_account.c.id == "acc-2")
            .values(externalId="ext-id-42")
        )
    engine.dispose()
    fixed = run_sync(dagster_instance, "acc-2", D1, D3)
    assert write_status(dagster_instance, [fixed.run_id]).success
    healed = account_status(pulse, "acc-2")
    assert (
        healed["status"] == "active"
        and healed["lastSyncError"] is None
        and healed["lastSyncedAt"] is not None
    )


def test_a_batch_reads_the_connections_once_however_many_accounts_it_syncs(
    pulse: str, dagster_instance: dg.DagsterInstance, moto_aws: None
) -> None:
    """Each account of a run is compared with every connection in PULSE (duplicates, the
    confused deputy); the run reads them once, not once per account."""
    load_rates(dagster_instance)
    accounts = [f"acc-{n}" for n in range(1, 9)]
    engine = create_pulse_engine(pulse)
    with engine.begin() as conn:
        conn.execute(
            cloud_account.insert(),
            [
                account_row(a, f"org-{a}", f"arn:aws:iam::{n:012d}:role/R")
                for n, a in enumerate(accounts[2:], 3)
            ],
        )
    engine.dispose()
    for n in range(1, len(accounts) + 1):
        aws_account = {1: "111111111111", 2: "222222222222"}.get(n, f"{n:012d}")
        queue_results(aws_account, [ce_page({D1: {EC2: ("1.5", "USD")}})])
    dagster_instance.add_dynamic_partitions("cloud_accounts", accounts)
    whole_table_reads: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        one_account_or_org = ('"CloudAccount".id =', '"CloudAccount"."orgId" =')
        if 'FROM "CloudAccount"' in statement and not any(
            where in statement for where in one_account_or_org
        ):
            whole_table_reads.append(statement)

    sa.event.listen(sa.Engine, "before_cursor_execute", count)
    try:
        result = (
            defs()
            .resolve_job_def("sync_aws_costs")
            .execute_in_process(
                instance=dagster_instance,
                tags={RANGE_START_TAG: accounts[0], RANGE_END_TAG: accounts[-1]},
                run_config={
                    "ops": {
                        "sync_cloud_accounts": {
                            "config": {"start_date": D1.isoformat(), "end_date": D1.isoformat()}
                        }
                    }
                },
            )
        )
    finally:
        sa.event.remove(sa.Engine, "before_cursor_execute", count)

    assert result.success
    assert all(stored_rows(pulse, account) for account in accounts)
    assert len(whole_table_reads) == 1
