"""The production topology end to end on loopback: `dagster code-server start` serves the code
location in its own process, `dagster-webserver` and `dagster-daemon run` reach it through
`workspace.prod.yaml`, Dagster's storage is the production `dagster.yaml` on PostgreSQL, PULSE is
on PostgreSQL and AWS is simulated. A sync launched over GraphQL and a date-range backfill both
run, write their CostRecords and get their statuses written; a `--read-only` webserver shows the
runs and refuses to launch one.

Only the code server has DATABASE_URL, the AWS endpoints and the PULSE settings: the webserver
and the daemon get Dagster's storage and the code server's address, nothing else, so a run that
succeeds ran in the code location's environment.
"""

import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import psycopg
import pytest
from sqlalchemy import insert
from sqlalchemy.engine import make_url

from pulse_pipeline.db.migrate import upgrade
from pulse_pipeline.db.schema import cloud_account
from pulse_pipeline.db.urls import create_pulse_engine
from pulse_pipeline.defs.definitions import defs
from pulse_pipeline.defs.partitions import CLOUD_ACCOUNTS, accounts_in_run
from pulse_pipeline_dev.processes import (
    LOCATION,
    PROD_WORKSPACE,
    ROOT,
    code_server,
    daemon,
    free_port,
    graphql,
    webserver,
)
from pulse_pipeline_dev.simulated_aws import SimulatedAws, SimulationSettings
from pulse_pipeline_tests.ce_results import ecb_history_csv
from pulse_pipeline_tests.databases import fresh_postgres_database
from pulse_pipeline_tests.support import amounts_by_service
from pulse_pipeline_tests.test_webserver_and_daemon import (
    BACKFILL_STATUS,
    LAUNCH_BACKFILL,
    TODAY,
    account_row,
    statuses,
    wait_for,
)

ACCOUNTS = {"acc-a": "111111111111", "acc-b": "222222222222"}
DAGSTER_PG = ("DAGSTER_PG_HOST", "DAGSTER_PG_PORT", "DAGSTER_PG_USER", "DAGSTER_PG_PASSWORD")
# Variables that belong to the code location alone (and to whatever test process runs this).
CODE_LOCATION_ONLY = ("AWS_", "PULSE_", "DATABASE_URL")

LAUNCH_RUN = """
mutation Launch($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on Error { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}"""
RUN_STATUS = """
query Run($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }"""


def window_config(start: Any, end: Any) -> dict[str, Any]:
    return {
        "ops": {
            "sync_cloud_accounts": {
                "config": {"start_date": start.isoformat(), "end_date": end.isoformat()}
            }
        }
    }


@pytest.fixture
def pulse_url(postgres_database: str) -> str:
    schema = f"prod_{os.urandom(4).hex()}"
    with psycopg.connect(postgres_database, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    url = f"{postgres_database}?schema={schema}"
    upgrade(url)
    engine = create_pulse_engine(url)
    with engine.begin() as conn:
        conn.execute(
            insert(cloud_account),
            [
                account_row(
                    i, "org-e2e", f"arn:aws:iam::{aws}:role/PulseRead", external_id="ext-id-e2e"
                )
                for i, aws in ACCOUNTS.items()
            ],
        )
    engine.dispose()
    return url


@pytest.fixture
def dagster_storage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """The repository's production dagster.yaml in a DAGSTER_HOME, its DAGSTER_PG_* variables
    pointing at a fresh PostgreSQL database; those variables (set here too, for the test's own
    look at the instance)."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text((ROOT / "dagster.yaml").read_text())
    with fresh_postgres_database("pulse_prod_dagster") as url:
        parts = make_url(url)
        storage = {
            "DAGSTER_HOME": str(home),
            "DAGSTER_PG_HOST": parts.host or "127.0.0.1",
            "DAGSTER_PG_PORT": str(parts.port or 5432),
            "DAGSTER_PG_USER": parts.username or "postgres",
            "DAGSTER_PG_PASSWORD": "unused-with-trust-auth",
            "DAGSTER_PG_DB": parts.database or "",
        }
        for name, value in storage.items():
            monkeypatch.setenv(name, value)
        yield storage


@pytest.fixture
def simulated_aws() -> Iterator[SimulatedAws]:
    with SimulatedAws(SimulationSettings(services_per_day=4, page_size=10)) as aws:
        yield aws


@dataclass(frozen=True)
class Topology:
    url: str  # the webserver's
    dagster_environment: dict[str, str]  # the webserver's and the daemon's


@pytest.fixture
def topology(
    pulse_url: str,
    dagster_storage: dict[str, str],
    simulated_aws: SimulatedAws,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Topology]:
    """Code server, daemon and webserver, each its own process group. The accounts already have their partitions and the ECB rates are loaded, as the
    new_cloud_accounts sensor leaves a deployment that has run for a while."""
    history = tmp_path / "eurofxref-hist.csv"
    history.write_text(
        ecb_history_csv(
            {
                TODAY - timedelta(days=n): {"USD": "1.1000"}
                for n in range(1, 420)
                if (TODAY - timedelta(days=n)).weekday() < 5
            }
        )
    )
    system = {k: v for k, v in os.environ.items() if not k.startswith(CODE_LOCATION_ONLY)}
    code_location = {
        **system,
        **simulated_aws.environment(),
        "DATABASE_URL": pulse_url,
        "PULSE_ECB_HISTORY_URL": str(history),
    }
    monkeypatch.setenv("DATABASE_URL", pulse_url)
    monkeypatch.setenv("PULSE_ECB_HISTORY_URL", str(history))
    with dg.DagsterInstance.get() as instance:
        instance.add_dynamic_partitions(CLOUD_ACCOUNTS, list(ACCOUNTS))
        refresh = defs().resolve_job_def("refresh_ecb_rates")
        assert refresh.execute_in_process(instance=instance).success

    port = free_port()
    dagster = {**system, "PULSE_CODE_SERVER_HOST": "127.0.0.1", "PULSE_CODE_SERVER_PORT": str(port)}
    with (
        code_server(code_location, tmp_path / "code-server.log", port),
        daemon(dagster, tmp_path / "daemon.log", PROD_WORKSPACE),
        webserver(dagster, tmp_path / "webserver.log", PROD_WORKSPACE) as url,
    ):
        yield Topology(url, dagster)


def run_status(url: str, run_id: str) -> str | None:
    status = graphql(url, RUN_STATUS, {"id": run_id})["runOrError"].get("status")
    return str(status) if status in ("SUCCESS", "FAILURE", "CANCELED") else None


def expected(aws: SimulatedAws, aws_account: str, start: Any, days: int) -> dict[Any, Any]:
    return {
        (start + timedelta(days=n), service): aws.expected_cost(
            aws_account, start + timedelta(days=n), service
        )
        for n in range(days)
        for service in aws.service_names()
    }


def listening_addresses(port: int) -> set[str]:
    """The local addresses of sockets listening on `port` (Linux /proc/net/tcp and tcp6)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if int(hex_port, 16) == port and state == "0A":  # 0A: LISTEN
                found.add(address)
    return found


def test_code_server_webserver_and_daemon_run_a_sync_and_a_backfill(
    topology: Topology, pulse_url: str, simulated_aws: SimulatedAws, tmp_path: Path
) -> None:
    url = topology.url
    # The webserver listens on loopback only (127.0.0.1 is 0100007F in /proc/net/tcp).
    assert listening_addresses(int(url.rsplit(":", 1)[1])) == {"0100007F"}

    # 1. One account's sync over a chosen window, launched as the UI's Launchpad does.
    start, end = TODAY - timedelta(days=40), TODAY - timedelta(days=35)
    selector = {
        "repositoryLocationName": LOCATION,
        "repositoryName": "__repository__",
        "jobName": "sync_aws_costs",
    }
    launched = graphql(
        url,
        LAUNCH_RUN,
        {
            "params": {
                "selector": selector,
                "runConfigData": window_config(start, end),
                "executionMetadata": {"tags": [{"key": "dagster/partition", "value": "acc-a"}]},
            }
        },
    )["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]
    assert wait_for(lambda: run_status(url, run_id), "the sync run") == "SUCCESS"
    assert amounts_by_service(pulse_url, "acc-a", start - timedelta(days=30), TODAY) == expected(
        simulated_aws, ACCOUNTS["acc-a"], start, 6
    )
    # The status sensor, evaluated by the code server, writes the outcome.
    wait_for(lambda: statuses(pulse_url)["acc-a"]["status"] == "active", "acc-a's status")

    # 2. A date-range backfill of both accounts, one run for the two (the sync's backfill policy).
    start, end = TODAY - timedelta(days=100), TODAY - timedelta(days=94)
    backfill = graphql(
        url,
        LAUNCH_BACKFILL,
        {
            "params": {
                "partitionNames": list(ACCOUNTS),
                "assetSelection": [{"path": ["cost_explorer_raw"]}, {"path": ["daily_costs_eur"]}],
                "runConfigData": window_config(start, end),
            }
        },
    )["launchPartitionBackfill"]
    assert backfill["__typename"] == "LaunchBackfillSuccess", backfill
    backfill_id = backfill["backfillId"]

    def backfill_done() -> str | None:
        status = graphql(url, BACKFILL_STATUS, {"id": backfill_id})["partitionBackfillOrError"][
            "status"
        ]
        return None if status == "REQUESTED" else str(status)

    assert wait_for(backfill_done, "the backfill") in ("COMPLETED", "COMPLETED_SUCCESS")
    with dg.DagsterInstance.get() as instance:
        runs = instance.get_runs(dg.RunsFilter(tags={"dagster/backfill": backfill_id}))
        assert [accounts_in_run(instance, dict(run.tags)) for run in runs] == [list(ACCOUNTS)]
        assert [run.status for run in runs] == [dg.DagsterRunStatus.SUCCESS]
    for account_id, aws_account in ACCOUNTS.items():
        assert amounts_by_service(pulse_url, account_id, start, end) == expected(
            simulated_aws, aws_account, start, 7
        )
    wait_for(lambda: statuses(pulse_url)["acc-b"]["status"] == "active", "acc-b's status")

    # 3. A --read-only webserver on the same instance shows the runs and launches nothing.
    with webserver(
        topology.dagster_environment, tmp_path / "read-only.log", PROD_WORKSPACE, read_only=True
    ) as viewer:
        assert run_status(viewer, run_id) == "SUCCESS"
        refused = graphql(
            viewer,
            LAUNCH_RUN,
            {
                "params": {
                    "selector": selector,
                    "runConfigData": window_config(start, end),
                    "executionMetadata": {"tags": [{"key": "dagster/partition", "value": "acc-a"}]},
                }
            },
        )["launchRun"]
        assert refused["__typename"] == "UnauthorizedError", refused
