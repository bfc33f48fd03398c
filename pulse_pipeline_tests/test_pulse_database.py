"""PULSE's database misbehaving, through real Dagster runs on PostgreSQL against the simulated
AWS: a DATABASE_URL that cannot be read unambiguously is refused in every place without quoting
it; a database that never answers and locks held by another connection fail the account within
their timeout, with one sentence, no AWS request paid for data that cannot be stored, the
account's earlier rows kept and the other accounts synced."""

import json
import socket
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import dagster as dg
import psycopg
import pytest

from pulse_pipeline.cli import main
from pulse_pipeline.db.urls import to_sqlalchemy_url
from pulse_pipeline.defs.definitions import defs
from pulse_pipeline.defs.keys import FAILED_ACCOUNTS
from pulse_pipeline.defs.settings import SettingError
from pulse_pipeline_dev.simulated_aws import SimulatedAws, SimulationSettings
from pulse_pipeline_tests.support import (
    D1,
    D3,
    account_status,
    failure_of,
    load_rates,
    run_sync,
    stored_rows,
    write_status,
)

pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
SENSOR = defs().resolve_sensor_def("new_cloud_accounts")
ACC1, ACC2 = "111111111111", "222222222222"
WINDOW = {"ops": {"sync_cloud_accounts": {"config": {"start_date": str(D1), "end_date": str(D3)}}}}
# How much longer than its timeout a failure may take: Dagster's own step and event overhead
# on this project's 2 shared cores.
SLACK = 3.0
HEAD, TAIL = "pw-head-5ecret", "pw-tail-5ecret"
UNREADABLE = (
    "DATABASE_URL cannot be read unambiguously: its user name or password holds an unencoded "
    "@, /, ?, # or %; percent-encode each of them (@ as %40, / as %2F, ? as %3F, # as %23, % "
    'as %25), e.g. with python3 -c "import urllib.parse; '
    "print(urllib.parse.quote(input(), safe=''))\""
)
NO_CONNECTION = (
    "PULSE's database did not answer within 2 s (to a connection attempt; "
    "PULSE_DB_CONNECT_TIMEOUT_SECONDS); nothing was written"
)
LOCKED = (
    "PULSE's database did not answer within 2 s (a statement, which waited for a lock or ran "
    "too long; PULSE_DB_STATEMENT_TIMEOUT_SECONDS); nothing was written"
)


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[SimulatedAws]:
    with SimulatedAws(SimulationSettings(services_per_day=4, page_size=5)) as simulated:
        for name, value in simulated.environment().items():
            monkeypatch.setenv(name, value)
        yield simulated


@contextmanager
def silent_database() -> Iterator[int]:
    """A TCP server on loopback that accepts every connection and never sends a byte; its port."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.1)
    accepted: list[socket.socket] = []
    stopping = threading.Event()

    def accept() -> None:
        while not stopping.is_set():
            try:
                accepted.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stopping.set()
        thread.join()
        for connection in accepted:
            connection.close()
        server.close()


@contextmanager
def locked(pulse: str, statement: str) -> Iterator[None]:
    """Another connection holding the lock `statement` takes, in an open transaction."""
    url, schema = to_sqlalchemy_url(pulse)
    libpq = url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(libpq, options=f"-c search_path={schema}") as holder:
        holder.execute(statement)
        yield
        holder.rollback()


def step_seconds(instance: dg.DagsterInstance, result: dg.ExecuteInProcessResult) -> float:
    """From the sync step's start to its failure, as the event log recorded them."""
    times = {
        record.dagster_event.event_type_value: record.timestamp
        for record in instance.all_logs(result.run_id)
        if record.dagster_event is not None
        and record.dagster_event.event_type_value in ("STEP_START", "STEP_FAILURE")
    }
    return float(times["STEP_FAILURE"] - times["STEP_START"])


def step_error(result: dg.ExecuteInProcessResult) -> str:
    """A failed step's error (a plain exception, not a dg.Failure) with its causes."""
    error = result.get_step_failure_events()[0].step_failure_data.error
    messages = []
    while error is not None:
        messages.append(f"{error.cls_name}: {error.message}")
        error = error.cause
    return "\n".join(messages)


def retries_of(result: dg.ExecuteInProcessResult) -> int:
    return sum(1 for event in result.all_events if event.event_type_value == "STEP_UP_FOR_RETRY")


def event_log(instance: dg.DagsterInstance, *results: dg.ExecuteInProcessResult) -> str:
    return "\n".join(
        dg.serialize_value(record)
        for result in results
        for record in instance.all_logs(result.run_id)
    )


def tick_error(tick: Any, context: Any) -> str:
    """The error a sensor or schedule tick raises, as the daemon would show it (causes too)."""
    with pytest.raises(Exception) as caught:
        tick(context)
    return "".join(traceback.format_exception(caught.value))


def sensor_context(instance: dg.DagsterInstance, definitions: dg.Definitions) -> Any:
    return dg.build_sensor_context(
        instance=instance,
        instance_ref=instance.get_ref(),
        resources={"pulse_db": definitions.resources["pulse_db"]},
        definitions=definitions,
    )


def test_an_ambiguous_database_url_is_refused_everywhere_without_quoting_it(
    pulse: str,
    dagster_instance: dg.DagsterInstance,
    aws: SimulatedAws,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    load_rates(dagster_instance)
    assert run_sync(dagster_instance, "acc-1", D1, D3).success
    before, requests = stored_rows(pulse, "acc-1"), aws.request_count(ACC1)
    loaded = defs()  # the code location loaded while DATABASE_URL was right
    sensor = loaded.resolve_sensor_def("new_cloud_accounts")
    schedule = loaded.resolve_schedule_def("daily_aws_cost_sync")
    url, schema = to_sqlalchemy_url(pulse)
    monkeypatch.setenv(
        "DATABASE_URL",
        f"postgresql://{url.username}:{HEAD}@{TAIL}@{url.host}:{url.port}/{url.database}"
        f"?schema={schema}",
    )

    with pytest.raises(SettingError) as load:
        defs()
    sync = loaded.resolve_job_def("sync_aws_costs").execute_in_process(
        instance=dagster_instance, partition_key="acc-1", run_config=WINDOW, raise_on_error=False
    )
    rates = loaded.resolve_job_def("refresh_ecb_rates").execute_in_process(
        instance=dagster_instance, raise_on_error=False
    )
    status = loaded.resolve_job_def("write_sync_status").execute_in_process(
        instance=dagster_instance,
        run_config={"ops": {"write_cloud_account_status": {"config": {"run_ids": [sync.run_id]}}}},
        raise_on_error=False,
    )
    with sensor_context(dagster_instance, loaded) as context:
        sensor_error = tick_error(sensor.evaluate_tick, context)
    with dg.build_schedule_context(
        instance=dagster_instance,
        scheduled_execution_time=datetime(2026, 11, 24, 5, tzinfo=UTC),
        resources={"pulse_db": loaded.resources["pulse_db"]},
        repository_def=loaded.get_repository_def(),
    ) as context:
        schedule_error = tick_error(schedule.evaluate_tick, context)
    assert main(["db", "upgrade"]) == 1
    output = capfd.readouterr()

    assert str(load.value) == UNREADABLE
    assert failure_of(sync) == f"CloudAccount acc-1: {UNREADABLE}" and retries_of(sync) == 0
    assert UNREADABLE in step_error(rates)
    assert failure_of(status) == UNREADABLE and retries_of(status) == 0
    assert UNREADABLE in sensor_error and UNREADABLE in schedule_error
    assert f"pulse-pipeline: {UNREADABLE}" in output.err
    places = {
        "code location load": str(load.value),
        "event log": event_log(dagster_instance, sync, rates, status),
        "run output and pulse-pipeline": output.out + output.err,
        "sensor error": sensor_error,
        "schedule error": schedule_error,
    }
    for where, text in places.items():
        # The event log is JSON, its quotes escaped.
        assert UNREADABLE in text or json.dumps(UNREADABLE)[1:-1] in text, where
        assert HEAD not in text and TAIL not in text, f"the password leaked into the {where}"
    assert aws.request_count(ACC1) == requests and aws.assume_role_count(ACC1) == 1
    assert stored_rows(pulse, "acc-1") == before


def test_a_database_that_never_answers_fails_within_the_connect_timeout_before_any_aws_request(
    pulse: str,
    dagster_instance: dg.DagsterInstance,
    aws: SimulatedAws,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    load_rates(dagster_instance)
    assert run_sync(dagster_instance, "acc-1", D1, D3).success
    before, requests = stored_rows(pulse, "acc-1"), aws.request_count(ACC1)
    monkeypatch.setenv("PULSE_DB_CONNECT_TIMEOUT_SECONDS", "2")
    loaded = defs()

    with silent_database() as port:
        monkeypatch.setenv(
            "DATABASE_URL", f"postgresql://postgres:{HEAD}@127.0.0.1:{port}/pulse?schema=public"
        )
        started = time.monotonic()
        result = run_sync(dagster_instance, "acc-1", D1, D3)
        run_seconds = time.monotonic() - started
        started = time.monotonic()
        with sensor_context(dagster_instance, loaded) as context:
            sensor_error = tick_error(SENSOR.evaluate_tick, context)
        sensor_seconds = time.monotonic() - started
    monkeypatch.setenv("DATABASE_URL", pulse)  # the database answers again

    assert not result.success and retries_of(result) == 0
    assert failure_of(result) == f"CloudAccount acc-1: {NO_CONNECTION}"
    assert 2 <= step_seconds(dagster_instance, result) < 2 + SLACK, step_seconds(
        dagster_instance, result
    )
    assert run_seconds < 2 + 4 * SLACK, run_seconds
    assert NO_CONNECTION.removesuffix("; nothing was written") in sensor_error
    assert 2 <= sensor_seconds < 2 + SLACK, sensor_seconds
    assert HEAD not in sensor_error and HEAD not in event_log(dagster_instance, result)
    assert aws.request_count(ACC1) == requests and aws.assume_role_count(ACC1) == 1
    assert write_status(dagster_instance, [result.run_id]).success
    status = account_status(pulse, "acc-1")
    assert status["status"] == "error"
    assert status["lastSyncError"] == f"CloudAccount acc-1: {NO_CONNECTION}"
    assert stored_rows(pulse, "acc-1") == before


def test_a_table_locked_elsewhere_fails_within_the_statement_timeout_before_any_aws_request(
    pulse: str,
    dagster_instance: dg.DagsterInstance,
    aws: SimulatedAws,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    load_rates(dagster_instance)
    assert run_sync(dagster_instance, "acc-1", D1, D3).success
    before, requests = stored_rows(pulse, "acc-1"), aws.request_count(ACC1)
    monkeypatch.setenv("PULSE_DB_STATEMENT_TIMEOUT_SECONDS", "2")

    with locked(pulse, 'LOCK TABLE "CloudAccount" IN ACCESS EXCLUSIVE MODE'):
        result = run_sync(dagster_instance, "acc-1", D1, D3)

    assert not result.success and retries_of(result) == 0
    assert failure_of(result) == f"CloudAccount acc-1: {LOCKED}"
    assert 2 <= step_seconds(dagster_instance, result) < 2 + SLACK, step_seconds(
        dagster_instance, result
    )
    assert aws.request_count(ACC1) == requests and aws.assume_role_count(ACC1) == 1
    assert write_status(dagster_instance, [result.run_id]).success
    assert account_status(pulse, "acc-1")["lastSyncError"] == f"CloudAccount acc-1: {LOCKED}"
    assert stored_rows(pulse, "acc-1") == before


def test_an_account_row_locked_elsewhere_fails_that_account_and_the_batch_syncs_the_others(
    pulse: str,
    dagster_instance: dg.DagsterInstance,
    aws: SimulatedAws,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    load_rates(dagster_instance)
    assert run_sync(dagster_instance, "acc-1", D1, D3).success
    before, requests = stored_rows(pulse, "acc-1"), aws.request_count(ACC1)
    monkeypatch.setenv("PULSE_DB_STATEMENT_TIMEOUT_SECONDS", "2")
    dagster_instance.add_dynamic_partitions("cloud_accounts", ["acc-1", "acc-2"])
    batch = {
        "dagster/asset_partition_range_start": "acc-1",
        "dagster/asset_partition_range_end": "acc-2",
    }

    # The PULSE app updating acc-1 in a transaction that does not end.
    with locked(pulse, """SELECT 1 FROM "CloudAccount" WHERE id = 'acc-1' FOR UPDATE"""):
        result = (
            defs()
            .resolve_job_def("sync_aws_costs")
            .execute_in_process(
                instance=dagster_instance, tags=batch, run_config=WINDOW, raise_on_error=False
            )
        )

    assert not result.success and retries_of(result) == 0
    failure = result.get_step_failure_events()[0].step_failure_data.user_failure_data
    assert failure is not None
    assert failure.metadata[FAILED_ACCOUNTS].value == {"acc-1": f"CloudAccount acc-1: {LOCKED}"}
    assert step_seconds(dagster_instance, result) < 2 + 2 * SLACK, step_seconds(
        dagster_instance, result
    )
    # acc-1's pages were fetched (and stored) before its write waited for the lock.
    raw = {
        m.partition: m.metadata["requests"].value
        for m in (
            e.step_materialization_data.materialization
            for e in result.get_asset_materialization_events()
        )
        if m.asset_key == dg.AssetKey("cost_explorer_raw")
    }
    assert aws.request_count(ACC1) == requests + raw["acc-1"]
    assert stored_rows(pulse, "acc-1") == before
    assert materialization_partitions(result, "daily_costs_eur") == {"acc-2"}
    assert len(stored_rows(pulse, "acc-2")) > 0 and aws.request_count(ACC2) == raw["acc-2"]
    assert write_status(dagster_instance, [result.run_id]).success
    assert account_status(pulse, "acc-1")["lastSyncError"] == f"CloudAccount acc-1: {LOCKED}"
    assert account_status(pulse, "acc-2")["status"] == "active"


def materialization_partitions(result: dg.ExecuteInProcessResult, asset: str) -> set[str | None]:
    return {
        m.partition
        for m in (
            e.step_materialization_data.materialization
            for e in result.get_asset_materialization_events()
        )
        if m.asset_key == dg.AssetKey(asset)
    }
