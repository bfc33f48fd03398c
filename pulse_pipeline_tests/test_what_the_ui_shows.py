"""What the data team reads in the Dagster UI tells the truth: checks once per account and run,
the failed account's cause on its partition, row counts, no window silently ignored, no
partition of an account that never existed. Through real runs and sensor ticks."""

from decimal import Decimal
from typing import Any

import dagster as dg
import pytest

from pulse_pipeline.db.schema import cloud_account, cost_record
from pulse_pipeline.db.urls import create_pulse_engine
from pulse_pipeline.defs.checks import SYNCED_RECENTLY
from pulse_pipeline.defs.definitions import defs
from pulse_pipeline.defs.keys import DAILY_COSTS, RAW_PAGES
from pulse_pipeline.defs.partitions import RANGE_END_TAG, RANGE_START_TAG
from pulse_pipeline.reconcile import CHECKS
from pulse_pipeline_tests.ce_results import ce_page, queue_results
from pulse_pipeline_tests.support import (
    D1,
    D2,
    D3,
    EC2,
    EXPECTED_ACC1,
    TWO_PAGES,
    account_row,
    account_status,
    load_rates,
    materialization,
    run_sync,
    set_account,
    stored_rows,
    write_status,
)
from pulse_pipeline_tests.test_orchestration import change_accounts, tick_new_accounts

POSTGRES_ONLY = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
WINDOW = {"ops": {"sync_cloud_accounts": {"config": {"start_date": str(D1), "end_date": str(D3)}}}}


def _events(instance: dg.DagsterInstance, run_id: str, kind: dg.DagsterEventType) -> list[Any]:
    return [e.dagster_event for e in instance.all_logs(run_id, of_type=kind) if e.dagster_event]


def _messages(instance: dg.DagsterInstance, run_id: str) -> str:
    return "\n".join(entry.message for entry in instance.all_logs(run_id))


@POSTGRES_ONLY
def test_each_check_is_evaluated_once_per_account_and_never_for_an_account_that_failed(
    pulse: str, dagster_instance: dg.DagsterInstance, moto_aws: None
) -> None:
    load_rates(dagster_instance)
    queue_results("111111111111", TWO_PAGES)
    set_account(pulse, "acc-2", roleArn="arn:aws:iam::2222:role/oops")
    dagster_instance.add_dynamic_partitions("cloud_accounts", ["acc-1", "acc-2"])

    batch = (
        defs()
        .resolve_job_def("sync_aws_costs")
        .execute_in_process(
            instance=dagster_instance,
            tags={RANGE_START_TAG: "acc-1", RANGE_END_TAG: "acc-2"},
            run_config=WINDOW,
            raise_on_error=False,
        )
    )

    assert not batch.success
    evaluations = _events(
        dagster_instance, batch.run_id, dg.DagsterEventType.ASSET_CHECK_EVALUATION
    )
    assert sorted(
        (e.asset_check_evaluation_data.partition, e.asset_check_evaluation_data.check_name)
        for e in evaluations
    ) == sorted(("acc-1", name) for name in [*CHECKS, SYNCED_RECENTLY])
    assert all(e.asset_check_evaluation_data.passed for e in evaluations)
    # One record per check for acc-1; none for acc-2, whose checks never ran (a planned check
    # of a failed run would show as failed in the UI), and none standing for the whole run.
    for name in CHECKS:
        history = dagster_instance.event_log_storage.get_asset_check_execution_history(
            dg.AssetCheckKey(DAILY_COSTS, name), limit=10
        )
        assert [(r.partition, r.status.value) for r in history] == [("acc-1", "SUCCEEDED")], name
    assert "did not yield or return expected outputs" not in _messages(
        dagster_instance, batch.run_id
    )

    # The failed account's cause is on its own partition, not only in the run's log.
    observed = _events(dagster_instance, batch.run_id, dg.DagsterEventType.ASSET_OBSERVATION)
    [observation] = [e.asset_observation_data.asset_observation for e in observed]
    assert (observation.asset_key, observation.partition) == (DAILY_COSTS, "acc-2")
    cause = observation.metadata["sync_error"].value
    assert cause.startswith("CloudAccount acc-2 (org-2 production)") and "ARN" in cause

    # lastSyncError, and the status run's log line, name the account once.
    status = write_status(dagster_instance, [batch.run_id])
    assert status.success
    error = account_status(pulse, "acc-2")["lastSyncError"]
    assert error == cause and error.count("CloudAccount acc-2") == 1
    [logged] = [
        line for line in _messages(dagster_instance, status.run_id).splitlines() if "acc-2" in line
    ]
    assert logged.count("CloudAccount acc-2") == 1


@POSTGRES_ONLY
def test_row_counts_are_the_accounts_and_the_tables_and_the_tables_have_column_schemas(
    pulse: str, dagster_instance: dg.DagsterInstance, moto_aws: None
) -> None:
    load_rates(dagster_instance)
    queue_results("111111111111", TWO_PAGES)
    assert run_sync(dagster_instance, "acc-1", D1, D3).success
    queue_results("222222222222", [ce_page({D1: {EC2: ("3", "GBP")}})])
    assert run_sync(dagster_instance, "acc-2", D1, D1).success
    queue_results("111111111111", [ce_page({D2: {EC2: ("10", "USD")}})])

    narrow = run_sync(dagster_instance, "acc-1", D2, D2)

    assert narrow.success
    metadata = materialization(narrow, "daily_costs_eur").metadata
    acc1_rows = len(stored_rows(pulse, "acc-1"))
    assert acc1_rows == len(EXPECTED_ACC1) - 1  # D2's S3 row vanished upstream
    assert metadata["dagster/row_count"].value == acc1_rows
    assert metadata["rows_in_window"].value == 1
    assert metadata["table_rows"].value == acc1_rows + 1
    graph = defs().resolve_asset_graph()
    for key, column in ((DAILY_COSTS, "amountEUR"), (RAW_PAGES, "response")):
        spec = graph.get(key)
        schema = spec.metadata["dagster/column_schema"]
        assert column in [c.name for c in schema.columns]
        assert spec.owners == ["team:pulse-data"] and spec.tags["domain"] == "finops"


@POSTGRES_ONLY
def test_a_window_given_to_daily_costs_eur_alone_fails_at_once_saying_how_to_fetch_it(
    pulse: str, dagster_instance: dg.DagsterInstance, moto_aws: None
) -> None:
    load_rates(dagster_instance)
    queue_results("111111111111", TWO_PAGES)
    assert run_sync(dagster_instance, "acc-1", D1, D3).success
    asset_job = defs().resolve_implicit_global_asset_job_def()

    def convert_only(config: dict[str, Any]) -> dg.ExecuteInProcessResult:
        return asset_job.execute_in_process(
            instance=dagster_instance,
            partition_key="acc-1",
            asset_selection=[DAILY_COSTS],
            run_config=config,
            raise_on_error=False,
        )

    windowed = convert_only(WINDOW)

    assert not windowed.success
    data = windowed.get_step_failure_events()[0].step_failure_data.user_failure_data
    assert data is not None
    assert "only daily_costs_eur is selected" in data.description
    assert "select cost_explorer_raw too" in data.description
    assert not windowed.get_asset_materialization_events()
    assert stored_rows(pulse, "acc-1") == EXPECTED_ACC1
    # The account was not touched: PULSE's status of it stays as it was.
    before = account_status(pulse, "acc-1")
    assert write_status(dagster_instance, [windowed.run_id]).success
    assert account_status(pulse, "acc-1") == before
    # Without a window it re-converts the stored pages, as documented.
    assert convert_only({}).success


def test_the_sensor_removes_partitions_of_accounts_that_never_existed(
    pulse: str, dagster_instance: dg.DagsterInstance, moto_aws: None
) -> None:
    load_rates(dagster_instance)
    first = tick_new_accounts(dagster_instance)
    assert dagster_instance.get_dynamic_partitions("cloud_accounts") == ["acc-1", "acc-2"]
    queue_results("222222222222", [ce_page({D1: {EC2: ("3", "GBP")}})])
    assert run_sync(dagster_instance, "acc-2", D1, D1).success
    # "Add a partition" in the launch dialog, and a sync launched for it.
    dagster_instance.add_dynamic_partitions("cloud_accounts", ["acc-typo"])
    assert not run_sync(dagster_instance, "acc-typo", D1, D1).success
    engine = create_pulse_engine(pulse)
    with engine.begin() as conn:  # acc-2 deleted in PULSE: its history stays
        conn.execute(cloud_account.delete().where(cloud_account.c.id == "acc-2"))
    engine.dispose()

    tick = tick_new_accounts(dagster_instance, first.cursor)

    assert dagster_instance.get_dynamic_partitions("cloud_accounts") == ["acc-1", "acc-2"]
    assert "removed 1 partitions without a CloudAccount and without materializations: acc-typo" in (
        tick.skip_message
    )
    assert "kept as history: acc-2" in tick.skip_message
    quiet = tick_new_accounts(dagster_instance, tick.cursor)
    assert "removed" not in quiet.skip_message

    # Should PULSE later create an account with that id, it is new like any other.
    change_accounts(pulse, [account_row("acc-typo", "org-1", "arn:aws:iam::333333333333:role/R")])
    later = tick_new_accounts(dagster_instance, quiet.cursor)
    assert [r.partition_key for r in later.run_requests] == ["acc-typo"]


@POSTGRES_ONLY
def test_the_checks_executed_on_their_own_recheck_the_stored_rows_without_aws(
    pulse: str, dagster_instance: dg.DagsterInstance, moto_aws: None
) -> None:
    load_rates(dagster_instance)
    queue_results("111111111111", TWO_PAGES)
    assert run_sync(dagster_instance, "acc-1", D1, D3).success
    # What the UI's "Execute all" on the checks of a partition launches.
    verify_job = dg.define_asset_job(
        "verify", selection=dg.AssetSelection.checks_for_assets(DAILY_COSTS)
    )
    job = dg.Definitions.merge(defs(), dg.Definitions(jobs=[verify_job])).resolve_job_def("verify")

    def recheck() -> dg.ExecuteInProcessResult:
        return job.execute_in_process(
            instance=dagster_instance, tags={"dagster/partition": "acc-1"}, raise_on_error=False
        )

    clean = recheck()
    assert clean.success
    assert sorted(
        (e.partition, e.check_name, e.passed) for e in clean.get_asset_check_evaluations()
    ) == sorted(("acc-1", name, True) for name in [*CHECKS, SYNCED_RECENTLY])
    assert "did not yield" not in _messages(dagster_instance, clean.run_id)

    # Someone edits a stored amount by hand: the re-check says so.
    engine = create_pulse_engine(pulse)
    with engine.begin() as conn:
        conn.execute(
            cost_record.update()
            .where(cost_record.c.cloudAccountId == "acc-1", cost_record.c.date == D2)
            .values(amountEUR=Decimal("999"))
        )
    engine.dispose()
    tampered = recheck()
    failed = {e.check_name for e in tampered.get_asset_check_evaluations() if not e.passed}
    assert "eur_matches_raw" in failed
