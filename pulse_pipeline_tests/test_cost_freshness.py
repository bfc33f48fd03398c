"""The synced_recently check of daily_costs_eur, per account partition, on SQLite and PostgreSQL:
passed by a sync, failed by the cost_freshness sensor for an account not synced within the limit."""

from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg
import pytest

from pulse_pipeline.defs.definitions import defs
from pulse_pipeline.defs.sensors import cost_freshness
from pulse_pipeline_tests.ce_results import ce_page, queue_results
from pulse_pipeline_tests.support import D1, EC2, load_rates, run_sync, set_account

CHECK = dg.AssetCheckKey(dg.AssetKey("daily_costs_eur"), "synced_recently")


def tick(instance: dg.DagsterInstance, cursor: str | None) -> tuple[Any, dict[str | None, bool]]:
    """One cost_freshness tick, and the run it requests executed as the daemon would launch it:
    the sensor's result, and the synced_recently verdict per partition the run reported."""
    loaded = defs()  # the code location's resources, from the environment
    with dg.build_sensor_context(
        instance=instance,
        instance_ref=instance.get_ref(),
        cursor=cursor,
        resources=dict(loaded.resources or {}),
        definitions=loaded,
    ) as context:
        result = cost_freshness.evaluate_tick(context)
    verdicts: dict[str | None, bool] = {}
    for request in result.run_requests or []:
        run = loaded.resolve_job_def(request.job_name or "report_cost_freshness")
        executed = run.execute_in_process(
            instance=instance, run_config=request.run_config, tags=request.tags
        )
        verdicts |= {e.partition: e.passed for e in executed.get_asset_check_evaluations()}
    return result, verdicts


def stored_checks(instance: dg.DagsterInstance) -> list[dg.AssetCheckEvaluation]:
    """Every synced_recently result Dagster stored, oldest first."""
    records = instance.get_event_records(
        dg.EventRecordsFilter(event_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION),
        ascending=True,
    )
    evaluations = [record.event_log_entry.get_dagster_event() for record in records]
    return [
        event.asset_check_evaluation_data
        for event in evaluations
        if event.asset_check_evaluation_data.asset_check_key == CHECK
    ]


def hours_ago(hours: float) -> datetime:
    return (datetime.now(UTC) - timedelta(hours=hours)).replace(tzinfo=None)


def test_an_account_not_synced_within_the_limit_fails_its_partition_and_a_fresh_one_passes(
    pulse: str, dagster_instance: dg.DagsterInstance, moto_aws: None
) -> None:
    load_rates(dagster_instance)
    queue_results("111111111111", [ce_page({D1: {EC2: ("10", "USD")}})])
    synced = run_sync(dagster_instance, "acc-1", D1, D1)
    assert synced.success
    assert [
        (event.partition, event.passed)
        for event in synced.get_asset_check_evaluations()
        if event.check_name == "synced_recently"
    ] == [("acc-1", True)]
    dagster_instance.add_dynamic_partitions("cloud_accounts", ["acc-2"])
    set_account(pulse, "acc-1", status="active", lastSyncedAt=hours_ago(1))
    set_account(pulse, "acc-2", status="error", lastSyncedAt=hours_ago(31))

    first, reported = tick(dagster_instance, None)
    assert reported == {"acc-2": False}  # fresh acc-1 keeps the sync's pass
    assert tick(dagster_instance, first.cursor)[1] == {}  # no news, no run

    set_account(pulse, "acc-2", status="active", lastSyncedAt=hours_ago(0.1))
    assert tick(dagster_instance, first.cursor)[1] == {"acc-2": True}
    stored = stored_checks(dagster_instance)
    assert [(e.partition, e.passed) for e in stored] == [
        ("acc-1", True),
        ("acc-2", False),
        ("acc-2", True),
    ]
    stale = stored[1]
    assert stale.metadata["limit_hours"].value == 30
    assert "last synced successfully 31.0 hours ago (limit 30 hours)" in str(
        stale.metadata["summary"].value
    )


def test_the_limit_is_a_setting_and_a_never_synced_account_counts_from_its_connection(
    pulse: str, dagster_instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PULSE_COST_FRESHNESS_HOURS", "48")
    dagster_instance.add_dynamic_partitions("cloud_accounts", ["acc-1", "acc-2"])
    set_account(pulse, "acc-1", lastSyncedAt=hours_ago(31))
    set_account(pulse, "acc-2", createdAt=hours_ago(49))  # connected, never synced

    result, reported = tick(dagster_instance, None)

    assert reported == {"acc-2": False}
    assert [request.tags["pulse/accounts"] for request in result.run_requests] == ["1"]
    (event,) = stored_checks(dagster_instance)
    assert "never synced successfully since it was connected 49.0 hours ago" in str(
        event.metadata["summary"].value
    )
