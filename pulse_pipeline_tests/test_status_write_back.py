"""The status write-back never loses an outcome: when a write_sync_status run fails, the status
sensor asks again for the sync runs it covered, and a later status run writes them. A slow alert
channel holds a status run no longer than its deadline, and nothing from the database or a peer
forges a log line."""

import json
import logging
from datetime import UTC, datetime

import dagster as dg
import pytest

from pulse_pipeline.defs.definitions import defs
from pulse_pipeline.defs.resources import PulseDatabase
from pulse_pipeline.status_write_back import write_statuses
from pulse_pipeline.sync_status import SyncOutcome
from pulse_pipeline_tests.alert_receivers import http_peer, telegram_sent, trickle
from pulse_pipeline_tests.ce_results import ce_page, queue_results
from pulse_pipeline_tests.support import (
    D1,
    D3,
    EC2,
    account_status,
    load_rates,
    run_sync,
    set_account,
    write_status,
)

STATUS_SENSOR = defs().resolve_sensor_def("sync_status_writer")
# A password with an unencoded "@": a DATABASE_URL no status run can read, so it fails at once.
UNREADABLE_URL = "postgresql://pulse:pa@ss@127.0.0.1:5432/pulse"
LOG = logging.getLogger("status_write_back")


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


TOKEN = "123456789:AAHs3cr3t-bot_token-0123456789abcdef"
DEADLINE = 2


def test_a_status_run_holds_a_trickling_webhook_to_its_deadline_and_telegram_still_gets_the_alert(
    pulse: str,
    dagster_instance: dg.DagsterInstance,
    moto_aws: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with http_peer(trickle(every=0.2)) as webhook, http_peer(telegram_sent()) as telegram:
        for variable, value in {
            "PULSE_ALERT_WEBHOOK_URL": f"{webhook.url}/hooks/T0/B0/s3cr3t-token",
            "PULSE_TELEGRAM_BOT_TOKEN": TOKEN,
            "PULSE_TELEGRAM_CHAT_ID": "-100200300",
            "PULSE_TELEGRAM_API_URL": telegram.url,
            "PULSE_ALERT_DEADLINE_SECONDS": str(DEADLINE),
        }.items():
            monkeypatch.setenv(variable, value)
        load_rates(dagster_instance)
        set_account(pulse, "acc-2", roleArn="arn:aws:iam::222222222222:user/not-a-role")
        broken = run_sync(dagster_instance, "acc-2", D1, D3)

        status = write_status(dagster_instance, [broken.run_id])

    assert status.success
    assert account_status(pulse, "acc-2")["status"] == "error"
    [(_, path, sent)] = telegram.requests
    assert path == f"/bot{TOKEN}/sendMessage" and sent["chat_id"] == "-100200300"
    assert sent["text"].startswith("PULSE sync failed for AWS account org-2 production")
    assert account_status(pulse, "acc-2")["lastSyncError"] in sent["text"]
    logs = dagster_instance.all_logs(status.run_id)
    warnings = [e.user_message for e in logs if e.dagster_event is None and e.level >= 30]
    assert warnings == [
        "CloudAccount acc-2 (org-2 production): failed alert not sent by webhook: the webhook "
        f"did not answer within {DEADLINE} s"
    ]
    started, finished = (
        next(e.timestamp for e in logs if e.dagster_event_type == kind)
        for kind in (dg.DagsterEventType.STEP_START, dg.DagsterEventType.STEP_SUCCESS)
    )
    assert DEADLINE <= finished - started < DEADLINE + 1.5
    [output] = [e.step_output_data for e in status.all_node_events if e.is_successful_output]
    assert output.metadata["alerts"] == dg.IntMetadataValue(1)
    assert output.metadata["alerts_not_delivered"] == dg.IntMetadataValue(1)
    for entry in logs:  # no log line, event or metadata of the run holds a secret
        assert TOKEN not in str(entry) and "s3cr3t" not in str(entry)


def test_ids_from_the_database_reach_the_log_escaped(
    pulse: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The write-back as the core runs it, without Dagster: an outcome for an account id with a
    line break (gone from PULSE meanwhile) is one log line, its break shown as `\\n`."""
    forged = "acc-9\n2026-11-25 05:03:07 - dagster - INFO - all accounts synced"
    outcome = SyncOutcome(forged, "run-1", datetime.now(UTC), None)
    written, alerts = write_statuses(PulseDatabase(url=pulse), [outcome], LOG)
    assert (written, alerts) == (0, [])
    assert caplog.messages == [
        "CloudAccount acc-9\\n2026-11-25 05:03:07 - dagster - INFO - all accounts synced is no "
        "longer in PULSE"
    ]
