"""The pipeline running itself: the new-account sensor, the 05:00 UTC schedule and the status sensor,
each evaluated against a real Dagster instance (SQLite, and PostgreSQL for both databases)."""

import random
import string
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg
import pytest
from sqlalchemy import insert, update

from pulse_pipeline.accounts import MAX_PARTITION_KEY_BYTES
from pulse_pipeline.db.schema import cloud_account
from pulse_pipeline.db.urls import create_pulse_engine
from pulse_pipeline.defs.definitions import defs
from pulse_pipeline.defs.partitions import (
    COST_EXPLORER_POOL,
    accounts_in_run,
    cost_explorer_lanes,
    run_sizes,
)
from pulse_pipeline.defs.resources import PulseDatabase
from pulse_pipeline_tests.ce_results import ce_page, queue_results
from pulse_pipeline_tests.support import (
    D1,
    EC2,
    EXPECTED_ACC1,
    TWO_PAGES,
    account_row,
    account_status,
    load_rates,
    stored_rows,
)

SENSOR = defs().resolve_sensor_def("new_cloud_accounts")
STATUS_SENSOR = defs().resolve_sensor_def("sync_status_writer")
SCHEDULE = defs().resolve_schedule_def("daily_aws_cost_sync")


def change_accounts(
    database_url: str, rows: list[dict[str, Any]] = (), **updates: dict[str, Any]
) -> None:  # type: ignore[assignment]
    engine = create_pulse_engine(database_url)
    with engine.begin() as conn:
        if rows:
            conn.execute(insert(cloud_account), rows)
        for account_id, values in updates.items():
            conn.execute(
                update(cloud_account).where(cloud_account.c.id == account_id).values(**values)
            )
    engine.dispose()


def tick_new_accounts(instance: dg.DagsterInstance, cursor: str | None = None) -> Any:
    """One sensor tick, and what the daemon does with its result: partitions are added or
    deleted."""
    with dg.build_sensor_context(
        instance=instance,
        instance_ref=instance.get_ref(),
        cursor=cursor,
        resources={"pulse_db": PulseDatabase(url=dg.EnvVar("DATABASE_URL"))},
        definitions=defs(),
    ) as context:
        result = SENSOR.evaluate_tick(context)
    for request in result.dynamic_partitions_requests or []:
        if isinstance(request, dg.DeleteDynamicPartitionsRequest):
            for key in request.partition_keys:
                instance.delete_dynamic_partition(request.partitions_def_name, key)
        else:
            instance.add_dynamic_partitions(
                request.partitions_def_name, list(request.partition_keys)
            )
    return result


def set_lanes(instance: dg.DagsterInstance, lanes: int) -> None:
    """The cost_explorer pool's limit, as `dagster instance concurrency set` or the UI sets it."""
    instance.event_log_storage.set_concurrency_slots(COST_EXPLORER_POOL, lanes)


def covered(instance: dg.DagsterInstance, request: dg.RunRequest) -> list[str]:
    """The accounts a run request syncs: its partition, or its partition range."""
    if request.partition_key:
        return [request.partition_key]
    return accounts_in_run(instance, dict(request.tags))


def execute(
    instance: dg.DagsterInstance,
    request: dg.RunRequest,
    job_name: str = "sync_aws_costs",
    run_key: str | None = None,
) -> dg.ExecuteInProcessResult:
    """Run a sensor's or schedule's run request as the daemon would launch it (the daemon also
    stores its run key as a run tag)."""
    job = defs().resolve_job_def(request.job_name or job_name)
    return job.execute_in_process(
        instance=instance,
        partition_key=request.partition_key,
        run_config=request.run_config or None,
        tags={**request.tags, **({"dagster/run_key": run_key} if run_key else {})},
        raise_on_error=False,
    )


def tick_schedule(instance: dg.DagsterInstance, when: datetime) -> Any:
    """One tick of the daily sync schedule at `when`."""
    with dg.build_schedule_context(
        instance=instance,
        scheduled_execution_time=when,
        resources={"pulse_db": PulseDatabase(url=dg.EnvVar("DATABASE_URL"))},
        repository_def=defs().get_repository_def(),
    ) as context:
        return SCHEDULE.evaluate_tick(context)


def test_schedule_is_daily_at_five_utc() -> None:
    assert SCHEDULE.cron_schedule == "0 5 * * *"
    assert SCHEDULE.execution_timezone == "UTC"
    assert SCHEDULE.job_name == "sync_aws_costs"


def test_sensor_adds_new_accounts_once_and_skips_disconnected_ones(
    pulse: str, dagster_instance: dg.DagsterInstance
) -> None:
    """On a fresh deployment the ECB rates come first; then each new account exactly once."""
    set_lanes(dagster_instance, 1)  # one lane: a tick's new accounts share one run
    change_accounts(
        pulse,
        [
            {
                **account_row("acc-gone", "org-1", "arn:aws:iam::333333333333:role/R"),
                "status": "disconnected",
            },
            {**account_row("acc-gcp", "org-1", None), "provider": "GCP", "status": "pending"},
        ],
    )

    waiting = tick_new_accounts(dagster_instance)
    assert [(r.job_name, r.partition_key) for r in waiting.run_requests] == [
        ("refresh_ecb_rates", None)
    ]
    assert dagster_instance.get_dynamic_partitions("cloud_accounts") == []
    load_rates(dagster_instance)

    first = tick_new_accounts(dagster_instance, waiting.cursor)

    # Both new accounts in one batch run over their partition range (one lane).
    assert [covered(dagster_instance, r) for r in first.run_requests] == [["acc-1", "acc-2"]]
    assert [r.run_key for r in first.run_requests] == ["initial-sync:acc-1..acc-2"]
    assert dagster_instance.get_dynamic_partitions("cloud_accounts") == ["acc-1", "acc-2"]

    second = tick_new_accounts(dagster_instance, first.cursor)
    assert not second.run_requests
    assert "no new account: 2 connected" in second.skip_message

    change_accounts(pulse, **{"acc-2": {"status": "disconnected"}})
    change_accounts(pulse, [account_row("acc-3", "org-3", "arn:aws:iam::444444444444:role/R")])
    third = tick_new_accounts(dagster_instance, second.cursor)
    assert [r.partition_key for r in third.run_requests] == ["acc-3"]
    assert [r.run_key for r in third.run_requests] == ["initial-sync:acc-3"]
    fourth = tick_new_accounts(dagster_instance, third.cursor)
    assert "kept as history: acc-2" in fourth.skip_message
    assert "acc-2" in dagster_instance.get_dynamic_partitions("cloud_accounts")


def test_schedule_batches_consecutive_syncable_accounts_with_a_daily_run_key(
    pulse: str, dagster_instance: dg.DagsterInstance
) -> None:
    set_lanes(dagster_instance, 2)
    when = datetime(2026, 11, 24, 5, 0, tzinfo=UTC)

    def tick() -> Any:
        with dg.build_schedule_context(
            instance=dagster_instance,
            scheduled_execution_time=when,
            resources={"pulse_db": PulseDatabase(url=dg.EnvVar("DATABASE_URL"))},
            repository_def=defs().get_repository_def(),
        ) as context:
            return SCHEDULE.evaluate_tick(context)

    nothing = tick()
    assert not nothing.run_requests
    assert "2 waiting for the new_cloud_accounts sensor" in nothing.skip_message

    change_accounts(
        pulse,
        [
            account_row(f"acc-{n}", f"org-{n}", f"arn:aws:iam::{n}{n}{n}{n}00000000:role/R")
            for n in (3, 4, 5, 6)
        ],
    )
    accounts = ["acc-1", "acc-2", "acc-3", "acc-4", "acc-5", "acc-6"]
    dagster_instance.add_dynamic_partitions("cloud_accounts", accounts)
    assert [covered(dagster_instance, r) for r in tick().run_requests] == [
        ["acc-1", "acc-2", "acc-3"],
        ["acc-4", "acc-5", "acc-6"],
    ]  # two lanes: two runs of equal size

    change_accounts(pulse, **{"acc-2": {"status": "disconnected"}})
    result = tick()

    # acc-2 is not due, so it splits the first lane's share (3 of the 5) into two runs.
    assert [covered(dagster_instance, r) for r in result.run_requests] == [
        ["acc-1"],
        ["acc-3", "acc-4"],
        ["acc-5", "acc-6"],
    ]
    assert [r.run_key for r in result.run_requests] == [
        "daily:2026-11-24:acc-1",
        "daily:2026-11-24:acc-3..acc-4",
        "daily:2026-11-24:acc-5..acc-6",
    ]
    assert all(not r.run_config for r in result.run_requests)  # the default trailing window


def test_new_accounts_are_synced_and_their_status_written_without_anyone_launching_anything(
    pulse: str, dagster_instance: dg.DagsterInstance, moto_aws: None
) -> None:
    set_lanes(dagster_instance, 1)
    load_rates(dagster_instance)
    queue_results("111111111111", TWO_PAGES)
    change_accounts(pulse, **{"acc-2": {"roleArn": "arn:aws:iam::222222222222:user/not-a-role"}})

    tick = tick_new_accounts(dagster_instance)
    (batch,) = tick.run_requests
    assert covered(dagster_instance, batch) == ["acc-1", "acc-2"]
    run = execute(dagster_instance, batch)
    # acc-2's failure fails the run but not acc-1, which is synced and materialized.
    assert not run.success
    assert {
        (m.asset_key.path[-1], m.partition)
        for m in (
            e.step_materialization_data.materialization
            for e in run.get_asset_materialization_events()
        )
    } == {("cost_explorer_raw", "acc-1"), ("daily_costs_eur", "acc-1")}
    runs = {"batch": run}

    status_tick = STATUS_SENSOR.evaluate_tick(
        dg.build_sensor_context(instance=dagster_instance, definitions=defs())
    )
    assert len(status_tick.run_requests) == 1
    status_request = status_tick.run_requests[0]
    assert sorted(
        status_request.run_config["ops"]["write_cloud_account_status"]["config"]["run_ids"]
    ) == sorted(run.run_id for run in runs.values())
    assert execute(dagster_instance, status_request, "write_sync_status").success

    assert account_status(pulse, "acc-1")["status"] == "active"
    broken = account_status(pulse, "acc-2")
    assert broken["status"] == "error" and "malformed IAM role ARN" in broken["lastSyncError"]
    # The default window (1st of last month .. yesterday) covers the queued days.
    assert {row[1] for row in stored_rows(pulse, "acc-1")} == {row[1] for row in EXPECTED_ACC1}

    # The status run itself, the ECB run and the earlier runs are not picked up again.
    again = STATUS_SENSOR.evaluate_tick(
        dg.build_sensor_context(
            instance=dagster_instance, cursor=status_tick.cursor, definitions=defs()
        )
    )
    assert not again.run_requests and "no sync run finished" in again.skip_message


def test_a_canceled_sync_leaves_the_account_in_error(
    pulse: str, dagster_instance: dg.DagsterInstance, moto_aws: None
) -> None:
    load_rates(dagster_instance)
    queue_results("111111111111", [ce_page({D1: {EC2: ("1", "USD")}})])
    dagster_instance.add_dynamic_partitions("cloud_accounts", ["acc-1"])
    change_accounts(pulse, **{"acc-1": {"status": "active"}})
    job = defs().resolve_job_def("sync_aws_costs")
    run = dagster_instance.create_run_for_job(job_def=job, tags={"dagster/partition": "acc-1"})
    dagster_instance.report_run_canceled(run)

    tick = STATUS_SENSOR.evaluate_tick(
        dg.build_sensor_context(instance=dagster_instance, definitions=defs())
    )
    assert execute(dagster_instance, tick.run_requests[0], "write_sync_status").success

    status = account_status(pulse, "acc-1")
    assert status["status"] == "error"
    assert (
        status["lastSyncError"]
        == "CloudAccount acc-1: the sync run was canceled before it finished"
    )


@pytest.mark.parametrize("launched_as", ["__ASSET_JOB", "sync_aws_costs"])
def test_status_sensor_sees_sync_runs_however_they_were_launched(
    pulse: str, dagster_instance: dg.DagsterInstance, launched_as: str
) -> None:
    """UI asset backfills run as __ASSET_JOB; they must get a status too."""
    dagster_instance.add_dynamic_partitions("cloud_accounts", ["acc-1"])
    if launched_as == "__ASSET_JOB":
        job = defs().resolve_implicit_global_asset_job_def()
        selection = {dg.AssetKey("cost_explorer_raw"), dg.AssetKey("daily_costs_eur")}
        run = dagster_instance.create_run_for_job(
            job_def=job, asset_selection=frozenset(selection), tags={"dagster/partition": "acc-1"}
        )
    else:
        run = dagster_instance.create_run_for_job(
            job_def=defs().resolve_job_def(launched_as), tags={"dagster/partition": "acc-1"}
        )
    dagster_instance.report_run_failed(run)

    tick = STATUS_SENSOR.evaluate_tick(
        dg.build_sensor_context(instance=dagster_instance, definitions=defs())
    )

    assert [
        r.run_config["ops"]["write_cloud_account_status"]["config"]["run_ids"]
        for r in tick.run_requests
    ] == [[run.run_id]]


def test_accounts_whose_id_cannot_be_a_partition_key_are_marked_error_and_never_block_others(
    pulse: str, dagster_instance: dg.DagsterInstance, moto_aws: None
) -> None:
    """On PostgreSQL storage a 2,680-character id failed every tick (ProgramLimitExceeded)."""
    set_lanes(dagster_instance, 1)
    load_rates(dagster_instance)
    first = tick_new_accounts(dagster_instance)
    assert dagster_instance.get_dynamic_partitions("cloud_accounts") == ["acc-1", "acc-2"]
    rng = random.Random(11)  # incompressible ids, as PostgreSQL indexes them
    too_long, longest, longer = (
        "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(size))
        for size in (2680, MAX_PARTITION_KEY_BYTES, MAX_PARTITION_KEY_BYTES)
    )
    new_ids = [too_long, "acc\nline", "acc...dots", longest, longer]
    created = datetime.now(UTC).replace(tzinfo=None)
    change_accounts(
        pulse,
        [
            {
                **account_row(id_, f"org-{n}", f"arn:aws:iam::{n}{n}{n}000000000:role/R"),
                "createdAt": created + timedelta(minutes=n),
            }
            for n, id_ in enumerate(new_ids, 3)
        ],
    )

    second = tick_new_accounts(dagster_instance, first.cursor)

    assert dagster_instance.get_dynamic_partitions("cloud_accounts") == [
        "acc-1",
        "acc-2",
        longest,
        longer,
    ]
    (batch,) = second.run_requests
    assert covered(dagster_instance, batch) == [longest, longer]
    assert batch.run_key == f"initial-sync:{longest}..{longer}"
    expected = {
        too_long: f"CloudAccount '{too_long[:32]}…' (org-3 production) cannot be synced: its id "
        "is 2,680 bytes long, more than the 1,024 bytes a partition key can have in Dagster's "
        "storage",
        "acc\nline": "CloudAccount 'acc\\nline' (org-4 production) cannot be synced: its id "
        "contains '\\n', which Dagster does not allow in a partition key",
        "acc...dots": "CloudAccount 'acc...dots' (org-5 production) cannot be synced: its id "
        "contains '...', which Dagster does not allow in a partition key",
    }
    for account_id, sentence in expected.items():
        status = account_status(pulse, account_id)
        assert status["status"] == "error"
        assert status["lastSyncError"] == (
            f"{sentence}; reconnect the account in PULSE so that it gets a new id"
        )
    # The daemon's own run for the batch: its run key holds both longest keys.
    run = execute(dagster_instance, batch, run_key=batch.run_key)
    assert run.success
    assert {
        e.step_materialization_data.materialization.partition
        for e in run.get_asset_materialization_events()
    } == {longest, longer}

    third = tick_new_accounts(dagster_instance, second.cursor)
    assert "3 accounts cannot be partitions" in third.skip_message

    # A partition made before these checks existed: the schedule skips it, marks it, syncs the rest.
    dagster_instance.add_dynamic_partitions("cloud_accounts", ["acc\nline"])
    change_accounts(pulse, **{"acc\nline": {"status": "active", "lastSyncError": None}})
    daily = tick_schedule(dagster_instance, datetime(2026, 11, 24, 5, 0, tzinfo=UTC))
    assert [covered(dagster_instance, r) for r in daily.run_requests] == [
        ["acc-1", "acc-2", longest, longer]
    ]
    assert account_status(pulse, "acc\nline")["status"] == "error"


@pytest.mark.parametrize(
    ("accounts", "lanes", "layout"),
    [
        (10, 5, [2, 2, 2, 2, 2]),
        (7, 5, [2, 2, 1, 1, 1]),
        (3, 5, [1, 1, 1]),
        (200, 5, [40] * 5),
        (500, 20, [25] * 20),
        (10_000, 5, [500] * 20),  # past 5 x 500 accounts: rounds of 5 runs of at most 500
    ],
)
def test_runs_follow_the_lanes_and_are_of_equal_size(
    accounts: int, lanes: int, layout: list[int]
) -> None:
    assert run_sizes(accounts, lanes) == layout


@pytest.mark.parametrize(
    ("concurrency", "set_limit", "lanes"),
    [
        # The production dagster.yaml: 5 pool slots, 10 runs.
        ({"pools": {"default_limit": 5}, "runs": {"max_concurrent_runs": 10}}, None, 5),
        # Fewer runs than slots: the runs are the lanes.
        ({"pools": {"default_limit": 7}, "runs": {"max_concurrent_runs": 3}}, None, 3),
        # A limit set in the UI or with `dagster instance concurrency set` wins over the default.
        ({"pools": {"default_limit": 5}, "runs": {"max_concurrent_runs": 10}}, 8, 8),
    ],
)
def test_lanes_are_read_from_the_instance_concurrency_settings(
    concurrency: dict[str, Any], set_limit: int | None, lanes: int
) -> None:
    with dg.instance_for_test(overrides={"concurrency": concurrency}) as instance:
        if set_limit is not None:
            set_lanes(instance, set_limit)
        assert cost_explorer_lanes(instance) == lanes
