"""The status write-back never loses an outcome: when a write_sync_status run fails, the status
sensor asks again for the sync runs it covered, and a later status run writes them."""

import json

import dagster as dg
import pytest

from pulse_pipeline.defs.definitions import defs
from pulse_pipeline_tests.ce_results import ce_page, queue_results
from pulse_pipeline_tests.support import (
    D1,
    D3,
    EC2,
    account_status,
    load_rates,
    run_sync,
    set_account,
)

STATUS_SENSOR = defs().resolve_sensor_def("sync_status_writer")
# A password with an unencoded "@": a DATABASE_URL no status run can read, so it fails at once.
UNREADABLE_URL = "postgresql://pulse:pa@ss@127.0.0.1:5432/pulse"


def tick(instance: dg.DagsterInstance, cursor: str | None) -> dg.SensorResult:
    return STATUS_SENSOR.evaluate_tick(
        dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs())
    )


def launch(
    instance: dg.DagsterInstance, job: dg.JobDefinition, request: dg.RunRequest
) -> dg.ExecuteInProcessResult:
    """The status run as the daemon launches it: the request's config, tags and run key."""
    return job.execute_in_process(
        instance=instance,
        run_config=request.run_config,
        tags={**request.tags, "dagster/run_key": str(request.run_key)},
        raise_on_error=False,
    )


def covered(request: dg.RunRequest) -> set[str]:
    return set(request.run_config["ops"]["write_cloud_account_status"]["config"]["run_ids"])


def test_a_failed_status_run_loses_nothing_the_next_one_writes_its_runs(
    pulse: str,
    dagster_instance: dg.DagsterInstance,
    moto_aws: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    load_rates(dagster_instance)
    job = defs().resolve_job_def("write_sync_status")  # loaded while DATABASE_URL is right
    queue_results("111111111111", [ce_page({D1: {EC2: ("1", "USD")}})])
    synced = run_sync(dagster_instance, "acc-1", D1, D3)
    set_account(pulse, "acc-2", roleArn="arn:aws:iam::222222222222:user/not-a-role")
    broken = run_sync(dagster_instance, "acc-2", D1, D3)
    first = tick(dagster_instance, None)
    (request,) = first.run_requests
    assert covered(request) == {synced.run_id, broken.run_id}

    # The status run cannot reach PULSE's database: it fails and writes nothing.
    with monkeypatch.context() as bad_setting:
        bad_setting.setenv("DATABASE_URL", UNREADABLE_URL)
        failed = launch(dagster_instance, job, request)
    assert not failed.success
    assert account_status(pulse, "acc-1")["status"] == "pending"
    assert account_status(pulse, "acc-2")["status"] == "pending"

    # Another sync finishes meanwhile; the next tick asks for all three outcomes.
    queue_results("111111111111", [ce_page({D1: {EC2: ("2", "USD")}})])
    later = run_sync(dagster_instance, "acc-1", D1, D3)
    second = tick(dagster_instance, first.cursor)
    (retry,) = second.run_requests
    assert covered(retry) == {synced.run_id, broken.run_id, later.run_id}
    assert retry.run_key != request.run_key  # a new run, not one the daemon would skip

    written = launch(dagster_instance, job, retry)
    assert written.success
    acc1, acc2 = account_status(pulse, "acc-1"), account_status(pulse, "acc-2")
    assert acc1["status"] == "active" and acc1["lastSyncError"] is None
    later_end = dagster_instance.get_run_record_by_id(later.run_id)
    assert later_end is not None and later_end.end_time is not None
    assert acc1["lastSyncedAt"].timestamp() == pytest.approx(later_end.end_time, abs=1e-3)
    assert acc2["status"] == "error" and "malformed IAM role ARN" in acc2["lastSyncError"]

    # Written: the cursor has moved past them, and nothing is asked for again.
    third = tick(dagster_instance, second.cursor)
    assert not third.run_requests and "no sync run finished" in (third.skip_message or "")
    assert json.loads(str(third.cursor))["batch"] is None


def test_a_status_run_still_going_is_waited_for_and_repeated_failures_back_off(
    pulse: str,
    dagster_instance: dg.DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    job = defs().resolve_job_def("write_sync_status")
    set_account(pulse, "acc-2", roleArn="arn:aws:iam::222222222222:user/not-a-role")
    broken = run_sync(dagster_instance, "acc-2", D1, D3)
    first = tick(dagster_instance, None)
    (request,) = first.run_requests
    # The daemon has created the run, which waits in the queue: the sensor waits for it.
    queued = dagster_instance.create_run_for_job(
        job_def=job, run_config=request.run_config, tags=dict(request.tags)
    )
    waiting = tick(dagster_instance, first.cursor)
    assert not waiting.run_requests
    assert waiting.skip_message == f"status run {queued.run_id} is still writing"
    dagster_instance.report_run_canceled(queued)  # canceled: its outcomes are asked for again

    second = tick(dagster_instance, waiting.cursor)
    (retry,) = second.run_requests
    assert covered(retry) == {broken.run_id}
    with monkeypatch.context() as bad_setting:
        bad_setting.setenv("DATABASE_URL", UNREADABLE_URL)
        assert not launch(dagster_instance, job, retry).success

    # Two failures in a row: the next request waits a minute rather than hammering PULSE.
    third = tick(dagster_instance, second.cursor)
    assert not third.run_requests
    assert "failed (2 in a row); its sync runs are requested again in" in str(third.skip_message)
    assert account_status(pulse, "acc-2")["status"] == "pending"
