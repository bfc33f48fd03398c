"""End to end through `dagster dev` (webserver + daemon) on loopback, PostgreSQL everywhere:
the new-account sensor syncs accounts by itself, the status sensor writes their outcome, a
date-range backfill launched over GraphQL gives one run per account, and a killed run ends
with its account in `error`."""

import math
import os
import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from sqlalchemy import insert, select

from pulse_pipeline.db.schema import cloud_account, cost_explorer_page, cost_record
from pulse_pipeline.db.urls import create_pulse_engine
from pulse_pipeline.defs.partitions import accounts_in_run
from pulse_pipeline_dev.simulated_aws import SimulatedAws
from pulse_pipeline_tests.daemon import graphql, wait_for
from pulse_pipeline_tests.shared_dagster import (
    E2E_ACCOUNTS,
    E2E_EXTERNAL_ID,
    E2E_SLOW,
    E2E_SLOW_AWS_ACCOUNT,
    PAGE_SIZE,
    SharedDagster,
    account_row,
)
from pulse_pipeline_tests.support import amounts_by_service

TODAY = datetime.now(UTC).date()
ACCOUNTS, SLOW = E2E_ACCOUNTS, E2E_SLOW


@pytest.fixture
def webserver(shared_dagster: SharedDagster) -> str:
    """The address of the session's `dagster dev` webserver."""
    return shared_dagster.base


@pytest.fixture
def pulse_url(shared_dagster: SharedDagster) -> str:
    return shared_dagster.pulse_url


@pytest.fixture
def dagster_home(shared_dagster: SharedDagster) -> Path:
    return shared_dagster.home


@pytest.fixture
def simulated_aws(shared_dagster: SharedDagster) -> SimulatedAws:
    return shared_dagster.aws


def statuses(pulse_url: str) -> dict[str, dict[str, Any]]:
    engine = create_pulse_engine(pulse_url)
    with engine.connect() as conn:
        rows = conn.execute(select(cloud_account)).mappings().all()
    engine.dispose()
    return {row["id"]: dict(row) for row in rows}


def row_count(pulse_url: str, account_id: str, start: Any, end: Any) -> int:
    engine = create_pulse_engine(pulse_url)
    c = cost_record.c
    with engine.connect() as conn:
        rows = conn.execute(
            select(c.id).where(c.cloudAccountId == account_id, c.date >= start, c.date <= end)
        ).all()
    engine.dispose()
    return len(rows)


LAUNCH_BACKFILL = """
mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
  }
}"""
BACKFILL_STATUS = """
query Status($id: String!) {
  partitionBackfillOrError(backfillId: $id) { ... on PartitionBackfill { status } }
}"""


def test_the_pipeline_runs_itself_and_a_graphql_backfill_batches_accounts_into_one_run(
    webserver: str, pulse_url: str, dagster_home: Path, simulated_aws: SimulatedAws
) -> None:
    # 1. Nobody launches anything: ECB rates load, the accounts become partitions and sync.
    def settled() -> dict[str, dict[str, Any]] | None:
        now = statuses(pulse_url)
        return now if all(now[i]["status"] != "pending" for i in ACCOUNTS) else None

    first = wait_for(settled, "the sensor-launched syncs and their statuses")
    assert first["acc-a"]["status"] == "active" and first["acc-b"]["status"] == "active"
    assert first["acc-denied"]["status"] == "error"
    assert "AccessDenied" in first["acc-denied"]["lastSyncError"]
    assert E2E_EXTERNAL_ID not in first["acc-denied"]["lastSyncError"]
    yesterday = TODAY - timedelta(days=1)
    assert (yesterday, simulated_aws.service_names()[0]) in amounts_by_service(
        pulse_url, "acc-a", yesterday, yesterday
    )

    # 2. A date-range backfill of two accounts, launched over GraphQL with the window as config.
    start, end = TODAY - timedelta(days=100), TODAY - timedelta(days=94)
    launched = graphql(
        webserver,
        LAUNCH_BACKFILL,
        {
            "params": {
                "partitionNames": ["acc-a", "acc-b"],
                "assetSelection": [{"path": ["cost_explorer_raw"]}, {"path": ["daily_costs_eur"]}],
                "runConfigData": {
                    "ops": {
                        "sync_cloud_accounts": {
                            "config": {"start_date": start.isoformat(), "end_date": end.isoformat()}
                        }
                    }
                },
            }
        },
    )["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    backfill_id = launched["backfillId"]
    status = wait_for(
        lambda: (
            (
                s := graphql(webserver, BACKFILL_STATUS, {"id": backfill_id})[
                    "partitionBackfillOrError"
                ]["status"]
            )
            not in ("REQUESTED",)
            and s
        ),
        "the backfill",
    )
    assert status in ("COMPLETED", "COMPLETED_SUCCESS"), status

    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        runs = instance.get_runs(dg.RunsFilter(tags={"dagster/backfill": backfill_id}))
        # The sync's backfill policy puts both accounts in one run over their partition range.
        assert [accounts_in_run(instance, dict(run.tags)) for run in runs] == [["acc-a", "acc-b"]]
        assert all(run.status == dg.DagsterRunStatus.SUCCESS for run in runs)
        run_ids = [run.run_id for run in runs]
    engine = create_pulse_engine(pulse_url)
    with engine.connect() as conn:
        pages = conn.execute(
            select(
                cost_explorer_page.c.cloud_account_id,
                cost_explorer_page.c.window_start,
                cost_explorer_page.c.window_end,
            ).where(cost_explorer_page.c.run_id.in_(run_ids))
        ).all()
    engine.dispose()
    assert {(p.window_start, p.window_end) for p in pages} == {(start, end)}
    for account_id, aws_id in (("acc-a", "911111111111"), ("acc-b", "922222222222")):
        expected = {
            (start + timedelta(days=n), service): simulated_aws.expected_cost(
                aws_id, start + timedelta(days=n), service
            )
            for n in range(7)
            for service in simulated_aws.service_names()
        }
        assert (
            amounts_by_service(
                pulse_url, account_id, start - timedelta(days=30), end + timedelta(days=30)
            )
            == expected
        )
        # The first request (which accounts the role sees), then one request per result page
        # of PAGE_SIZE groups for the whole window, not one per day.
        groups = row_count(pulse_url, account_id, start, end)
        assert sum(1 for p in pages if p.cloud_account_id == account_id) == 1 + math.ceil(
            groups / PAGE_SIZE
        )

    # Their statuses are written by the status sensor, as for any other sync.
    def backfill_statuses_written() -> bool:
        now = statuses(pulse_url)
        return all(
            now[i]["status"] == "active" and now[i]["lastSyncedAt"] > first[i]["lastSyncedAt"]
            for i in ("acc-a", "acc-b")
        )

    wait_for(backfill_statuses_written, "the backfill runs' statuses")

    # 3. A run whose process is killed: the account ends in `error`, nothing partial is written.
    synced_before = statuses(pulse_url)["acc-a"]["lastSyncedAt"]
    engine = create_pulse_engine(pulse_url)
    with engine.begin() as conn:
        conn.execute(
            insert(cloud_account),
            [account_row(SLOW[0], "org-e2e", SLOW[1], external_id=E2E_EXTERNAL_ID)],
        )
    engine.dispose()

    def worker_pid() -> int | None:
        with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
            runs = instance.get_runs(dg.RunsFilter(tags={"dagster/partition": SLOW[0]}))
            for run in runs:
                for event in instance.all_logs(
                    run.run_id, of_type=dg.DagsterEventType.ENGINE_EVENT
                ):
                    pid = (
                        event.dagster_event.engine_event_data.metadata.get("pid")
                        if event.dagster_event
                        else None
                    )
                    if pid is not None and simulated_aws.request_count(E2E_SLOW_AWS_ACCOUNT) > 0:
                        return int(pid.value)
        return None

    os.kill(wait_for(worker_pid, "the slow account's run to call Cost Explorer"), signal.SIGKILL)
    killed = wait_for(
        lambda: (s := statuses(pulse_url)[SLOW[0]])["status"] == "error" and s,
        "the killed run's status",
    )
    assert "killed" in killed["lastSyncError"]
    assert amounts_by_service(pulse_url, SLOW[0], TODAY - timedelta(days=400), TODAY) == {}
    assert statuses(pulse_url)["acc-a"]["lastSyncedAt"] == synced_before
