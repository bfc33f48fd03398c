"""The checks of daily_costs_eur as the UI shows them after a backfill in which one account fails:
each partition's check status (a check's Partitions tab) and the check summary (the asset's
lineage badge), read through Dagster's GraphQL, the webserver's own schema, in this process.

A real asset backfill: launched with `launchPartitionBackfill` (the UI's Launch backfill and
the README's call), its runs created and launched by `dagster-daemon`, so they plan the checks
of the selected assets as every backfill run does. Dagster's storage is SQLite; PULSE's too.
"""

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from dagster_graphql.test.utils import define_out_of_process_context, execute_dagster_graphql
from sqlalchemy import insert, update

from pulse_pipeline.db.schema import cloud_account
from pulse_pipeline.db.urls import create_pulse_engine
from pulse_pipeline.defs.checks import SYNCED_RECENTLY
from pulse_pipeline.defs.keys import DAILY_COSTS
from pulse_pipeline.reconcile import CHECKS
from pulse_pipeline_dev import processes
from pulse_pipeline_dev.simulated_aws import SimulatedAws, SimulationSettings
from pulse_pipeline_tests.daemon import wait_for
from pulse_pipeline_tests.support import D1, D3, account_row, load_rates, run_sync

SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
DENIED = "arn:aws:iam::222222222222:role/PulseRead"
ALLOWED = "arn:aws:iam::444444444444:role/PulseRead"
ACCOUNTS = {
    "acc-1": "arn:aws:iam::111111111111:role/PulseRead",
    "acc-2": DENIED,
    "acc-3": "arn:aws:iam::333333333333:role/PulseRead",
}
CHECK_NAMES = sorted([*CHECKS, SYNCED_RECENTLY])
WINDOW = {"start_date": str(D1), "end_date": str(D3)}

INSTIGATORS = """
{ repositoriesOrError { ... on RepositoryConnection { nodes {
    sensors { name sensorState { id status } }
    schedules { name scheduleState { id status } } } } } }"""
STOP_SENSOR = """
mutation($id: String!) { stopSensor(id: $id) { __typename } }"""
STOP_SCHEDULE = """
mutation($id: String!) { stopRunningSchedule(id: $id) { __typename } }"""
LAUNCH_BACKFILL = """
mutation($params: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $params) {
    __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message } } }"""
BACKFILL_STATUS = """
query($id: String!) { partitionBackfillOrError(backfillId: $id) {
    ... on PartitionBackfill { status } } }"""
# What the asset's lineage node and Checks tab read (executionForLatestMaterialization) and what
# a check's Partitions tab reads (partitionStatuses).
ASSET_CHECKS = """
query($key: AssetKeyInput!) { assetNodeOrError(assetKey: $key) { ... on AssetNode {
    assetChecksOrError { ... on AssetChecks { checks {
        name
        executionForLatestMaterialization { status partition }
        partitionStatuses { ... on AssetCheckDefaultPartitionStatuses {
            succeededPartitions failedPartitions executionFailedPartitions
            skippedPartitions inProgressPartitions } } } } } } } }"""
HISTORY = """
query($key: AssetKeyInput!, $name: String!) {
    assetCheckExecutions(assetKey: $key, checkName: $name, limit: 20) { status partition } }"""


@pytest.fixture
def dagster_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The repository's local dagster.yaml (SQLite storage, the run queue) in a fresh home."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(processes.ROOT / "dagster.local.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return home


@pytest.fixture
def simulated_aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[SimulatedAws]:
    """AWS for the runs' processes: acc-2's role is denied."""
    with SimulatedAws(
        SimulationSettings(services_per_day=3, page_size=50, denied_role_arns=frozenset({DENIED}))
    ) as aws:
        for name, value in aws.environment().items():
            monkeypatch.setenv(name, value)
        yield aws


def _gql(context: Any, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    # The webserver serves each request inside its request context; so does this.
    with context:
        return dict(execute_dagster_graphql(context, query, variables).data)


def _stop_instigators(context: Any) -> None:
    """Nothing but the backfill runs: the sensors and schedules (running by default) stopped."""
    [repo] = _gql(context, INSTIGATORS)["repositoriesOrError"]["nodes"]
    for sensor in repo["sensors"]:
        _gql(context, STOP_SENSOR, {"id": sensor["sensorState"]["id"]})
    for schedule in repo["schedules"]:
        _gql(context, STOP_SCHEDULE, {"id": schedule["scheduleState"]["id"]})
    [repo] = _gql(context, INSTIGATORS)["repositoriesOrError"]["nodes"]
    states = [s["sensorState"]["status"] for s in repo["sensors"]]
    states += [s["scheduleState"]["status"] for s in repo["schedules"]]
    assert set(states) == {"STOPPED"}, repo


@SQLITE_ONLY
def test_a_backfill_with_one_failing_account_keeps_the_other_accounts_checks_green(
    pulse: str, dagster_home: Path, simulated_aws: SimulatedAws, tmp_path: Path
) -> None:
    key = {"path": DAILY_COSTS.path}
    with dg.DagsterInstance.get() as instance:
        load_rates(instance)
        # acc-2 synced once; then its role changed to one AWS denies, so the backfill fails it.
        engine = create_pulse_engine(pulse)
        with engine.begin() as conn:
            conn.execute(
                update(cloud_account).where(cloud_account.c.id == "acc-2").values(roleArn=ALLOWED)
            )
        assert run_sync(instance, "acc-2", D1, D3).success
        with engine.begin() as conn:
            conn.execute(insert(cloud_account), [account_row("acc-3", "org-3", ACCOUNTS["acc-3"])])
            conn.execute(
                update(cloud_account).where(cloud_account.c.id == "acc-2").values(roleArn=DENIED)
            )
        engine.dispose()
        instance.add_dynamic_partitions("cloud_accounts", list(ACCOUNTS))

        with define_out_of_process_context(str(processes.WORKSPACE), None, instance) as context:
            _stop_instigators(context)
            launched = _gql(
                context,
                LAUNCH_BACKFILL,
                {
                    "params": {
                        "partitionNames": list(ACCOUNTS),
                        "assetSelection": [{"path": ["cost_explorer_raw"]}, key],
                        "runConfigData": {"ops": {"sync_cloud_accounts": {"config": WINDOW}}},
                    }
                },
            )["launchPartitionBackfill"]
            assert launched["__typename"] == "LaunchBackfillSuccess", launched
            backfill = {"id": launched["backfillId"]}
            with processes.daemon(dict(os.environ), tmp_path / "daemon.log"):
                wait_for(
                    lambda: (
                        _gql(context, BACKFILL_STATUS, backfill)["partitionBackfillOrError"][
                            "status"
                        ]
                        != "REQUESTED"
                    ),
                    "the backfill",
                    timeout=300,
                )
            [run] = instance.get_runs(dg.RunsFilter(tags={"dagster/backfill": backfill["id"]}))
            checks = _gql(context, ASSET_CHECKS, {"key": key})["assetNodeOrError"][
                "assetChecksOrError"
            ]["checks"]
            history = {
                name: _gql(context, HISTORY, {"key": key, "name": name})["assetCheckExecutions"]
                for name in CHECK_NAMES
            }

    # One run for the three accounts; it planned the five checks, and it failed (acc-2).
    assert run.status == dg.DagsterRunStatus.FAILURE
    assert {k.name for k in run.asset_check_selection or ()} == set(CHECK_NAMES)
    assert sorted(check["name"] for check in checks) == CHECK_NAMES
    for check in checks:
        # The badge: the check passed on the latest materialization it shows.
        assert check["executionForLatestMaterialization"]["status"] == "SUCCEEDED", check
        # The Partitions tab: every account passed, acc-2 on the rows its failed sync left.
        assert check["partitionStatuses"] == {
            "succeededPartitions": list(ACCOUNTS),
            "failedPartitions": [],
            "executionFailedPartitions": [],
            "skippedPartitions": [],
            "inProgressPartitions": [],
        }, check
        # The execution history agrees: the backfill's result for each account, after acc-2's
        # first sync.
        assert sorted((e["partition"], e["status"]) for e in history[check["name"]]) == sorted(
            [*((account, "SUCCEEDED") for account in ACCOUNTS), ("acc-2", "SUCCEEDED")]
        )
