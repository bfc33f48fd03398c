"""The PULSE app's SyncRequest rows. First the sensor's ticks against real instances on SQLite and
PostgreSQL, with moto; then served through the daemon: the session's shared `dagster dev`
(webserver and daemon, see shared_dagster.py), PostgreSQL everywhere, AWS simulated. Each test
writes rows as the app would (plain SQL) and polls them as the app would."""

import json
import os
import signal
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from sqlalchemy import insert, select, update

from pulse_pipeline.db.schema import cloud_account, cost_explorer_page, cost_record, sync_request
from pulse_pipeline.db.urls import create_pulse_engine
from pulse_pipeline.defs.definitions import defs
from pulse_pipeline.defs.resources import ManualRequestLimits, PulseDatabase
from pulse_pipeline.defs.sensors import sync_requests
from pulse_pipeline_dev.simulated_aws import SimulatedAws
from pulse_pipeline_tests.ce_results import queue_results
from pulse_pipeline_tests.daemon import graphql, wait_for
from pulse_pipeline_tests.shared_dagster import (
    REQUESTS_ACCOUNTS,
    REQUESTS_SLOW_AWS_ACCOUNT,
    SharedDagster,
)
from pulse_pipeline_tests.support import D1, D4, EXPECTED_ACC1, TWO_PAGES, load_rates

TODAY = datetime.now(UTC).date()
ACCOUNTS, SLOW_AWS_ACCOUNT = REQUESTS_ACCOUNTS, REQUESTS_SLOW_AWS_ACCOUNT
# This module's AWS accounts: the session's other modules make requests of their own.
AWS_ACCOUNTS = {arn.split(":")[4] for _, arn, _ in ACCOUNTS.values()}


def _tick(instance: dg.DagsterInstance, url: str) -> dg.SensorResult:
    with dg.build_sensor_context(
        instance=instance,
        resources={"pulse_db": PulseDatabase(url=url), "request_limits": ManualRequestLimits()},
    ) as context:
        result = sync_requests(context)
    if isinstance(result, dg.SkipReason):
        return dg.SensorResult(skip_reason=result)
    assert isinstance(result, dg.SensorResult)
    return result


def test_a_tick_launches_limits_rejects_and_completes_on_both_databases(
    pulse: str, dagster_instance: dg.DagsterInstance, moto_aws: None
) -> None:
    queue_results("111111111111", TWO_PAGES)
    load_rates(dagster_instance)
    now = datetime.now(UTC) - timedelta(seconds=10)
    synced = ask(pulse, "org-1", "acc-1", startDate=D1, endDate=D4, requestedAt=now)
    limited = ask(pulse, "org-1", None, requestedAt=now + timedelta(seconds=1))
    foreign = ask(pulse, "org-2", "acc-1", requestedAt=now + timedelta(seconds=2))
    tested = ask(
        pulse, "org-1", "acc-1", kind="test_connection", requestedAt=now + timedelta(seconds=3)
    )

    first = _tick(dagster_instance, pulse)
    assert request_row(pulse, limited)["status"] == "rate_limited"
    assert 899 <= request_row(pulse, limited)["retryAfterSeconds"] <= 900
    assert request_row(pulse, foreign)["status"] == "rejected"
    assert [request_row(pulse, r)["status"] for r in (synced, tested)] == ["running", "running"]
    (added,) = first.dynamic_partitions_requests
    assert list(added.partition_keys) == ["acc-1"]  # not a partition yet: added in the tick
    sync_run, test_run = first.run_requests
    assert sync_run.partition_key == "acc-1" and sync_run.job_name == "sync_aws_costs"
    assert sync_run.tags["pulse/request"] == synced and sync_run.tags["pulse/trigger"] == "manual"
    window = {"start_date": D1.isoformat(), "end_date": D4.isoformat()}
    assert sync_run.run_config == {"ops": {"sync_cloud_accounts": {"config": window}}}
    assert test_run.job_name == "test_aws_connection" and test_run.tags["pulse/request"] == tested

    # The runs, as the daemon would launch them.
    dagster_instance.add_dynamic_partitions("cloud_accounts", ["acc-1"])
    sync_result = (
        defs()
        .resolve_job_def("sync_aws_costs")
        .execute_in_process(
            instance=dagster_instance,
            partition_key="acc-1",
            run_config=sync_run.run_config,
            tags=sync_run.tags,
        )
    )
    assert sync_result.success
    test_result = (
        defs()
        .resolve_job_def("test_aws_connection")
        .execute_in_process(
            instance=dagster_instance, run_config=test_run.run_config, tags=test_run.tags
        )
    )
    assert test_result.success
    assert request_row(pulse, tested)["result"] == {
        "cloudAccountId": "acc-1",
        "awsAccountId": "111111111111",
        "assumeRole": "ok",
        "costExplorer": "ok",
    }

    _tick(dagster_instance, pulse)
    row = request_row(pulse, synced)
    assert row["status"] == "succeeded" and row["runId"] == sync_result.run_id
    total = sum((expected[7] for expected in EXPECTED_ACC1), Decimal(0))
    assert row["result"] == [
        {
            "cloudAccountId": "acc-1",
            "recordsCount": len(EXPECTED_ACC1),
            "totalAmountEUR": f"{total:.10f}",
            "services": sorted({expected[2] for expected in EXPECTED_ACC1}),
        }
    ]
    assert request_row(pulse, tested)["status"] == "succeeded"
    assert _tick(dagster_instance, pulse).skip_reason is not None  # nothing left to do


def test_a_request_whose_run_never_appeared_is_launched_again(
    pulse: str, dagster_instance: dg.DagsterInstance
) -> None:
    """The tick marked it running, then the daemon stopped before launching its run."""
    request_id = ask(pulse, "org-1", "acc-1")
    engine = create_pulse_engine(pulse)
    with engine.begin() as conn:
        conn.execute(
            update(sync_request)
            .where(sync_request.c.id == request_id)
            .values(status="running", startedAt=datetime.now(UTC) - timedelta(minutes=6))
        )
    engine.dispose()
    (run,) = _tick(dagster_instance, pulse).run_requests
    assert run.tags["pulse/request"] == request_id and run.partition_key == "acc-1"
    assert request_row(pulse, request_id)["status"] == "running"


@pytest.fixture
def pulse_url(shared_dagster: SharedDagster) -> str:
    return shared_dagster.pulse_url


@pytest.fixture
def simulated_aws(shared_dagster: SharedDagster) -> SimulatedAws:
    return shared_dagster.aws


@pytest.fixture
def webserver(shared_dagster: SharedDagster) -> str:
    return shared_dagster.base


@pytest.fixture
def dagster_home(shared_dagster: SharedDagster) -> Path:
    """DAGSTER_HOME of the session's `dagster dev`."""
    return shared_dagster.home


def _rows(url: str, table: Any, *where: Any) -> list[dict[str, Any]]:
    engine = create_pulse_engine(url)
    with engine.connect() as conn:
        rows = [dict(row) for row in conn.execute(select(table).where(*where)).mappings()]
    engine.dispose()
    return rows


def ask(url: str, org: str, account: str | None, kind: str = "sync", **window: Any) -> str:
    """What the PULSE app does on a button press: one queued row (`window`: its startDate,
    endDate; requestedAt to order rows SQLite would stamp with the same second)."""
    request_id = f"req-{uuid.uuid4().hex[:12]}"
    engine = create_pulse_engine(url)
    with engine.begin() as conn:
        conn.execute(
            insert(sync_request).values(
                id=request_id, orgId=org, cloudAccountId=account, kind=kind, **window
            )
        )
    engine.dispose()
    return request_id


def request_row(url: str, request_id: str) -> dict[str, Any]:
    (row,) = _rows(url, sync_request, sync_request.c.id == request_id)
    return row


def settled(url: str, request_id: str, timeout: float = 180) -> dict[str, Any]:
    """Poll the row as the app does until it has a final status."""
    return wait_for(
        lambda: (
            (row := request_row(url, request_id))["status"] not in ("queued", "running") and row
        ),
        f"SyncRequest {request_id} to finish",
        timeout,
    )


def expected_result(url: str, account_id: str, run_id: str) -> dict[str, Any]:
    """What the request must answer for an account: its CostRecords of the window the run
    fetched, counted and summed here independently."""
    pages = _rows(
        url,
        cost_explorer_page,
        cost_explorer_page.c.run_id == run_id,
        cost_explorer_page.c.cloud_account_id == account_id,
    )
    ((start, end),) = {(p["window_start"], p["window_end"]) for p in pages}
    records = _rows(
        url,
        cost_record,
        cost_record.c.cloudAccountId == account_id,
        cost_record.c.date >= start,
        cost_record.c.date <= end,
    )
    total = sum((r["amountEUR"] for r in records), Decimal(0))
    return {
        "cloudAccountId": account_id,
        "recordsCount": len(records),
        "totalAmountEUR": f"{total:.10f}",
        "services": sorted({r["service"] for r in records}),
    }


def runs_of(home: Path, request_id: str) -> list[dg.DagsterRun]:
    with dg.DagsterInstance.from_config(str(home)) as instance:
        return list(instance.get_runs(dg.RunsFilter(tags={"pulse/request": request_id})))


def test_a_sync_request_is_served_within_a_tick_and_answers_the_accounts_rows(
    dagster_home: Path, pulse_url: str
) -> None:
    before = request_row(pulse_url, request_id := ask(pulse_url, "org-b", "acc-2-b"))
    asked = time.monotonic()
    wait_for(lambda: request_row(pulse_url, request_id)["status"] != "queued", "the launch", 60)
    launched_after = time.monotonic() - asked
    after = settled(pulse_url, request_id)
    print(f"\nrow as the app wrote it: {before}\nrow once served: {after}")
    print(f"launched {launched_after:.1f} s after the row was written")
    assert launched_after < 30  # the sensor ticks every 10 s; a tick takes a few seconds
    assert after["status"] == "succeeded" and after["error"] is None
    assert after["startedAt"] >= after["requestedAt"] and after["finishedAt"] > after["startedAt"]
    (run,) = runs_of(dagster_home, request_id)
    assert run.run_id == after["runId"] and run.job_name == "sync_aws_costs"
    assert run.tags["pulse/trigger"] == "manual" and run.tags["dagster/partition"] == "acc-2-b"
    assert after["result"] == [expected_result(pulse_url, "acc-2-b", run.run_id)]
    assert after["result"][0]["recordsCount"] > 0
    # The status write-back treats it like any other sync.
    written_back(pulse_url, "acc-2-b", run_end(dagster_home, run.run_id))


def run_end(home: Path, run_id: str) -> datetime:
    """When the run ended, as Dagster recorded it: what the status write-back makes
    `lastSyncedAt` (the request's `finishedAt` is when its final status was written, later)."""
    with dg.DagsterInstance.from_config(str(home)) as instance:
        record = instance.get_run_record_by_id(run_id)
    assert record is not None and record.end_time is not None
    return datetime.fromtimestamp(record.end_time, UTC)


def written_back(url: str, account_id: str, since: datetime) -> None:
    """Wait for the status sensor to record a sync of the account that ended at `since`."""

    def done() -> bool:
        (account,) = _rows(url, cloud_account, cloud_account.c.id == account_id)
        synced = account["lastSyncedAt"]
        return synced is not None and synced.replace(tzinfo=UTC) >= since - timedelta(seconds=1)

    wait_for(done, f"{account_id}'s status write-back", 90)


def test_the_rate_limit_per_organisation_and_a_request_after_the_interval(
    dagster_home: Path, pulse_url: str
) -> None:
    first = ask(pulse_url, "org-r", "acc-8-r")
    wait_for(lambda: request_row(pulse_url, first)["startedAt"], "the first launch", 60)
    second = ask(pulse_url, "org-r", None)
    limited = settled(pulse_url, second, 60)
    started = request_row(pulse_url, first)["startedAt"]
    assert limited["status"] == "rate_limited" and limited["runId"] is None
    elapsed = (limited["finishedAt"] - started).total_seconds()
    assert abs(limited["retryAfterSeconds"] - (15 * 60 - elapsed)) <= 1
    assert runs_of(dagster_home, second) == []
    assert settled(pulse_url, first)["status"] == "succeeded"
    # Fifteen minutes later (the clock moved on by moving the launch back): served.
    engine = create_pulse_engine(pulse_url)
    with engine.begin() as conn:
        conn.execute(
            update(sync_request)
            .where(sync_request.c.id == first)
            .values(startedAt=started - timedelta(minutes=15))
        )
    engine.dispose()
    third = ask(pulse_url, "org-r", "acc-8-r")
    assert settled(pulse_url, third)["status"] == "succeeded"


def test_an_organisation_wide_request_syncs_its_connected_accounts(
    dagster_home: Path, pulse_url: str
) -> None:
    request_id = ask(pulse_url, "org-a", None)
    row = settled(pulse_url, request_id)
    assert row["status"] == "succeeded", row["error"]
    runs = runs_of(dagster_home, request_id)
    # org-a's accounts are partitions 1 and 3: a run each, never a range over org-b's account.
    assert sorted(run.tags["dagster/partition"] for run in runs) == ["acc-1-a", "acc-3-a"]
    assert all(run.tags["pulse/request-runs"] == "2" for run in runs)
    run_of = {run.tags["dagster/partition"]: run.run_id for run in runs}
    assert sorted(row["result"], key=lambda r: r["cloudAccountId"]) == [
        expected_result(pulse_url, account, run_of[account]) for account in ("acc-1-a", "acc-3-a")
    ]
    # The disconnected account of the organisation is left alone.
    assert "acc-4-off" not in {r["cloudAccountId"] for r in row["result"]}


def test_a_window_request_syncs_exactly_that_window(dagster_home: Path, pulse_url: str) -> None:
    let_interval_pass(pulse_url, "org-b")
    start, end = TODAY - timedelta(days=40), TODAY - timedelta(days=33)
    request_id = ask(pulse_url, "org-b", "acc-2-b", startDate=start, endDate=end)
    row = settled(pulse_url, request_id)
    assert row["status"] == "succeeded", row["error"]
    pages = _rows(pulse_url, cost_explorer_page, cost_explorer_page.c.run_id == row["runId"])
    assert {(p["window_start"], p["window_end"]) for p in pages} == {(start, end)}
    assert row["result"] == [expected_result(pulse_url, "acc-2-b", row["runId"])]
    # 8 days x 5 services, each with Usage and sometimes Credit or Tax.
    assert row["result"][0]["recordsCount"] >= 40
    written_back(pulse_url, "acc-2-b", run_end(dagster_home, row["runId"]))


def let_interval_pass(url: str, org: str) -> None:
    """Move the organisation's launches back by the interval, as if 15 minutes had passed."""
    engine = create_pulse_engine(url)
    with engine.begin() as conn:
        conn.execute(
            update(sync_request)
            .where(sync_request.c.orgId == org, sync_request.c.startedAt.is_not(None))
            .values(startedAt=sync_request.c.startedAt - timedelta(minutes=15))
        )
    engine.dispose()


def requests_of_this_module(aws: SimulatedAws) -> dict[str, int]:
    return {a: n for a, n in aws.requests_by_account().items() if a in AWS_ACCOUNTS}


def test_invalid_requests_are_rejected_without_any_aws_request(
    dagster_home: Path, pulse_url: str, simulated_aws: SimulatedAws
) -> None:
    requests_before = requests_of_this_module(simulated_aws)
    assume_before = {
        a: simulated_aws.assume_role_count(a) for a in ("111111111111", "777777777777")
    }
    asked = {
        ask(pulse_url, "org-a", "acc-missing"): "CloudAccount acc-missing is not an AWS Cost "
        "Explorer account of organisation org-a",
        ask(pulse_url, "org-b", "acc-1-a"): "CloudAccount acc-1-a is not an AWS Cost Explorer "
        "account of organisation org-b",
        ask(pulse_url, "org-a", "acc-4-off"): "CloudAccount acc-4-off (acc-4-off account) is "
        "disconnected in PULSE (status 'disconnected'); reconnect it first",
        ask(
            pulse_url,
            "org-a",
            "acc-1-a",
            startDate=TODAY - timedelta(days=3),
            endDate=TODAY - timedelta(days=5),
        ): "startDate",
        ask(pulse_url, "org-a", "acc-1-a", endDate=TODAY + timedelta(days=1)): "in the future",
        ask(pulse_url, "org-a", "acc-1-a", startDate=date(2000, 1, 1)): "older than Cost Explorer",
        ask(pulse_url, "org-a", "acc-1-a", kind="purge"): "unknown kind 'purge'",
        ask(pulse_url, "org-none", None): "organisation org-none has no connected",
    }
    for request_id, reason in asked.items():
        row = settled(pulse_url, request_id, 60)
        assert row["status"] == "rejected", row
        assert reason in row["error"] and row["finishedAt"] and row["runId"] is None
        assert runs_of(dagster_home, request_id) == []
    assert requests_of_this_module(simulated_aws) == requests_before
    assert {a: simulated_aws.assume_role_count(a) for a in assume_before} == assume_before


def _untouched(url: str, account_ids: list[str]) -> tuple[Any, ...]:
    accounts = _rows(url, cloud_account, cloud_account.c.id.in_(account_ids))
    records = _rows(url, cost_record, cost_record.c.cloudAccountId.in_(account_ids))
    return (
        sorted(accounts, key=lambda a: a["id"]),
        sorted((r["id"], r["amountEUR"], r["createdAt"]) for r in records),
    )


def test_connection_tests_answer_and_change_no_account_or_cost_record(
    dagster_home: Path, webserver: str, pulse_url: str, simulated_aws: SimulatedAws
) -> None:
    tested = ["acc-2-b", "acc-5-denied", "acc-6-no-ce"]
    before = _untouched(pulse_url, tested)
    pages_before = simulated_aws.request_count("222222222222")
    good = ask(pulse_url, "org-b", "acc-2-b", kind="test_connection")
    denied = ask(pulse_url, "org-t", "acc-5-denied", kind="test_connection")
    no_ce = ask(pulse_url, "org-t", "acc-6-no-ce", kind="test_connection")
    wait_for(lambda: request_row(pulse_url, good)["startedAt"], "the test's launch", 60)
    again = ask(pulse_url, "org-b", "acc-2-b", kind="test_connection")
    row = settled(pulse_url, good)
    assert row["status"] == "succeeded" and row["error"] is None
    assert row["result"] == {
        "cloudAccountId": "acc-2-b",
        "awsAccountId": "222222222222",
        "assumeRole": "ok",
        "costExplorer": "ok",
    }
    assert simulated_aws.request_count("222222222222") == pages_before + 1  # one page: $0.01
    (run,) = runs_of(dagster_home, good)
    assert run.job_name == "test_aws_connection" and run.run_id == row["runId"]
    row = settled(pulse_url, denied)
    assert row["status"] == "failed" and row["result"] is None
    assert "AWS denied AssumeRole" in row["error"] and "trust policy" in row["error"]
    assert "ext-acc-5-denied" not in row["error"]
    row = settled(pulse_url, no_ce)
    ran = [good, denied, no_ce]
    assert row["status"] == "failed"
    assert "may not call ce:GetCostAndUsage" in row["error"]
    # One test per account per minute, counted from the last launched one.
    limited = settled(pulse_url, again, 60)
    started = request_row(pulse_url, good)["startedAt"]
    elapsed = (limited["finishedAt"] - started).total_seconds()
    assert limited["status"] == "rate_limited"
    assert abs(limited["retryAfterSeconds"] - (60 - elapsed)) <= 1
    # Once the status sensor has gone past the tests' runs, it would have written their
    # outcomes, were it to mistake a test for a sync.
    status_sensor_past(webserver, dagster_home, [request_row(pulse_url, r)["runId"] for r in ran])
    assert _untouched(pulse_url, tested) == before


STATUS_CURSOR = """
query Cursor($selector: SensorSelector!) {
  sensorOrError(sensorSelector: $selector) {
    ... on Sensor { sensorState { typeSpecificData { ... on SensorData { lastCursor } } } }
  }
}"""


def status_sensor_past(base: str, home: Path, run_ids: list[str]) -> None:
    """Wait until the status sensor's cursor is past the runs: every finished run up to it has
    been looked at, and a sync run's outcome written (it moves past one only then)."""
    with dg.DagsterInstance.from_config(str(home)) as instance:
        records = instance.get_run_records(dg.RunsFilter(run_ids=run_ids))
    assert len(records) == len(run_ids) and all(r.dagster_run.is_finished for r in records)
    last = max(record.update_timestamp.timestamp() for record in records)
    selector = {
        "repositoryLocationName": "pulse_pipeline",
        "repositoryName": "__repository__",
        "sensorName": "sync_status_writer",
    }

    def past() -> bool:
        state = graphql(base, STATUS_CURSOR, {"selector": selector})["sensorOrError"]
        cursor = state["sensorState"]["typeSpecificData"]["lastCursor"]
        written_until = json.loads(cursor)["written_until"] if cursor else None
        return written_until is not None and written_until >= last

    wait_for(past, "the status sensor to go past the runs", 120)


def test_a_killed_runs_request_ends_failed(
    dagster_home: Path, pulse_url: str, simulated_aws: SimulatedAws
) -> None:
    pages_before = simulated_aws.request_count(SLOW_AWS_ACCOUNT)
    # A month of days is several slow pages (2 s each), whatever the account already holds, so
    # the run is caught mid-fetch (the default window after its first sync is one page).
    start, end = TODAY - timedelta(days=40), TODAY - timedelta(days=10)
    request_id = ask(pulse_url, "org-k", "acc-7-slow", startDate=start, endDate=end)

    def worker_pid() -> int | None:
        if simulated_aws.request_count(SLOW_AWS_ACCOUNT) == pages_before:
            return None
        with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
            for run in instance.get_runs(dg.RunsFilter(tags={"pulse/request": request_id})):
                for event in instance.all_logs(
                    run.run_id, of_type=dg.DagsterEventType.ENGINE_EVENT
                ):
                    data = event.dagster_event.engine_event_data if event.dagster_event else None
                    pid = data.metadata.get("pid") if data else None
                    if pid is not None:
                        return int(pid.value)
        return None

    os.kill(wait_for(worker_pid, "the run to call Cost Explorer", 120), signal.SIGKILL)
    row = settled(pulse_url, request_id)
    print(f"\nkilled run's request: {row}")
    assert row["status"] == "failed" and row["result"] is None
    assert row["error"] == (
        "CloudAccount acc-7-slow: the sync run ended without finishing (its process was killed "
        "or lost)"
    )
