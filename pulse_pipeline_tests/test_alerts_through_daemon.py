"""Alerts end to end through `dagster dev` (webserver + daemon) on loopback, PostgreSQL
everywhere: the sensors sync and write statuses by themselves, and each account's change of
state reaches a local webhook and a real local SMTP server once."""

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import requests

from pulse_pipeline_dev.simulated_aws import SimulatedAws, SimulationSettings
from pulse_pipeline_tests.alert_receivers import (
    MailReceiver,
    WebhookReceiver,
    mail_receiver,
    webhook_receiver,
)
from pulse_pipeline_tests.daemon import (
    graphql,
    postgres_dagster_home,
    running_dagster_dev,
    wait_for,
)
from pulse_pipeline_tests.support import account_status, set_account

DENIED = "arn:aws:iam::222222222222:role/PulseRead"  # acc-2's role in the `pulse` fixture
UI_URL = "https://dagster.example.com"
SMTP_PASSWORD = "hunter2-never-shown"
LAUNCH_RUN = """
mutation Launch($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
  }
}"""
RESOURCE = """
query Resource($selector: ResourceSelector!) {
  topLevelResourceDetailsOrError(resourceSelector: $selector) {
    ... on ResourceDetails { configuredValues { key value type } }
  }
}"""
REPOSITORY = {"repositoryLocationName": "pulse_pipeline", "repositoryName": "__repository__"}


@pytest.fixture
def receivers() -> Iterator[tuple[WebhookReceiver, MailReceiver]]:
    with webhook_receiver() as webhook, mail_receiver() as mail:
        yield webhook, mail


@pytest.fixture
def dagster_dev(
    pulse: str, receivers: tuple[WebhookReceiver, MailReceiver], tmp_path: Path
) -> Iterator[tuple[str, Path]]:
    webhook, mail = receivers
    settings = SimulationSettings(services_per_day=3, denied_role_arns=frozenset({DENIED}))
    with (
        SimulatedAws(settings) as aws,
        postgres_dagster_home(tmp_path, "pulse_alerts_dagster") as home,
    ):
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
            **aws.environment(),
            "DAGSTER_HOME": str(home),
            "PULSE_ALERT_WEBHOOK_URL": webhook.url,
            "PULSE_DAGSTER_UI_URL": UI_URL,
            "PULSE_ALERT_SMTP_HOST": "127.0.0.1",
            "PULSE_ALERT_SMTP_PORT": str(mail.port),
            # No login: the password only shows that the UI never reveals it.
            "PULSE_ALERT_SMTP_PASSWORD": SMTP_PASSWORD,
            "PULSE_ALERT_SMTP_FROM": "pulse@example.com",
            "PULSE_ALERT_SMTP_TO": "ops@example.com",
        }
        with running_dagster_dev(env, tmp_path / "dagster-dev.log") as base:
            yield base, home


def launch_sync(base: str, account_id: str) -> str:
    """A sync of one account with its default window, launched as from the UI's job page."""
    launched = graphql(
        base,
        LAUNCH_RUN,
        {
            "params": {
                "selector": {**REPOSITORY, "jobName": "sync_aws_costs"},
                "runConfigData": {},
                "executionMetadata": {"tags": [{"key": "dagster/partition", "value": account_id}]},
            }
        },
    )["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    return str(launched["run"]["runId"])


def status_written(home: Path, run_id: str) -> bool:
    """A write_sync_status run that covered the sync run has succeeded (alerts sent after it)."""
    with dg.DagsterInstance.from_config(str(home)) as instance:
        runs = instance.get_runs(
            dg.RunsFilter(job_name="write_sync_status", statuses=[dg.DagsterRunStatus.SUCCESS])
        )
        return any(
            run_id in run.run_config["ops"]["write_cloud_account_status"]["config"]["run_ids"]
            for run in runs
            if isinstance(run.run_config, dict)
        )


def sync_and_write(base: str, home: Path, account_id: str) -> str:
    run_id = launch_sync(base, account_id)
    wait_for(lambda: status_written(home, run_id), f"the status of run {run_id}")
    return run_id


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_alerts_on_failure_and_recovery_once_and_never_at_the_cost_of_a_status(
    dagster_dev: tuple[str, Path], pulse: str, receivers: tuple[WebhookReceiver, MailReceiver]
) -> None:
    base, home = dagster_dev
    webhook, mail = receivers

    # 1. Nobody launches anything: the first syncs run, acc-2's role is denied -> one alert.
    def settled() -> bool:
        return all(account_status(pulse, a)["status"] != "pending" for a in ("acc-1", "acc-2"))

    wait_for(settled, "the sensor-launched first syncs and their statuses")
    wait_for(lambda: webhook.received and mail.messages, "the failure alert")
    assert account_status(pulse, "acc-1")["status"] == "active"
    broken = account_status(pulse, "acc-2")
    [failed] = webhook.received
    assert {
        k: failed[k] for k in ("event", "account_id", "organisation_id", "previous_status")
    } == {
        "event": "sync_failed",
        "account_id": "acc-2",
        "organisation_id": "org-2",
        "previous_status": "pending",
    }
    assert failed["account_name"] == "org-2 production"
    assert failed["cause"] == broken["lastSyncError"] and "AccessDenied" in failed["cause"]
    assert failed["run_url"] == f"{UI_URL}/runs/{failed['run_id']}"
    assert f"<{failed['run_url']}|run {failed['run_id'][:8]}>" in failed["text"]
    [email] = mail.messages
    assert email["Subject"] == "PULSE sync failed: org-2 production (acc-2)"
    assert failed["cause"] in email.get_content() and failed["run_url"] in email.get_content()
    for secret in ("ext-id-42", SMTP_PASSWORD):  # the role ARN is no secret: the cause names it
        assert secret not in str(failed) and secret not in email.as_string()

    # 2. The same account fails again: no second alert.
    sync_and_write(base, home, "acc-2")
    assert account_status(pulse, "acc-2")["status"] == "error"
    assert (len(webhook.received), len(mail.messages)) == (1, 1)

    # 3. Both channels fail while acc-1 breaks: its status is written all the same.
    webhook.status, mail.refuse = 500, True
    set_account(pulse, "acc-1", roleArn="arn:aws:iam::111111111111:user/not-a-role")
    sync_and_write(base, home, "acc-1")
    assert account_status(pulse, "acc-1")["status"] == "error"
    assert (webhook.attempts, mail.attempts) == (2, 2)
    assert (len(webhook.received), len(mail.messages)) == (1, 1)

    # 4. Channels back; acc-2's customer fixes the role: one recovery alert.
    webhook.status, mail.refuse = 200, False
    set_account(pulse, "acc-2", roleArn="arn:aws:iam::555555555555:role/PulseRead")
    fixed = sync_and_write(base, home, "acc-2")
    wait_for(lambda: len(webhook.received) == 2 and len(mail.messages) == 2, "the recovery alert")
    recovered = webhook.received[1]
    assert recovered["event"] == "sync_recovered" and recovered["account_id"] == "acc-2"
    assert recovered["run_id"] == fixed and recovered["previous_status"] == "error"
    assert mail.messages[1]["Subject"] == "PULSE sync recovered: org-2 production (acc-2)"
    assert account_status(pulse, "acc-2")["status"] == "active"

    # The Resources page names the password's variable, never its value.
    body = requests.post(
        f"{base}/graphql",
        json={
            "query": RESOURCE,
            "variables": {"selector": {**REPOSITORY, "resourceName": "alerts"}},
        },
        timeout=30,
    ).text
    assert SMTP_PASSWORD not in body and "s3cr3t-token" not in body
    values: dict[str, Any] = {
        v["key"]: (v["type"], v["value"])
        for v in graphql(base, RESOURCE, {"selector": {**REPOSITORY, "resourceName": "alerts"}})[
            "topLevelResourceDetailsOrError"
        ]["configuredValues"]
    }
    assert values["smtp_password"] == ("ENV_VAR", "PULSE_ALERT_SMTP_PASSWORD")
    assert values["webhook_url"] == ("ENV_VAR", "PULSE_ALERT_WEBHOOK_URL")
