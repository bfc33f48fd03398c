"""PULSE's database misbehaving, through real Dagster runs on PostgreSQL against the simulated
AWS: a DATABASE_URL that cannot be read unambiguously is refused in every place without quoting
it."""

import json
import traceback
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import dagster as dg
import pytest

from pulse_pipeline.cli import main
from pulse_pipeline.db.urls import to_sqlalchemy_url
from pulse_pipeline.definitions import defs
from pulse_pipeline.settings import SettingError
from pulse_pipeline_dev.simulated_aws import SimulatedAws, SimulationSettings
from pulse_pipeline_tests.support import (
    D1,
    D3,
    failure_of,
    load_rates,
    run_sync,
    stored_rows,
)

pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
ACC1 = "111111111111"
WINDOW = {"ops": {"sync_cloud_accounts": {"config": {"start_date": str(D1), "end_date": str(D3)}}}}
HEAD, TAIL = "pw-head-5ecret", "pw-tail-5ecret"
UNREADABLE = (
    "DATABASE_URL cannot be read unambiguously: its user name or password holds an unencoded "
    "@, /, ?, # or %; percent-encode each of them (@ as %40, / as %2F, ? as %3F, # as %23, % "
    'as %25), e.g. with python3 -c "import urllib.parse; '
    "print(urllib.parse.quote(input(), safe=''))\""
)


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[SimulatedAws]:
    with SimulatedAws(SimulationSettings(services_per_day=4, page_size=5)) as simulated:
        for name, value in simulated.environment().items():
            monkeypatch.setenv(name, value)
        yield simulated


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
