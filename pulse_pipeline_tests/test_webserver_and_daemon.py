"""End to end through `dagster dev` (webserver + daemon) on loopback, PostgreSQL everywhere:
the new-account sensor syncs accounts by itself, the status sensor writes their outcome, a
date-range backfill launched over GraphQL gives one run per account, and a killed run ends
with its account in `error`."""

import math
import os
import signal
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import psycopg
import pytest
from sqlalchemy import insert, select

from pulse_pipeline.db.migrate import upgrade
from pulse_pipeline.db.schema import cloud_account, cost_explorer_page, cost_record
from pulse_pipeline.db.urls import create_pulse_engine
from pulse_pipeline.partitions import accounts_in_run
from pulse_pipeline_dev.simulated_aws import SimulatedAws, SimulationSettings
from pulse_pipeline_tests.ce_results import ecb_history_csv
from pulse_pipeline_tests.daemon import (
    graphql,
    postgres_dagster_home,
    running_dagster_dev,
    wait_for,
)
from pulse_pipeline_tests.support import amounts_by_service

TODAY = datetime.now(UTC).date()
SERVICES, PAGE_SIZE = 5, 8
ACCOUNTS = {
    "acc-a": "arn:aws:iam::111111111111:role/PulseRead",
    "acc-b": "arn:aws:iam::222222222222:role/PulseRead",
    "acc-denied": "arn:aws:iam::333333333333:role/PulseRead",
}
SLOW = ("acc-slow", "arn:aws:iam::444444444444:role/PulseRead")


def account_row(account_id: str, role_arn: str) -> dict[str, Any]:
    return {
        "id": account_id,
        "orgId": "org-e2e",
        "provider": "AWS",
        "accountName": f"{account_id} account",
        "connectionType": "COST_EXPLORER",
        "roleArn": role_arn,
        "externalId": "ext-id-e2e",
    }


@pytest.fixture
def pulse_url(postgres_database: str) -> str:
    schema = f"e2e_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres_database, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    url = f"{postgres_database}?schema={schema}"
    upgrade(url)
    engine = create_pulse_engine(url)
    with engine.begin() as conn:
        conn.execute(insert(cloud_account), [account_row(i, arn) for i, arn in ACCOUNTS.items()])
    engine.dispose()
    return url


@pytest.fixture
def dagster_home(tmp_path: Path) -> Iterator[Path]:
    """The local dagster.yaml of the repository, with Dagster's storage on PostgreSQL."""
    with postgres_dagster_home(tmp_path, "pulse_e2e_dagster") as home:
        yield home


@pytest.fixture
def simulated_aws() -> Iterator[SimulatedAws]:
    settings = SimulationSettings(
        services_per_day=SERVICES,
        page_size=PAGE_SIZE,
        denied_role_arns=frozenset({ACCOUNTS["acc-denied"]}),
        latency_by_account={"444444444444": 2.0},
    )
    with SimulatedAws(settings) as aws:
        yield aws


@pytest.fixture
def dagster_dev(
    pulse_url: str, dagster_home: Path, simulated_aws: SimulatedAws, tmp_path: Path
) -> Iterator[str]:
    """`dagster dev` in its own process group, stopped by its process group id."""
    rates = {
        TODAY - timedelta(days=n): {"USD": "1.1000"}
        for n in range(1, 420)
        if (TODAY - timedelta(days=n)).weekday() < 5
    }
    history = tmp_path / "eurofxref-hist.csv"
    history.write_text(ecb_history_csv(rates))
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
        **simulated_aws.environment(),
        "DAGSTER_HOME": str(dagster_home),
        "DATABASE_URL": pulse_url,
        "PULSE_ECB_HISTORY_URL": str(history),
    }
    with running_dagster_dev(env, tmp_path / "dagster-dev.log") as base:
        yield base


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
    dagster_dev: str, pulse_url: str, dagster_home: Path, simulated_aws: SimulatedAws
) -> None:
    # 1. Nobody launches anything: ECB rates load, the accounts become partitions and sync.
    def settled() -> dict[str, dict[str, Any]] | None:
        now = statuses(pulse_url)
        return now if all(now[i]["status"] != "pending" for i in ACCOUNTS) else None

    first = wait_for(settled, "the sensor-launched syncs and their statuses")
    assert first["acc-a"]["status"] == "active" and first["acc-b"]["status"] == "active"
    assert first["acc-denied"]["status"] == "error"
    assert "AccessDenied" in first["acc-denied"]["lastSyncError"]
    assert "ext-id-e2e" not in first["acc-denied"]["lastSyncError"]
    yesterday = TODAY - timedelta(days=1)
    assert (yesterday, simulated_aws.service_names()[0]) in amounts_by_service(
        pulse_url, "acc-a", yesterday, yesterday
    )

    # 2. A date-range backfill of two accounts, launched over GraphQL with the window as config.
    start, end = TODAY - timedelta(days=100), TODAY - timedelta(days=94)
    launched = graphql(
        dagster_dev,
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
                s := graphql(dagster_dev, BACKFILL_STATUS, {"id": backfill_id})[
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
    for account_id, aws_id in (("acc-a", "111111111111"), ("acc-b", "222222222222")):
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
        # One request per result page of PAGE_SIZE groups for the whole window, not one per day.
        groups = row_count(pulse_url, account_id, start, end)
        assert sum(1 for p in pages if p.cloud_account_id == account_id) == math.ceil(
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
        conn.execute(insert(cloud_account), [account_row(*SLOW)])
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
                    if pid is not None and simulated_aws.request_count("444444444444") > 0:
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
